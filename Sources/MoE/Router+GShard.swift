extension Router {
    /// GShard (Lepikhin et al. 2020), Algorithm 1 top-2 gating: g = softmax(x Wᵀ); the top two experts with
    /// weights normalized to g1 + g2 = 1; in training the second expert is used only when 2 * g2 > u with
    /// u ~ U(0, 1), so weak second choices are skipped at random. Capacity is applied after.
    func gshard(_ x: Variable<T>, _ ctx: ForwardContext<T>, _ options: RouteOptions) -> Routing<T> {
        let n = x.shape[0]
        let logits = gate!(x, ctx)
        let probs = logits.softmax()
        let (top, idx) = probs.topK(2)
        let w = top / top.sum(axis: 1, keepDims: true)
        var active = [Bool](repeating: true, count: 2 * n)
        if options.training {
            let r = requireRandom(options, "GShard random routing")
            w.value.withUnsafePointer { p in
                for t in 0..<n where !(2 * Double(p[2 * t + 1]) > r.generator.uniform()) { active[2 * t + 1] = false }
            }
        }
        return Routing(
            numTokens: n, numExperts: config.numExperts, tokens: Self.tokenMajor(n, 2), experts: idx,
            weights: w.reshaped([2 * n]), logits: logits, scores: probs, k: 2, active: active)
    }
}
