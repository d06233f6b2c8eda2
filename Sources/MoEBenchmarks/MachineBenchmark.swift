import Foundation
import MoEAnalysis

/// `moe bench machine`: the ceilings alone. The sgemm of the BLAS in use on the square 2048^3 and on the shapes
/// swift-moe runs most (expert blocks, one-row decode products), against the matching kernel's 2048^3 ceiling.
public enum MachineBenchmark {
    public static func run(runs: Int = 5) -> BenchReport {
        let gemmCeiling = Measure.sgemmCeiling(runs: runs), copyCeiling = Measure.copyBandwidth(runs: runs)
        gemmCeiling.sample()
        copyCeiling.sample()
        var pending: [Figure.Pending] = []
        var rng = RandomGenerator(seed: 1)
        // [m, k] x [n, k]ᵀ, as a layer applies its weights: square, expert blocks (L1, L2), decode rows.
        let shapes: [(String, Int, Int, Int)] = [
            ("square", 2048, 2048, 2048), ("expert block, L1", 1024, 512, 2816), ("expert block, L2", 384, 512, 352),
            ("expert block, L2 down", 384, 176, 512),
        ]
        for (name, m, k, n) in shapes {
            let a = Tensor<Float>.normal([m, k], rng: &rng), b = Tensor<Float>.normal([n, k], rng: &rng)
            let t = Measure.time(runs: runs) { _ = Tensor.matmul(a, b, transposeB: true) }
            pending.append(Figure.Pending(name: "sgemm, \(name)", shape: "\(m)x\(k) · (\(n)x\(k))ᵀ", unit: "GFLOP/s",
                                          value: Measure.rate(2 * Double(m * n * k) / 1e9, t), ceiling: "sgemm"))
        }
        for (k, n) in [(1024, 2816), (1024, 32000)] {
            let a = Tensor<Float>.normal([1, k], rng: &rng), b = Tensor<Float>.normal([n, k], rng: &rng)
            let t = Measure.time(runs: max(runs, 21)) { _ = Tensor.matmul(a, b, transposeB: true) }
            pending.append(Figure.Pending(
                name: "decode row (gemv)", shape: "1x\(k) · (\(n)x\(k))ᵀ", unit: "GB/s", value: Measure.rate(Double(n * k * 4) / 1e9, t),
                ceiling: "copy", note: String(format: "weights read: %.1f MB%@", Double(n * k * 4) / 1e6, n * k * 4 < 24 << 20 ? " (can stay in the last-level cache)" : "")))
        }
        return BenchReport.finish(
            "machine", pending: pending,
            sgemm: gemmCeiling, others: ["copy": ("copy (GB/s)", copyCeiling)])
    }
}
