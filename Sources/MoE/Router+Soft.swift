/// What Soft MoE's weights are for one batch: per group of tokens (a sequence), dispatch [E·S, T] (a softmax over
/// the group's tokens for each slot) and combine [T, E·S] (a softmax over the slots for each token); and, for the
/// statistics, a dense routing whose weight for (token, expert) is the token's combine mass on that expert's
/// slots.
public struct SoftWeights<T: TensorScalar> {
    public let dispatch: [Variable<T>]
    public let combine: [Variable<T>]
    public let routing: Routing<T>
}

extension Router {
    /// Soft MoE (Puigcerver et al. 2023, §2.1 and the normalization of §2.3): logits = scale · l2norm(x) ·
    /// l2norm(Φ)ᵀ for the N tokens against the E·S slot parameters Φ, taken per group of `sequenceLength` tokens
    /// (the whole batch without it): dispatch = softmax over the group's tokens, combine = softmax over slots.
    public func soft(_ x: Variable<T>, _ ctx: ForwardContext<T>, _ options: RouteOptions) -> SoftWeights<T> {
        let n = x.shape[0], e = config.numExperts
        let t = options.sequenceLength ?? n
        Shape.require(t > 0 && n % t == 0, "soft_moe", "\(n) tokens do not split into groups of \(t)")
        let phi = ctx(gate!.weight)  // [E·S, D]
        let logits = (Self.l2Normalized(x) * ctx(slotScale!)).matmul(Self.l2Normalized(phi), transposeB: true)  // [N, E·S]
        let groups = n == t ? [logits] : logits.split(sizes: [Int](repeating: t, count: n / t), axis: 0)
        let dispatch = groups.map { $0.transposed().softmax() }  // [E·S, T]
        let combine = groups.map { $0.softmax() }  // [T, E·S]
        // Statistics: each token's combine mass per expert (not differentiated; the output uses `combine`).
        let mass = Variable.concat(combine, axis: 0).value.reshaped([n, e, config.slotsPerExpert]).sum(axis: 2)  // [N, E]
        let routing = Routing(
            numTokens: n, numExperts: e, tokens: Self.tokenMajor(n, e), experts: (0..<(n * e)).map { $0 % e },
            weights: Variable(mass.reshaped([n * e])), logits: nil, scores: nil, k: e)
        return SoftWeights(dispatch: dispatch, combine: combine, routing: routing)
    }

    /// Rows scaled to unit l2 norm (with a 1e-6 guard inside the root).
    static func l2Normalized(_ v: Variable<T>) -> Variable<T> {
        v * (v.square().sum(axis: 1, keepDims: true) + T(1e-6)).rsqrt()
    }
}
