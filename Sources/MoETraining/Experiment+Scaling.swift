import Foundation

/// `moe experiment experts`: expert count at fixed active compute (Clark et al. 2022, "Unified Scaling Laws
/// for Routed Language Models"). E = 1 is the dense baseline (one SwiGLU of width 2F, the same active
/// parameters as top-2 of experts of width F); E = 4, 8, 16, 32 are top-2 MoE models of the default shape with
/// the default per-layer Switch loss. Same steps, same seeds.
public enum ExpertCountExperiment {
    public static let counts = [1, 4, 8, 16, 32]

    public static func arms() -> [ExperimentArm] {
        counts.map { e in ExperimentArm("E=\(e)", e == 1 ? DefaultModel.config(dense: true) : DefaultModel.config(experts: e)) }
    }

    public static func run(_ o: ExperimentOptions, progress: ((String) -> Void)? = nil) throws -> ExperimentReport {
        let start = ContinuousClock.now
        let arms = arms()
        let runs = try ExperimentRunner.runArms(arms, options: o, progress: progress)
        var columns = ExperimentRunner.standardColumns
        columns.insert(contentsOf: ["experts", "parameters", "active_parameters"], at: 1)
        let rows = zip(counts, arms).map { e, arm -> [ExperimentCell] in
            var row = ExperimentRunner.standardRow(arm.name, runs[arm.name]!)
            let r = runs[arm.name]![0]
            row.insert(contentsOf: [.number(Double(e)), .number(Double(r.parameters)), .number(Double(r.activeParameters))], at: 1)
            return row
        }
        let loss = arms.map { runs[$0.name]!.map(\.validationLoss) }
        let means = loss.map(SeedStatistics.mean)
        let falls = zip(means, means.dropFirst()).allSatisfy { $0 > $1 }
        let beyond = SeedStatistics.below(loss[4], loss[0])
        // Gain per doubling of E: from 1 to 4 (two doublings) against from 16 to 32 (one).
        let early = (means[0] - means[1]) / 2, late = means[3] - means[4]
        let diminishing = late < early
        let finding = String(
            format: "mean validation loss by E %@ (%@ at every step); E=32 %@ E=1 beyond 2 sd: %@; gain per doubling 1→4 %.4f, 16→32 %.4f",
            zip(counts, means).map { String(format: "%d: %.4f", $0, $1) }.joined(separator: ", "),
            falls ? "falls" : "does not fall", "vs", beyond ? "yes" : "no", early, late)
        return ExperimentReport(
            experiment: "experts", columns: columns, rows: rows,
            criterion: "validation loss falls as E grows (the mean falls at every step of E, and E=32 is below E=1 beyond 2 standard deviations of the per-seed differences) with diminishing returns (the gain per doubling of E from 16 to 32 is smaller than from 1 to 4)",
            finding: finding, reproduced: falls && beyond && diminishing, seeds: o.seeds, steps: o.steps,
            seconds: Double((ContinuousClock.now - start).components.seconds), runs: runs)
    }
}

/// `moe experiment granularity`: fine-grained experts at fixed total and active parameters (Krajewski et al.
/// 2024, "Scaling Laws for Fine-Grained Mixture of Experts"). G = 1 is 8 experts of width 128 with top-1 (each
/// expert the size of the dense FFN); granularity G splits each expert G ways and routes to top-G of 8G.
/// Besides the loss, each arm measures the wall-clock share of routing (router scores, top-k, weights and the
/// dispatch sort) in one MoE layer's forward on a batch, where routing starts to dominate at large G.
public enum GranularityExperiment {
    public static let granularities = [1, 2, 4, 8, 16]

    public static func arms() throws -> [ExperimentArm] {
        try granularities.map { g in
            var c = DefaultModel.config(experts: 8, topK: 1, expertHidden: 128)
            c.moe = try c.moe!.fineGrained(g)
            return ExperimentArm("G=\(g)", c)
        }
    }

    /// Median seconds of routing and of the whole MoE layer (forward, inference) on `tokens` random tokens.
    public static func routingShare(_ layer: MoELayer<Float>, tokens: Int = 2048, repeats: Int = 7) -> (routing: Double, layer: Double) {
        var rng = RandomGenerator(seed: 99)
        let x = Variable(Tensor<Float>.normal([tokens, layer.config.hiddenSize], std: 1, rng: &rng))
        func median(_ f: () -> Void) -> Double {
            var t: [Double] = []
            for _ in 0..<repeats {
                let s = ContinuousClock.now
                f()
                let d = ContinuousClock.now - s
                t.append(Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18)
            }
            return t.sorted()[repeats / 2]
        }
        let route = median {
            let r = layer.router.route(x, .inference, .inference)
            _ = DispatchPlan(r)
        }
        let whole = median { _ = layer(x, .inference) }
        return (route, whole)
    }

    public static func run(_ o: ExperimentOptions, progress: ((String) -> Void)? = nil) throws -> ExperimentReport {
        let start = ContinuousClock.now
        let arms = try arms()
        let runs = try ExperimentRunner.runArms(arms, options: o, progress: progress) { _, model, _, run in
            let (r, l) = routingShare(model.moeLayers[0])
            run.extra["routing_ms"] = r * 1000
            run.extra["layer_ms"] = l * 1000
        }
        var columns = ExperimentRunner.standardColumns
        columns.insert(contentsOf: ["G", "experts", "top_k", "expert_width"], at: 1)
        columns += ["routing_ms", "layer_ms", "routing_share"]
        let rows = zip(granularities, arms).map { g, arm -> [ExperimentCell] in
            let r = runs[arm.name]!
            var row = ExperimentRunner.standardRow(arm.name, r)
            let m = arm.model.moe!
            row.insert(contentsOf: [.number(Double(g)), .number(Double(m.numExperts)), .number(Double(m.expertsPerToken)), .number(Double(m.expertHiddenSize))], at: 1)
            let routing = SeedStatistics.mean(r.map { $0.extra["routing_ms"]! }), layer = SeedStatistics.mean(r.map { $0.extra["layer_ms"]! })
            row += [.number(routing), .number(layer), .number(routing / layer)]
            return row
        }
        let loss = arms.map { runs[$0.name]!.map(\.validationLoss) }
        let means = loss.map(SeedStatistics.mean)
        let best = (1..<means.count).min { means[$0] < means[$1] }!
        let improves = SeedStatistics.below(loss[best], loss[0])
        let shares = arms.map { a in SeedStatistics.mean(runs[a.name]!.map { $0.extra["routing_ms"]! / $0.extra["layer_ms"]! }) }
        let finding = String(
            format: "best G = %d: mean validation loss %.4f against %.4f at G = 1 (%@ beyond 2 sd); routing share of the layer's forward %@",
            granularities[best], means[best], means[0], improves ? "below" : "not below",
            zip(granularities, shares).map { String(format: "G=%d %.0f%%", $0, $1 * 100) }.joined(separator: ", "))
        return ExperimentReport(
            experiment: "granularity", columns: columns, rows: rows,
            criterion: "loss improves from G = 1 up to a point: the best G > 1 has a lower validation loss than G = 1 beyond 2 standard deviations of the per-seed differences (the routing cost at large G is reported alongside)",
            finding: finding, reproduced: improves, seeds: o.seeds, steps: o.steps,
            seconds: Double((ContinuousClock.now - start).components.seconds), runs: runs)
    }
}
