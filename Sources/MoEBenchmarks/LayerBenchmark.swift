import Foundation
import MoEAnalysis

/// `moe bench layer`: shapes L1 and L2 of BENCHMARKS.md, forward and forward + backward, against the
/// sgemm ceiling measured in the same run.
public enum LayerBenchmark {
    public enum ShapeID: String, CaseIterable, Sendable {
        case L1, L2
        /// The MoE layer of the default `moe train` model at its batch (T1's layer): small products.
        case T1 = "T1-layer"
    }

    /// Tokens per forward.
    static func tokens(_ id: ShapeID) -> Int { id == .T1 ? 2048 : 4096 }

    public static func config(_ id: ShapeID) -> MoEConfig {
        switch id {
        case .L1:
            // Mixtral-style: 8 experts of SwiGLU width 1408, top-2 softmax, renormalized.
            var c = MoEConfig(hiddenSize: 512, expertHiddenSize: 1408, numExperts: 8, expertsPerToken: 2)
            c.normalizeTopK = true
            return c
        case .L2:
            // DeepSeekMoE-style: 64 fine-grained experts of width 176, top-6 softmax, 2 shared experts of 176.
            var c = MoEConfig(hiddenSize: 512, expertHiddenSize: 176, numExperts: 64, expertsPerToken: 6)
            c.normalizeTopK = false
            c.sharedExpertHiddenSize = 2 * 176
            return c
        case .T1:
            // 16 SwiGLU experts of width 64 at D 128, top-2 softmax, renormalized (TrainConfig's default MoE).
            var c = MoEConfig(hiddenSize: 128, expertHiddenSize: 64, numExperts: 16, expertsPerToken: 2)
            c.normalizeTopK = true
            return c
        }
    }

    /// Useful forward FLOPs: router product, 3 products per kept (token, expert) pair, shared experts.
    static func forwardFLOPs(_ c: MoEConfig, tokens n: Int, kept: Int) -> Double {
        let d = Double(c.hiddenSize)
        return 2 * Double(n) * d * Double(c.numExperts)
            + Double(kept) * 6 * d * Double(c.expertHiddenSize)
            + Double(n) * 6 * d * Double(c.sharedExpertHiddenSize)
    }

    public static func run(shapes: [ShapeID], runs: Int = 5) -> BenchReport {
        let gemmCeiling = Measure.sgemmCeiling(runs: runs)
        gemmCeiling.sample()
        var pending: [Figure.Pending] = []
        for id in shapes {
            let c = config(id)
            let n = tokens(id)
            var rng = RandomGenerator(seed: 1)
            let layer: MoELayer<Float>
            do { layer = try MoELayer<Float>(config: c, path: "mlp", rng: &rng) } catch { preconditionFailure("\(error)") }
            layer.router.gate!.weight.value = Tensor.normal([c.numExperts, c.hiddenSize], std: 0.02, rng: &rng)
            let x = Tensor<Float>.normal([n, c.hiddenSize], rng: &rng)
            let dOut = Tensor<Float>.normal([n, c.hiddenSize], rng: &rng)
            let probe = layer(Variable(x), .inference)
            let load = probe.statistics.tokensPerExpert
            let flops = forwardFLOPs(c, tokens: n, kept: load.reduce(0, +)) / 1e9
            let fwd = Measure.time(runs: runs) { _ = layer(Variable(x), .inference).output }
            let fb = Measure.time(runs: runs) {
                let tape = Tape<Float>()
                let out = layer(tape.input(x), ForwardContext(tape: tape)).output
                _ = tape.backward(out, seed: dOut)
            }
            let shape = "\(id.rawValue): N\(n) D\(c.hiddenSize) E\(c.numExperts) F\(c.expertHiddenSize) k\(c.expertsPerToken)\(c.sharedExpertHiddenSize > 0 ? " +shared \(c.sharedExpertHiddenSize)" : "")"
            let loadNote = "tokens per expert: min \(load.min() ?? 0), max \(load.max() ?? 0)"
            pending.append(Figure.Pending(name: "\(id.rawValue) forward", shape: shape, unit: "GFLOP/s", value: Measure.rate(flops, fwd), ceiling: "sgemm", note: loadNote))
            pending.append(Figure.Pending(name: "\(id.rawValue) forward+backward", shape: shape, unit: "GFLOP/s", value: Measure.rate(3 * flops, fb), ceiling: "sgemm",
                                  note: "backward = input and all weight gradients = 2x forward FLOPs"))
        }
        return BenchReport.finish("layer", pending: pending, sgemm: gemmCeiling)
    }
}
