import Foundation

/// `moe experiment lifelong` (Chen et al. 2023): three data distributions in sequence, A → B → C (the built-in
/// corpus's prose, then code, then records), each trained for half of `--steps`. The default model shape with 8
/// experts (top-2, Switch loss 0.1) learns A; from there four arms continue through B and C:
/// - naive: the same model fine-tuned;
/// - growth: 4 new experts per layer at each new distribution;
/// - growth + freeze: the same, the experts and router rows that existed frozen;
/// - growth + freeze + distill: also distilled from the model before each growth (coefficient 1).
/// One warmup + cosine schedule spans the three stages. Forgetting on A is the rise of A's validation loss from the
/// end of A to the end of C.
public enum LifelongExperiment {
    public static let arms = ["naive", "growth", "growth + freeze", "growth + freeze + distill"]
    public static let domains: [Domain] = [.prose, .code, .records]
    public static let added = 4

    /// A model with the same config and the same values (and no shared storage).
    static func copy(_ m: MoETransformer<Float>) throws -> MoETransformer<Float> {
        let c = try MoETransformer<Float>(m.config, seed: 0)
        for (a, b) in zip(c.parameters + c.buffers, m.parameters + m.buffers) { a.value = b.value }
        return c
    }

    public static func run(_ o: ExperimentOptions, progress: ((String) -> Void)? = nil) throws -> ExperimentReport {
        let start = ContinuousClock.now
        let stage = max(o.steps / 2, 1)
        var runs: [String: [ArmRun]] = [:]
        for seed in o.seeds {
            let data = domains.map { TextDataset(seed: seed, documents: 60_000, domains: [$0]) }
            var c = ExperimentRunner.trainConfig(o, seed: seed)
            c.steps = 3 * stage
            c.warmup = min(TrainConfig().warmup, c.steps / 5)
            func report(_ arm: String) -> (String) -> Void { { progress?("[\(arm), seed \(seed)] \($0)") } }
            let trunk = Trainer(model: try MoETransformer<Float>(DefaultModel.config(experts: 8), seed: seed), config: c, data: data[0], outDir: nil)
            let startA = Date()
            _ = ExperimentRunner.train(trunk, until: stage, progress: report("A"))
            let secondsA = Date().timeIntervalSince(startA)
            let lossA0 = Evaluation.validationLoss(trunk.model, data: data[0], config: c)
            for (index, arm) in arms.enumerated() {
                var model = try copy(trunk.model)
                var optimizer = trunk.optimizer
                var state = trunk.state
                var teacher: MoETransformer<Float>? = nil
                var seconds = secondsA
                for d in 1...2 {
                    if index == 0 {
                        state.dataSource = data[d].source
                        state.sampler = BatchSampler(seed: seed &+ UInt64(d) &* 0x9E37_79B9)
                    } else {
                        let g = try Growth.grow(model: model, optimizer: optimizer, state: state, add: added, freezeOld: index >= 2,
                                                data: data[d], seed: seed &+ UInt64(d), distill: index == 3 ? 1 : 0)
                        if index == 3 { teacher = model }
                        (model, optimizer, state) = g
                    }
                    let t = Trainer(model: model, optimizer: optimizer, state: state, data: data[d], outDir: nil)
                    t.teacher = teacher
                    seconds += ExperimentRunner.train(t, until: (d + 1) * stage, progress: report("\(arm), stage \(d == 1 ? "B" : "C")"))
                    (optimizer, state) = (t.optimizer, t.state)
                }
                var run = ExperimentRunner.measure(model, data: data[2], config: c, seed: seed, steps: 3 * stage, seconds: seconds)
                let lossA = Evaluation.validationLoss(model, data: data[0], config: c)
                run.extra["loss_A_after_A"] = lossA0
                run.extra["loss_A_after_C"] = lossA
                run.extra["forgetting_A"] = lossA - lossA0
                run.extra["loss_B_after_C"] = Evaluation.validationLoss(model, data: data[1], config: c)
                run.extra["loss_C"] = run.validationLoss
                runs[arm, default: []].append(run)
                progress?(String(format: "[%@, seed %llu] A %.4f -> %.4f (forgetting %.4f), C %.4f", arm, seed, lossA0, lossA, lossA - lossA0, run.validationLoss))
            }
        }
        let columns = ["arm", "experts_at_end", "loss_A_after_A", "loss_A_after_C", "forgetting_A", "forgetting_A_sd", "loss_B_after_C", "loss_C", "loss_C_sd"]
        func values(_ arm: String, _ key: String) -> [Double] { runs[arm]!.map { $0.extra[key]! } }
        let rows = arms.enumerated().map { (i, a) -> [ExperimentCell] in
            [.text(a), .number(Double(8 + (i == 0 ? 0 : 2 * added))), .number(SeedStatistics.mean(values(a, "loss_A_after_A"))),
             .number(SeedStatistics.mean(values(a, "loss_A_after_C"))), .number(SeedStatistics.mean(values(a, "forgetting_A"))),
             .number(SeedStatistics.std(values(a, "forgetting_A"))), .number(SeedStatistics.mean(values(a, "loss_B_after_C"))),
             .number(SeedStatistics.mean(values(a, "loss_C"))), .number(SeedStatistics.std(values(a, "loss_C")))]
        }
        let naive = values(arms[0], "forgetting_A"), frozen = values(arms[2], "forgetting_A")
        // Halved: per seed, frozen forgetting below half the naive one, beyond 2 sd of the differences.
        let halved = SeedStatistics.below(frozen, naive.map { $0 / 2 })
        let cNaive = SeedStatistics.mean(values(arms[0], "loss_C")), cFrozen = SeedStatistics.mean(values(arms[2], "loss_C"))
        let similar = abs(cFrozen - cNaive) <= 0.1 * cNaive
        let finding = String(
            format: "forgetting on A (loss rise from the end of A to the end of C): naive %@, growth %@, growth + freeze %@, + distill %@; growth + freeze %@ half of naive's beyond 2 sd; loss on C: naive %.4f, growth + freeze %.4f (%@ 10%%)",
            SeedStatistics.format(naive), SeedStatistics.format(values(arms[1], "forgetting_A")), SeedStatistics.format(frozen),
            SeedStatistics.format(values(arms[3], "forgetting_A")), halved ? "below" : "not below", cNaive, cFrozen, similar ? "within" : "not within")
        return ExperimentReport(
            experiment: "lifelong", columns: columns, rows: rows,
            criterion: "growth + freeze at least halves the forgetting on A of naive fine-tuning (per seed, its forgetting is below half the naive one beyond 2 standard deviations of the differences) at a similar loss on C (mean within 10% of naive's) (Chen et al. 2023)",
            finding: finding, reproduced: halved && similar, seeds: o.seeds, steps: 3 * stage,
            seconds: Double((ContinuousClock.now - start).components.seconds), runs: runs)
    }
}
