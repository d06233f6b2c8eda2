extension Router {
    /// DeepSeek-V2/V3 routing, after DeepSeek-V3's `inference/model.py` `Gate`:
    /// s = softmax or sigmoid(x Wᵀ); the selection uses s + b (b: selection-only bias, aux-loss-free
    /// balancing); with n_group > 1 each group is scored by its best expert (V2) or the sum of its best two
    /// (V3), and only the topk_group best groups stay selectable; top-k picks the experts; the weights are the
    /// unbiased s of the chosen experts, normalized to sum to one when norm_topk_prob (V3 with sigmoid),
    /// then multiplied by routed_scaling_factor.
    func grouped(_ x: Variable<T>, _ ctx: ForwardContext<T>) -> Routing<T> {
        let n = x.shape[0], k = config.expertsPerToken, e = config.numExperts
        let logits = gate!(x, ctx)
        let scores = config.scoreFunction == .sigmoid ? logits.sigmoid() : logits.softmax()
        var select = scores.value  // selection only: no gradient flows through the choice
        if let b = selectionBias { select = select + b.value }
        if config.numGroups > 1 { select = maskGroups(select) }
        let (_, idx) = select.topK(k)
        var w = scores.gather(lastAxis: idx, k: k)  // [N, K]
        if config.normalizeTopK { w = w / (w.sum(axis: 1, keepDims: true) + T(1e-20)) }
        if config.routedScalingFactor != 1 { w = w * T(config.routedScalingFactor) }
        return Routing(
            numTokens: n, numExperts: e, tokens: Self.tokenMajor(n, k), experts: idx, weights: w.reshaped([n * k]),
            logits: logits, scores: scores, k: k)
    }

    /// Sets the selection scores of experts outside each token's topk_group best groups to -infinity.
    func maskGroups(_ s: Tensor<T>) -> Tensor<T> {
        let n = s.shape[0], g = config.numGroups, per = config.expertsPerGroup
        let grouped = s.reshaped([n, g, per])
        let groupScores: Tensor<T>
        switch config.groupScore {
        case .max: groupScores = grouped.max(axis: 2).values  // [N, G]
        case .top2Sum: groupScores = grouped.topK(2).values.sum(axis: 2)
        }
        let (_, best) = groupScores.topK(config.topKGroups)
        var out = Tensor<T>(shape: [n, g * per], repeating: -T.infinity)
        s.withUnsafePointer { ps in
            out.withUnsafeMutablePointer { po in
                for t in 0..<n {
                    for j in 0..<config.topKGroups {
                        let base = t * g * per + best[t * config.topKGroups + j] * per
                        for i in 0..<per { po[base + i] = ps[base + i] }
                    }
                }
            }
        }
        return out
    }
}
