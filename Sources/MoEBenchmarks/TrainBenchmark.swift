import Foundation
import MoEAnalysis

/// `moe bench train`: shape T1 of BENCHMARKS.md, the default `moe train` configuration at its default
/// batch: throughput, model FLOP utilization against the sgemm ceiling of the same run, and memory.
public enum TrainBenchmark {
    /// Resident memory now, in MiB (from /proc/self/statm; 0 where that does not exist).
    public static func residentMiB() -> Double {
        guard let s = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
        let parts = s.split(separator: " ")
        guard parts.count > 1, let pages = Double(parts[1]) else { return 0 }
        return pages * Double(sysconf(Int32(_SC_PAGESIZE))) / 1_048_576
    }

    /// Peak resident memory of the process so far, in MiB.
    public static func peakMiB() -> Double {
        var u = rusage()
        getrusage(RUSAGE_SELF.rawValue, &u)
        return Double(u.ru_maxrss) / 1024
    }

    /// Useful training FLOPs per token: 6 per active matrix parameter (forward 2, backward 4; the
    /// embedding lookup is not a product) plus attention's QKᵀ and PV over the visible causal keys.
    public static func flopsPerToken(_ model: MoETransformer<Float>, sequence t: Int) -> Double {
        let c = model.config
        let embedding = model.head == nil ? 0 : c.vocabSize * c.hiddenSize  // a tied table is also the head
        let norms = model.parameters.filter { $0.shape.count == 1 }.reduce(0) { $0 + $1.value.count }
        let matrices = Double(model.activeParameterCount - embedding - norms)
        let meanVisible = Double(t + 1) / 2
        let attention = Double(c.numLayers) * 4 * meanVisible * Double(c.numHeads * c.headDim)
        return 3 * (2 * matrices + attention)
    }

    public static func run(runs: Int = 5, stepsPerRun: Int = 5) -> BenchReport {
        let gemmCeiling = Measure.sgemmCeiling(runs: runs)
        gemmCeiling.sample()
        let config = TrainConfig()
        let model: MoETransformer<Float>
        do { model = try MoETransformer<Float>(DefaultModel.config(), seed: config.seed) } catch { preconditionFailure("\(error)") }
        let trainer = Trainer(model: model, config: config, data: TextDataset(seed: config.seed), outDir: nil)
        let tokens = Double(config.batch * config.sequence * stepsPerRun)
        var rss: [Double] = []
        let t = Measure.time(runs: runs) {
            for _ in 0..<stepsPerRun { trainer.step() }
            rss.append(residentMiB())
        }
        let tps = Measure.rate(tokens, t)
        let flops = flopsPerToken(model, sequence: config.sequence)
        let gflops = Measure.Stats(median: tps.median * flops / 1e9, min: tps.min * flops / 1e9, max: tps.max * flops / 1e9, runs: tps.runs)
        let shape = "T1: default moe train, \(config.batch)x\(config.sequence) tokens/step"
        let pending = [
            Figure.Pending(name: "T1 training throughput", shape: shape, unit: "tok/s", value: tps,
                           note: "\(stepsPerRun) steps per run; \(model.activeParameterCount) active of \(model.parameterCount) parameters"),
            Figure.Pending(name: "T1 model FLOP utilization", shape: shape, unit: "GFLOP/s", value: gflops, ceiling: "sgemm",
                           note: String(format: "%.2f MFLOP per token (6 x active matrix parameters + causal attention)", flops / 1e6)),
            Figure.Pending(name: "T1 resident memory", shape: shape, unit: "MiB", value: Measure.Stats(rss),
                           note: String(format: "after each run: first %.0f, last %.0f MiB; peak %.0f MiB", rss.first ?? 0, rss.last ?? 0, peakMiB())),
        ]
        return BenchReport.finish("train", pending: pending, sgemm: gemmCeiling)
    }
}
