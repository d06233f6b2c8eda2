/// The load-balancing terms, each a differentiable value (or nil when its coefficient is 0), and their
/// coefficient-weighted sum. A block returns them; the model folds them together (STYLE rule 5).
public struct BalancingLosses<T: TensorScalar> {
    /// Switch / GShard: E * sum_i f_i P_i for this layer.
    public var switchLoss: Variable<T>?
    /// ST-MoE router z-loss: mean over tokens of logsumexp(logits)^2.
    public var zLoss: Variable<T>?
    /// Shazeer 2017: CV^2 of the importance (sum of gate values) per expert.
    public var importanceLoss: Variable<T>?
    /// Shazeer 2017: CV^2 of the (smooth) load per expert.
    public var loadLoss: Variable<T>?
    /// DeepSeek-V3 sequence-wise balance loss, averaged over sequences.
    public var sequenceLoss: Variable<T>?
    /// sum of coefficient * term over the terms present; nil if none.
    public var total: Variable<T>?

    public init() {}
}

/// The balancing losses' formulas. Legend: N tokens, E experts, K experts per token.
public enum Balancing {
    /// All terms whose coefficient in `config` is non-zero, for one layer's routing.
    public static func losses<T>(_ r: Routing<T>, config c: MoEConfig, options: RouteOptions) -> BalancingLosses<T> {
        var out = BalancingLosses<T>()
        var total: Variable<T>? = nil
        func add(_ term: Variable<T>?, _ coef: Double) {
            guard let term, coef != 0 else { return }
            let w = term * T(coef)
            total = total.map { $0 + w } ?? w
        }
        if c.auxLossCoef > 0, r.logits != nil {
            out.switchLoss = switchLoss([r])
            add(out.switchLoss, c.auxLossCoef)
        }
        if c.zLossCoef > 0, let logits = r.logits {
            out.zLoss = zLoss(logits)
            add(out.zLoss, c.zLossCoef)
        }
        if c.importanceLossCoef > 0 {
            out.importanceLoss = cvSquared(importance(r))
            add(out.importanceLoss, c.importanceLossCoef)
        }
        if c.loadLossCoef > 0 {
            let load = r.smoothLoad ?? Variable(Tensor(shape: [r.numExperts], r.tokensPerExpert.map { T($0) }))
            out.loadLoss = cvSquared(load)
            add(out.loadLoss, c.loadLossCoef)
        }
        if c.sequenceAuxLossCoef > 0, let t = options.sequenceLength, r.scores != nil, r.k != nil {
            out.sequenceLoss = sequenceLoss(r, sequenceLength: t)
            add(out.sequenceLoss, c.sequenceAuxLossCoef)
        }
        out.total = total
        return out
    }

    /// Switch Transformer eq. 4-6 / GShard, pooled over the given layers' tokens (as Hugging Face concatenates
    /// every layer's router logits) and masked for padding: E * sum_i f_i P_i, where f_i is the fraction of
    /// (token, slot) choices that go to expert i (summed over the K slots, so a balanced top-k router scores
    /// K) and P_i the mean softmax probability of expert i. `mask` [N] marks real (non-padding) tokens.
    public static func switchLoss<T>(_ layers: [Routing<T>], mask: [Bool]? = nil) -> Variable<T> {
        Shape.require(!layers.isEmpty, "switch_loss", "needs at least one layer's routing")
        let e = layers[0].numExperts
        var counts = [Double](repeating: 0, count: e)
        var probSum: Variable<T>? = nil
        var valid = 0
        for r in layers {
            guard let logits = r.logits else { preconditionFailure("[switch_loss] the router has no logits (hash routing)") }
            let keep = mask ?? [Bool](repeating: true, count: r.numTokens)
            Shape.require(keep.count == r.numTokens, "switch_loss", "mask of \(keep.count) for \(r.numTokens) tokens")
            for a in 0..<r.assignmentCount where r.active[a] && keep[r.tokens[a]] { counts[r.experts[a]] += 1 }
            valid += keep.filter { $0 }.count
            let m = Variable(Tensor<T>(shape: [r.numTokens, 1], keep.map { $0 ? 1 : 0 }))
            let s = (logits.softmax() * m).sum(axis: 0)  // [E]
            probSum = probSum.map { $0 + s } ?? s
        }
        let n = T(Swift.max(valid, 1))
        let f = Variable(Tensor<T>(shape: [e], counts.map { T($0) / n }))
        return (f * probSum! / n).sum() * T(e)
    }

