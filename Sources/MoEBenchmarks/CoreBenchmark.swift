import Foundation
import MoEAnalysis

/// `moe bench core`: the tensor core's speed against this machine's ceilings.
/// - matmul through the tensor API against a direct BLAS call on the same shapes (overhead);
/// - elementwise add and softmax throughput as a fraction of the streaming-copy bandwidth;
/// - fused causal attention forward + backward GFLOP/s against the sgemm ceiling.
public enum CoreBenchmark {
    public static func run(runs: Int = 5) -> BenchReport {
        let gemmCeiling = Measure.sgemmCeiling(runs: runs), copyCeiling = Measure.copyBandwidth(runs: runs)
        gemmCeiling.sample()
        copyCeiling.sample()
        // Figures are recorded first and scaled by the ceilings at the end, once both samples are in.
        var pending: [Figure.Pending] = []
        var rng = RandomGenerator(seed: 1)

        for (m, k, n) in [(2048, 2048, 2048), (4096, 512, 1408), (512, 512, 512)] {
            let a = Tensor<Float>.normal([m, k], rng: &rng), b = Tensor<Float>.normal([n, k], rng: &rng)
            let flops = 2 * Double(m * n * k) / 1e9
            var c = Tensor<Float>.zeros([m, n])
            // The two are timed in alternation, with extra runs, so that a noisy neighbour slows both alike.
            let (direct, api) = Measure.timePair(runs: max(runs, 11)) {
                a.withUnsafePointer { pa in
                    b.withUnsafePointer { pb in
                        c.withUnsafeMutablePointer { pc in
                            Float.gemm(transA: false, transB: true, m: m, n: n, k: k, alpha: 1, a: pa, lda: k, b: pb, ldb: k, beta: 0, c: pc, ldc: n)
                        }
                    }
                }
            } _: {
                _ = Variable.matmul(Variable(a), Variable(b), transposeB: true)
            }
            let shape = "\(m)x\(k) · (\(n)x\(k))ᵀ"
            pending.append(Figure.Pending(name: "matmul, TensorScalar.gemm", shape: shape, unit: "GFLOP/s", value: Measure.rate(flops, direct), ceiling: "sgemm"))
            pending.append(Figure.Pending(
                name: "matmul, tensor API", shape: shape, unit: "GFLOP/s", value: Measure.rate(flops, api), ceiling: "sgemm",
                note: String(format: "overhead vs TensorScalar.gemm: %+.1f%% (median time %.3f ms vs %.3f ms)", (api.median / direct.median - 1) * 100, api.median * 1e3, direct.median * 1e3)))
        }

        let count = 16 << 20
        let x = Tensor<Float>.normal([count], rng: &rng), y = Tensor<Float>.normal([count], rng: &rng)
        let add = Measure.time(runs: runs) { _ = x + y }
        pending.append(Figure.Pending(
            name: "elementwise add", shape: "\(count) floats", unit: "GB/s", value: Measure.rate(3 * Double(count * 4) / 1e9, add),
            ceiling: "copy", note: "bytes: 2 inputs read + 1 output written"))
        let silu = Measure.time(runs: runs) { _ = x.unary(.silu) }
        pending.append(Figure.Pending(
            name: "elementwise silu", shape: "\(count) floats", unit: "GB/s", value: Measure.rate(2 * Double(count * 4) / 1e9, silu),
            ceiling: "copy", note: "bytes: 1 input read + 1 output written"))
        let rows = x.reshaped([count / 1024, 1024])
        let sm = Measure.time(runs: runs) { _ = rows.softmax() }
        pending.append(Figure.Pending(
            name: "softmax (last axis)", shape: "\(count / 1024)x1024", unit: "GB/s", value: Measure.rate(2 * Double(count * 4) / 1e9, sm),
            ceiling: "copy", note: "bytes: input read once + output written once"))

        // Attention as in the M1 shape: 16 query heads, 8 KV heads, head dim 64, 512 causal positions.
        let (b, t, hq, hkv, dh) = (1, 512, 16, 8, 64)
        let q = Tensor<Float>.normal([b, t, hq, dh], rng: &rng)
        let kk = Tensor<Float>.normal([b, t, hkv, dh], rng: &rng), vv = Tensor<Float>.normal([b, t, hkv, dh], rng: &rng)
        let dOut = Tensor<Float>.normal([b, t, hq, dh], rng: &rng)
        let fwdFlops = Tensor<Float>.attentionForwardFLOPs(b: b, t: t, s: t, hq: hq, dh: dh, causal: true) / 1e9
        let fwd = Measure.time(runs: runs) { _ = Tensor.attention(q: q, k: kk, v: vv, causal: true, scale: 0.125) }
        let fb = Measure.time(runs: runs) {
            let tape = Tape<Float>()
            let out = Variable.attention(q: tape.input(q), k: tape.input(kk), v: tape.input(vv))
            _ = tape.backward(out, seed: dOut)
        }
        let shape = "B\(b) T\(t) Hq\(hq) Hkv\(hkv) Dh\(dh)"
        pending.append(Figure.Pending(name: "attention forward (causal)", shape: shape, unit: "GFLOP/s", value: Measure.rate(fwdFlops, fwd), ceiling: "sgemm",
                              note: "useful FLOPs: QKᵀ and PV over the visible (causal) keys only"))
        pending.append(Figure.Pending(name: "attention forward+backward", shape: shape, unit: "GFLOP/s", value: Measure.rate(3 * fwdFlops, fb), ceiling: "sgemm",
                              note: "backward = 4 products (dP, dQ, dK, dV) = 2x forward FLOPs"))

        return BenchReport.finish(
            "core", pending: pending,
            sgemm: gemmCeiling, others: ["copy": ("copy (GB/s)", copyCeiling)])
    }
}
