import Foundation
import MoE
import MoEAutograd
import MoETensor

/// `moe bench peer`: one PEER layer (He 2024) at growing expert counts, forward and forward + backward
/// tokens/s, and memory: the peak resident memory while one size is built and run, after resetting the
/// kernel's high-water mark (Linux /proc/self/clear_refs "5"), so the ceilings' buffers and earlier sizes do
/// not count.
public enum PEERBenchmark {
    /// Resets the process's peak resident memory (VmHWM) to its current size; false where the kernel refuses.
    static func resetPeak() -> Bool {
        guard let h = FileHandle(forWritingAtPath: "/proc/self/clear_refs") else { return false }
        defer { try? h.close() }
        return (try? h.write(contentsOf: Data("5".utf8))) != nil
    }

    /// VmHWM and VmRSS of /proc/self/status, in MiB.
    static func residentMiB() -> (peak: Double, now: Double)? {
        guard let s = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return nil }
        func field(_ name: String) -> Double? {
            guard let line = s.split(separator: "\n").first(where: { $0.hasPrefix(name + ":") }) else { return nil }
            return line.split(separator: " ").compactMap { Double($0) }.first.map { $0 / 1024 }
        }
        guard let peak = field("VmHWM"), let now = field("VmRSS") else { return nil }
        return (peak, now)
    }

    public struct Options: Sendable {
        public var sizes = [128 * 128, 512 * 512, 1024 * 1024]
        public var dim = 256
        public var heads = 8
        public var expertsPerHead = 16
        public var keyDim = 128
        public var tokens = 2048
        public var runs = 5
        public init() {}
    }

    public static func configs(_ o: Options) throws(ConfigError) -> [PEERConfig] {
        try o.sizes.sorted().map { n throws(ConfigError) in
            let c = PEERConfig(hiddenSize: o.dim, numExperts: n, heads: o.heads, expertsPerHead: o.expertsPerHead, keyDim: o.keyDim)
            try c.validate()
            return c
        }
    }

    public static func run(_ o: Options) throws(ConfigError) -> BenchReport {
        let configs = try configs(o)
        let gemm = Measure.sgemmCeiling(runs: o.runs)
        let copy = Measure.copyBandwidth(runs: o.runs)
        gemm.sample()
        copy.sample()
        var pending: [Figure.Pending] = []
        // Bytes of the u and v rows one token reads: H·K rows of each.
        let rowBytes = Double(2 * o.heads * o.expertsPerHead * o.dim * 4)
        for c in configs {
            let reset = resetPeak()
            let before = residentMiB()?.now ?? 0
            var rng = RandomGenerator(seed: 1)
            let layer = try PEERLayer<Float>(config: c, path: "peer", rng: &rng)
            let x = Tensor<Float>.normal([o.tokens, c.hiddenSize], rng: &rng)
            let dOut = Tensor<Float>.normal([o.tokens, c.hiddenSize], rng: &rng)
            let forward = Measure.time(runs: o.runs) { _ = layer(Variable(x), .inference).output }
            let both = Measure.time(runs: o.runs) {
                let tape = Tape<Float>()
                let out = layer(tape.input(x), ForwardContext(tape: tape), training: true).output
                _ = tape.backward(out, seed: dOut)
            }
            // Experts the batch retrieved at least once.
            let used = Set(layer(Variable(x), .inference).experts).count
            let weights = Double(layer.parameterCount * 4)
            let rss = (reset ? residentMiB()?.peak : nil).map { $0 - before } ?? TrainBenchmark.peakMiB()
            let n = c.subKeys
            let shape = "N \(n)² = \(c.numExperts), D \(c.hiddenSize), H \(c.heads), K \(c.expertsPerHead), key \(c.keyDim); \(o.tokens) tokens"
            func tps(_ s: Measure.Stats) -> Measure.Stats { Measure.rate(Double(o.tokens), s) }
            pending.append(Figure.Pending(
                name: "PEER \(n)² forward", shape: shape, unit: "tok/s", value: tps(forward), ceiling: "gather bound",
                note: String(format: "%.0f%% of the experts retrieved by the batch", 100 * Double(used) / Double(c.numExperts))))
            pending.append(Figure.Pending(
                name: "PEER \(n)² forward+backward", shape: shape, unit: "tok/s", value: tps(both),
                note: "gradients of u and v are dense tables (zeroed each step)"))
            pending.append(Figure.Pending(
                name: "PEER \(n)² memory", shape: shape, unit: reset ? "MiB peak RSS growth" : "MiB peak RSS", value: Measure.Stats([rss]),
                note: String(format: "weights %.0f MiB; peak / weights %.2f (forward+backward holds a gradient of every table)%@", weights / 1_048_576, rss * 1_048_576 / weights,
                             reset ? "; growth over the RSS before the layer was built" : "; the process's peak (the kernel would not reset it)")))
        }
        let bound = Measure.Ceiling { Measure.copyRates(runs: o.runs).map { $0 * 1e9 / rowBytes } }
        return BenchReport.finish(
            "peer", pending: pending, sgemm: gemm,
            others: ["gather bound": ("gather bound: copy bandwidth / bytes of u, v rows per token (tok/s)", bound),
                     "copy": ("copy bandwidth (GB/s)", copy)])
    }
}
