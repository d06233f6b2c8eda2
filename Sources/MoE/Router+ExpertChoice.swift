extension Router {
    /// Expert Choice (Zhou et al. 2022): S = softmax(x Wᵀ) [N, E]; each expert takes the c * N / E tokens
    /// with the highest affinity, weighted by it. A token may be taken by several experts or none. Every
    /// expert looks at the whole batch, so this is for non-causal use (see MoELayer's causal check).
    func expertChoice(_ x: Variable<T>, _ ctx: ForwardContext<T>) -> Routing<T> {
        let n = x.shape[0], e = config.numExperts
        let capacity = Self.expertChoiceCapacity(tokens: n, experts: e, c: config.expertChoiceCapacity)
        let logits = gate!(x, ctx)
        let probs = logits.softmax()
        let (top, idx) = probs.transposed().topK(capacity)  // [E, C]: per expert its best tokens
        return Routing(
            numTokens: n, numExperts: e, tokens: idx, experts: (0..<(e * capacity)).map { $0 / capacity },
            weights: top.reshaped([e * capacity]), logits: logits, scores: probs, k: nil)
    }

    /// Tokens each expert takes: ceil(c * N / E), at most N.
    public static func expertChoiceCapacity(tokens: Int, experts: Int, c: Double) -> Int {
        min(tokens, max(1, Int((c * Double(tokens) / Double(experts)).rounded(.up))))
    }
}