    /// ST-MoE (Zoph et al. 2022) eq. 5: mean over tokens of (log sum_j exp(logit_j))^2.
    public static func zLoss<T>(_ logits: Variable<T>) -> Variable<T> {
        logits.logSumExp(axis: 1).square().mean()
    }

    /// Importance per expert [E]: the sum over tokens of the gate values it received (active assignments).
    public static func importance<T>(_ r: Routing<T>) -> Variable<T> {
        let active = (0..<r.assignmentCount).filter { r.active[$0] }
        let w = r.weights.indexSelect(active).reshaped([active.count, 1])
        let base = Variable(Tensor<T>.zeros([r.numExperts, 1]))
        return Variable.scatterAdd(base, indices: active.map { r.experts[$0] }, w).reshaped([r.numExperts])
    }

    /// Squared coefficient of variation, var / mean^2, with the sample (n - 1) variance and a 1e-10 guard, as
    /// the widely used reference implementation of Shazeer et al. computes it; 0 for a single expert.
    public static func cvSquared<T>(_ v: Variable<T>) -> Variable<T> {
        let n = v.count
        guard n > 1 else { return Variable(Tensor(0)) }
        let mean = v.mean()
        let centered = v - mean
        let variance = centered.square().sum() * (1 / T(n - 1))
        return variance / (mean.square() + T(1e-10))
    }

    /// DeepSeek-V3 eq. 17-20, per sequence of T tokens: f_i = E / (K T) * #{t : i chosen at t},
    /// P_i = mean over t of s_{i,t} / sum_j s_{j,t}; L = sum_i f_i P_i, averaged over the N / T sequences.
    public static func sequenceLoss<T>(_ r: Routing<T>, sequenceLength t: Int) -> Variable<T> {
        let (n, e, k) = (r.numTokens, r.numExperts, r.k ?? 1)
        Shape.require(t > 0 && n % t == 0, "sequence_loss", "\(n) tokens do not split into sequences of \(t)")
        let seqs = n / t
        var f = [T](repeating: 0, count: seqs * e)
        for a in 0..<r.assignmentCount where r.active[a] {
            f[(r.tokens[a] / t) * e + r.experts[a]] += T(e) / T(k * t)
        }
        let s = r.scores!
        let normalized = s / s.sum(axis: 1, keepDims: true)  // [N, E]
        let p = normalized.reshaped([seqs, t, e]).mean(axis: 1)  // [S, E]
        return (Variable(Tensor(shape: [seqs, e], f)) * p).sum(axis: 1).mean()
    }
}

/// Auxiliary-loss-free balancing (DeepSeek-V3, Wang et al. 2024): after each optimizer step,
/// b_i <- b_i + gamma * sign(mean load - load_i). The bias moves selection only, never the weights.
public enum SelectionBiasBalancer {
    public static func update<T>(_ router: Router<T>, tokensPerExpert load: [Int], rate: Double? = nil) {
        guard let bias = router.selectionBias else { return }
        let gamma = T(rate ?? router.config.biasUpdateRate)
        let mean = Double(load.reduce(0, +)) / Double(max(load.count, 1))
        bias.value.withUnsafeMutablePointer { b in
            for (i, l) in load.enumerated() {
                let diff = mean - Double(l)
                b[i] += diff > 0 ? gamma : (diff < 0 ? -gamma : 0)
            }
        }
    }
}
