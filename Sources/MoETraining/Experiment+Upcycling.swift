import Foundation

/// `moe experiment upcycling` (Komatsuzaki et al. 2022): the default model made dense is trained S steps, then
/// continued T further steps two ways, as dense and upcycled to 8 experts (copies of its FFN, top-2 renormalized,
/// every layer, new router); a third arm trains the same MoE from scratch for all S + T steps. Every arm uses
/// the warmup + cosine schedule over S + T steps and the same batches, so the continuations differ only in the
/// model. Settings fixed beforehand: S = T = the experiment's steps.
public enum UpcyclingExperiment {
    public static let experts = 8
    public static let arms = ["dense (continued)", "upcycled", "MoE from scratch"]

    public static func run(_ o: ExperimentOptions, progress: ((String) -> Void)? = nil) throws -> ExperimentReport {
        let start = ContinuousClock.now
        let s = o.steps, total = 2 * o.steps
        var runs: [String: [ArmRun]] = [:]
        var stepZero: [Double] = []
        for seed in o.seeds {
            let data = TextDataset(seed: seed)
            var c = ExperimentRunner.trainConfig(o, seed: seed)
            c.steps = total
            c.warmup = min(TrainConfig().warmup, total / 5)
            func report(_ arm: String) -> (String) -> Void { { progress?("[\(arm), seed \(seed)] \($0)") } }
            // The dense trunk, then its continuation.
            let dense = Trainer(model: try MoETransformer<Float>(DefaultModel.config(dense: true), seed: seed), config: c, data: data, outDir: nil)
            _ = ExperimentRunner.train(dense, until: s, progress: report("dense"))
            var options = Upcycling.Options(experts: experts)
            options.seed = seed
            let (upcycled, opt, state) = try Upcycling.upcycle(dense.model, state: dense.state, options)
            // The upcycled model's distance from the dense one before any training, on the validation windows.
            var diff = 0.0
            for (x, _) in Evaluation.validationBatches(data, config: c).prefix(1) {
                let a = dense.model(ids: x, batch: c.batch, .inference).logits.value, b = upcycled(ids: x, batch: c.batch, .inference).logits.value
                diff = max(diff, Double(a.maxAbsDifference(b)))
            }
            stepZero.append(diff)
            let t1 = ExperimentRunner.train(dense, until: total, progress: report("dense (continued)"))
            runs[arms[0], default: []].append(ExperimentRunner.measure(dense.model, data: data, config: c, seed: seed, steps: total - s, seconds: t1))
            let up = Trainer(model: upcycled, optimizer: opt, state: state, data: data, outDir: nil)
            let t2 = ExperimentRunner.train(up, until: total, progress: report("upcycled"))
            runs[arms[1], default: []].append(ExperimentRunner.measure(upcycled, data: data, config: c, seed: seed, steps: total - s, seconds: t2))
            let scratchModel = try Upcycling.config(dense: DefaultModel.config(dense: true), options)
            let scratch = Trainer(model: try MoETransformer<Float>(scratchModel, seed: seed), config: c, data: data, outDir: nil)
            let t3 = ExperimentRunner.train(scratch, until: total, progress: report("MoE from scratch"))
            runs[arms[2], default: []].append(ExperimentRunner.measure(scratch.model, data: data, config: c, seed: seed, steps: total, seconds: t3))
            for a in arms {
                let r = runs[a]!.last!
                progress?(String(format: "[%@, seed %llu] validation loss %.4f", a, seed, r.validationLoss))
            }
        }
        let rows = arms.map { ExperimentRunner.standardRow($0, runs[$0]!) }
        let up = runs[arms[1]]!.map(\.validationLoss), dense = runs[arms[0]]!.map(\.validationLoss)
        let reproduced = SeedStatistics.below(up, dense)
        let finding = String(
            format: "validation loss after %d further steps: upcycled %@, dense continued %@ (%@ beyond 2 sd), MoE from scratch (%d steps) %@; at the upcycling step the largest |logit difference| from the dense model was %.1e",
            total - s, SeedStatistics.format(up), SeedStatistics.format(dense), reproduced ? "below" : "not below", total,
            SeedStatistics.format(runs[arms[2]]!.map(\.validationLoss)), stepZero.max() ?? 0)
        return ExperimentReport(
            experiment: "upcycling", columns: ExperimentRunner.standardColumns, rows: rows,
            criterion: "after the same further steps, the upcycled model's validation loss is below the dense continuation's, beyond 2 standard deviations of the per-seed differences (Komatsuzaki et al. 2022)",
            finding: finding, reproduced: reproduced, seeds: o.seeds, steps: total,
            seconds: Double((ContinuousClock.now - start).components.seconds), runs: runs)
    }
}
