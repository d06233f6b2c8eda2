import Foundation

/// `moe experiment base`: BASE layers (Lewis et al. 2021) against top-1 Switch routing with its balancing loss, at
/// equal compute: both route each token to one of 8 SwiGLU experts of width 128 in every layer of the default
/// model shape (the dense FFN's width, so one expert per token is the dense compute). Switch scales the expert
/// by its softmax probability and adds the per-layer f·P loss (0.1); BASE assigns tokens by balanced assignment
/// in training and greedily in inference, scales by σ(score), adds the input back, and has no loss term.
public enum BASEExperiment {
    public static let arms = ["switch top-1", "BASE"]

    public static func models() -> [ExperimentArm] {
        var base = DefaultModel.config(experts: 8, topK: 1, expertHidden: 128, router: .base, auxLossCoef: 0)
        base.moe?.auxLossScope = .perLayer
        return [ExperimentArm(arms[0], DefaultModel.config(experts: 8, topK: 1, expertHidden: 128, router: .switchTop1)),
                ExperimentArm(arms[1], base)]
    }

    /// The worst layer's max/mean load of the training-time routing (BASE's balanced assignment) on the validation
    /// windows.
    static func trainingBalance(_ model: MoETransformer<Float>, data: TextDataset, config c: TrainConfig) -> Double {
        let load = ExperimentRunner.validationLoad(model, data: data, config: c, options: RouteOptions(training: true, random: RandomSource(seed: 1)))
        return load.map(RoutingStatistics.maxOverMean).max() ?? .nan
    }

    public static func run(_ o: ExperimentOptions, progress: ((String) -> Void)? = nil) throws -> ExperimentReport {
        let start = ContinuousClock.now
        let runs = try ExperimentRunner.runArms(models(), options: o, progress: progress) { _, model, data, run in
            run.extra["train_worst_max_over_mean"] = trainingBalance(model, data: data, config: ExperimentRunner.trainConfig(o, seed: run.seed))
        }
        var columns = ExperimentRunner.standardColumns
        columns.insert("train_worst_max_over_mean", at: 5)
        let rows = arms.map { a -> [ExperimentCell] in
            var row = ExperimentRunner.standardRow(a, runs[a]!)
            row.insert(.number(SeedStatistics.mean(runs[a]!.compactMap { $0.extra["train_worst_max_over_mean"] })), at: 5)
            return row
        }
        let switchLoss = runs[arms[0]]!.map(\.validationLoss), baseLoss = runs[arms[1]]!.map(\.validationLoss)
        let worse = SeedStatistics.below(switchLoss, baseLoss)
        let balanced = runs[arms[1]]!.allSatisfy { ($0.extra["train_worst_max_over_mean"] ?? 2) < 1 + 1e-9 }
        let finding = String(
            format: "validation loss: BASE %@, switch top-1 %@ (BASE %@ beyond 2 sd); training-time worst max/mean: BASE %.3f, switch %.3f; inference (greedy) worst max/mean: BASE %.2f, switch %.2f",
            SeedStatistics.format(baseLoss), SeedStatistics.format(switchLoss), worse ? "worse" : "not worse",
            SeedStatistics.mean(runs[arms[1]]!.compactMap { $0.extra["train_worst_max_over_mean"] }),
            SeedStatistics.mean(runs[arms[0]]!.compactMap { $0.extra["train_worst_max_over_mean"] }),
            SeedStatistics.mean(runs[arms[1]]!.compactMap(\.worstMaxOverMean)), SeedStatistics.mean(runs[arms[0]]!.compactMap(\.worstMaxOverMean)))
        return ExperimentReport(
            experiment: "base", columns: columns, rows: rows,
            criterion: "BASE balances every layer exactly in training with no balancing loss (training-time max/mean 1 in every layer and seed) and its validation loss is not worse than top-1 Switch's beyond 2 standard deviations of the per-seed differences (Lewis et al. 2021: comparable quality without an auxiliary loss)",
            finding: finding, reproduced: balanced && !worse, seeds: o.seeds, steps: o.steps,
            seconds: Double((ContinuousClock.now - start).components.seconds), runs: runs)
    }
}
