extension Router {
    /// BASE layers (Lewis et al. 2021): scores s = x · c_eᵀ against one embedding c_e per expert (`gate.weight`).
    /// In training every token goes to one expert by balanced assignment (each expert exactly ⌈N / E⌉ or fewer,
    /// the auction of `BalancedAssignment`); in inference to its best-scoring expert (greedy). The weight is
    /// σ(s) of the chosen expert; the block adds x back (`MoELayer`). No balancing loss.
    func base(_ x: Variable<T>, _ ctx: ForwardContext<T>, _ options: RouteOptions) -> Routing<T> {
        let n = x.shape[0], e = config.numExperts
        let logits = gate!(x, ctx)  // [N, E]
        let chosen: [Int]
        if options.training {
            let capacity = (n + e - 1) / e
            chosen = BalancedAssignment.solve(scores: logits.value.scalars.map { Double($0) }, tokens: n, experts: e, capacity: capacity)
        } else {
            chosen = logits.value.topK(1).indices
        }
        let w = logits.gather(lastAxis: chosen, k: 1).sigmoid()  // [N, 1]
        return Routing(
            numTokens: n, numExperts: e, tokens: Array(0..<n), experts: chosen, weights: w.reshaped([n]),
            logits: logits, scores: logits.softmax(), k: 1)
    }
}
