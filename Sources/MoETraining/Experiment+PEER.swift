import Foundation

/// `moe experiment peer`: PEER (He 2024) in one layer against a dense FFN and a coarse MoE at no more FLOPs
/// per token, with N growing. The model is the default one made dense (4 layers, D 128, SwiGLU of width 128);
/// layer 2's FFN is the arm:
/// - dense: the SwiGLU of width 128 (3·128·128 multiply-adds per token);
/// - moe: 8 SwiGLU experts of width 128, top-1 (the same per token, plus the router);
/// - PEER n²: H = 4 heads of K = 16 single-neuron experts, keys of width 16 per half, query batch norm (the
///   paper's option for even expert use); query, sub-key scores and experts together stay at or below the
///   dense FFN's multiply-adds for every n here.
public enum PEERExperiment {
    public struct Options: Sendable {
        public var sizes = [32 * 32, 64 * 64, 128 * 128]
        public var heads = 4
        public var expertsPerHead = 16
        public var keyDim = 16
        public init() {}
    }

    public static let layer = 2

    public static func peer(_ n: Int, _ p: Options, dim: Int = 128) -> PEERConfig {
        var c = PEERConfig(hiddenSize: dim, numExperts: n, heads: p.heads, expertsPerHead: p.expertsPerHead, keyDim: p.keyDim)
        c.queryBatchNorm = true
        return c
    }

    public static func arms(_ p: Options) throws(ConfigError) -> [ExperimentArm] {
        var dense = DefaultModel.config(dense: true)
        var moe = dense
        var m = MoEConfig(hiddenSize: 128, expertHiddenSize: 128, numExperts: 8, expertsPerToken: 1)
        m.auxLossCoef = 0.1
        m.auxLossScope = .perLayer
        moe.moe = m
        moe.moeEvery = dense.numLayers  // MoE at layer `firstDense` only
        moe.firstDenseLayers = layer
        dense.moe = nil
        var arms = [ExperimentArm("dense", dense), ExperimentArm("moe", moe)]
        for n in p.sizes {
            var c = dense
            c.peer = peer(n, p)
            c.peerLayers = [layer]
            try c.validate()
            arms.append(ExperimentArm("PEER \(PEERConfig.exactSquareRoot(n) ?? 0)²", c))
        }
        return arms
    }

    /// Multiply-adds per token of layer 2's FFN in an arm.
    static func flops(_ arm: ExperimentArm) -> Int {
        if let p = arm.model.peer { return p.flopsPerToken / 2 }
        if let m = arm.model.moe { return 3 * m.hiddenSize * m.expertHiddenSize * m.expertsPerToken + m.hiddenSize * m.numExperts }
        return 3 * arm.model.hiddenSize * arm.model.intermediateSize
    }

    /// Share of the PEER layer's experts that the validation windows retrieve at least once.
    public static func usage(_ model: MoETransformer<Float>, data: TextDataset, config c: TrainConfig) -> Double {
        guard let p = model.config.peer else { return .nan }
        var seen = [Bool](repeating: false, count: p.numExperts)
        for (x, _) in Evaluation.validationBatches(data, config: c) {
            for e in model(ids: x, batch: c.batch, .inference).peerExperts.first ?? [] { seen[e] = true }
        }
        return Double(seen.filter { $0 }.count) / Double(p.numExperts)
    }

    public static func run(_ o: ExperimentOptions, peer p: Options = Options(), progress: ((String) -> Void)? = nil) throws -> ExperimentReport {
        let start = ContinuousClock.now
        let arms = try arms(p)
        let runs = try ExperimentRunner.runArms(arms, options: o, progress: progress) { arm, model, data, run in
            guard arm.model.peer != nil else { return }
            run.extra["expert_usage"] = usage(model, data: data, config: ExperimentRunner.trainConfig(o, seed: run.seed))
        }
        var columns = ExperimentRunner.standardColumns
        columns.remove(at: columns.firstIndex(of: "worst_max_over_mean_sd")!)
        columns.remove(at: columns.firstIndex(of: "worst_max_over_mean")!)
        columns.remove(at: columns.firstIndex(of: "unused_experts")!)
        columns.insert(contentsOf: ["experts", "layer_madds_per_token", "parameters"], at: 1)
        columns.append("peer_expert_usage")
        let rows = arms.map { arm -> [ExperimentCell] in
            let r = runs[arm.name]!
            let loss = r.map(\.validationLoss)
            let experts = arm.model.peer?.numExperts ?? arm.model.moe?.numExperts ?? 1
            let usage = r.compactMap { $0.extra["expert_usage"] }
            return [.text(arm.name), .number(Double(experts)), .number(Double(flops(arm))), .number(Double(r[0].parameters)),
                    .number(SeedStatistics.mean(loss)), .number(SeedStatistics.std(loss)), .number(SeedStatistics.mean(r.map(\.tokensPerSecond))),
                    usage.isEmpty ? .text("") : .number(SeedStatistics.mean(usage))]
        }
        let peerArms = arms.filter { $0.model.peer != nil }
        let loss = peerArms.map { runs[$0.name]!.map(\.validationLoss) }
        let means = loss.map(SeedStatistics.mean)
        let falls = means.count > 1 && zip(means, means.dropFirst()).allSatisfy { $0 > $1 } && SeedStatistics.below(loss.last!, loss.first!)
        let dense = runs["dense"]!.map(\.validationLoss)
        let belowDense = SeedStatistics.below(loss.last!, dense)
        let finding = String(
            format: "PEER mean validation loss by N %@ (%@); largest PEER %.4f against dense %.4f (%@ beyond 2 sd); coarse MoE %.4f",
            zip(peerArms, means).map { String(format: "%@: %.4f", $0.name, $1) }.joined(separator: ", "),
            falls ? "falls at every step and beyond 2 sd overall" : "does not fall at every step beyond 2 sd overall",
            means.last!, SeedStatistics.mean(dense), belowDense ? "below" : "not below", SeedStatistics.mean(runs["moe"]!.map(\.validationLoss)))
        return ExperimentReport(
            experiment: "peer", columns: columns, rows: rows,
            criterion: "PEER's validation loss falls as N grows (the mean falls at every step, and the largest N is below the smallest beyond 2 standard deviations of the per-seed differences) and the largest PEER ends below the dense FFN beyond 2 standard deviations (He 2024, Table 1 ordering)",
            finding: finding, reproduced: falls && belowDense, seeds: o.seeds, steps: o.steps,
            seconds: Double((ContinuousClock.now - start).components.seconds), runs: runs)
    }
}
