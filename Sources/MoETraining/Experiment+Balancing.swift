/// `moe experiment balancing`: the load-balancing methods on the default model (16 experts, top-2, 4 layers),
/// each trained the same steps on the same seeds.
///
/// Arms and their coefficients, fixed before the first run (the papers' values, not tuned here):
/// - none: no balancing term;
/// - switch: Switch / GShard E·Σ f_i P_i per layer, coefficient 0.1 (the default model's);
/// - cv2: Shazeer et al. 2017, noisy top-k gating with CV² of importance and of the smooth load, 0.1 each;
/// - z_loss: ST-MoE router z-loss alone, 1e-3 (it keeps logits small; it is not meant to balance);
/// - sequence: DeepSeek-V3's sequence-wise f·P, coefficient 0.1;
/// - aux_free: DeepSeek-V3's sigmoid scores with a selection-only bias, b_i += γ sign(mean load − load_i),
///   γ = 0.001 (DeepSeek-V3's value), no loss term.
public enum BalancingExperiment {
    public static let balancers = ["switch", "cv2", "sequence", "aux_free"]

    public static func arms() -> [ExperimentArm] {
        func model(_ edit: (inout MoEConfig) -> Void, router: RouterKind = .softmaxTopK) -> TransformerConfig {
            var c = DefaultModel.config(router: router)
            c.moe?.auxLossCoef = 0
            edit(&c.moe!)
            return c
        }
        return [
            ExperimentArm("none", model { _ in }),
            ExperimentArm("switch", model { $0.auxLossCoef = 0.1 }),
            ExperimentArm("cv2", model({ $0.importanceLossCoef = 0.1; $0.loadLossCoef = 0.1 }, router: .noisyTopK)),
            ExperimentArm("z_loss", model { $0.zLossCoef = 1e-3 }),
            ExperimentArm("sequence", model { $0.sequenceAuxLossCoef = 0.1 }),
            ExperimentArm("aux_free", model({ $0.biasUpdateRate = 0.001 }, router: .grouped)),
        ]
    }

    public static func run(_ o: ExperimentOptions, progress: ((String) -> Void)? = nil) throws -> ExperimentReport {
        let start = ContinuousClock.now
        let arms = arms()
        let runs = try ExperimentRunner.runArms(arms, options: o, progress: progress)
        let rows = arms.map { ExperimentRunner.standardRow($0.name, runs[$0.name]!) }
        let none = runs["none"]!.compactMap(\.worstMaxOverMean)
        var verdicts: [String] = []
        var all = true
        for b in balancers {
            let w = runs[b]!.compactMap(\.worstMaxOverMean)
            let ok = SeedStatistics.below(w, none)
            all = all && ok
            verdicts.append("\(b) \(SeedStatistics.format(w, digits: 2)) \(ok ? "<" : "not <") none \(SeedStatistics.format(none, digits: 2))")
        }
        return ExperimentReport(
            experiment: "balancing", columns: ExperimentRunner.standardColumns, rows: rows,
            criterion: "each load-balancing method (switch, cv2, sequence, aux_free) leaves a lower worst-layer max/mean validation load than no balancing, beyond 2 standard deviations of the per-seed differences (z_loss is reported, not tested: it does not aim at balance)",
            finding: "worst max/mean: " + verdicts.joined(separator: "; "), reproduced: all, seeds: o.seeds, steps: o.steps,
            seconds: Double((ContinuousClock.now - start).components.seconds), runs: runs)
    }
}
