extension Router {
    /// Hash layers (Roller et al. 2021): a fixed hash of the token id picks one expert, weight 1. No router
    /// parameters, no learning, and perfectly stable assignments.
    func hash(_ x: Variable<T>, _ options: RouteOptions) -> Routing<T> {
        let n = x.shape[0]
        guard let ids = options.tokenIDs else {
            preconditionFailure("[router] hash routing needs RouteOptions.tokenIDs (the token id of each of the \(n) tokens)")
        }
        Shape.require(ids.count == n, "router", "\(ids.count) token ids for \(n) tokens")
        let experts = ids.map { Self.hashExpert(tokenID: $0, experts: config.numExperts, seed: config.hashSeed) }
        return Routing(
            numTokens: n, numExperts: config.numExperts, tokens: Array(0..<n), experts: experts,
            weights: Variable(Tensor.ones([n])), logits: nil, scores: nil, k: 1)
    }

    /// SplitMix64 of the token id (and seed), reduced modulo E: a fixed, well-mixed token -> expert table.
    public static func hashExpert(tokenID: Int, experts: Int, seed: UInt64) -> Int {
        var z = UInt64(bitPattern: Int64(tokenID)) &+ seed &* 0x9E37_79B9_7F4A_7C15 &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return Int((z ^ (z >> 31)) % UInt64(experts))
    }
}
