extension Router {
    /// Shazeer et al. 2017, "Outrageously Large Neural Networks", eq. 3-5 and appendix A:
    /// H(x)_i = (x W_g)_i + StandardNormal() * Softplus((x W_noise)_i) in training (clean logits otherwise);
    /// G(x) = Softmax(KeepTopK(H(x), k)), i.e. a softmax over the k kept values.
    ///
    /// The smooth load estimator: P(x, i) = Phi(((x W_g)_i - kth_excluding(H(x), k, i)) / Softplus((x W_noise)_i)),
    /// the probability that expert i stays in the top k under a new noise draw; load_i = sum_x P(x, i).
    func noisyTopK(_ x: Variable<T>, _ ctx: ForwardContext<T>, _ options: RouteOptions) -> Routing<T> {
        let n = x.shape[0], k = config.expertsPerToken, e = config.numExperts
        let clean = gate!(x, ctx)  // [N, E]
        var h = clean
        var smoothLoad: Variable<T>? = nil
        if options.training {
            let r = requireRandom(options, "noisy top-k gating")
            let std = noise!(x, ctx).softplus() + T(1e-2)  // the paper's epsilon keeps the scale positive
            let eps = Tensor<T>.normal([n, e], rng: &r.generator)
            h = clean + Variable(eps) * std
            if k < e {
                // kth_excluding(H, k, i): the (k+1)-th largest value for experts inside the top k, the k-th otherwise.
                let (above, aboveIdx) = h.topK(k + 1)  // [N, K+1]
                var pick = [Int](repeating: k - 1, count: n * e)
                for row in 0..<n { for j in 0..<k { pick[row * e + aboveIdx[row * (k + 1) + j]] = k } }
                let threshold = above.gather(lastAxis: pick, k: e)  // [N, E]
                smoothLoad = ((clean - threshold) / std).normalCDF().sum(axis: 0)  // [E]
            }
        }
        let (top, idx) = h.topK(k)
        return Routing(
            numTokens: n, numExperts: e, tokens: Self.tokenMajor(n, k), experts: idx,
            weights: top.softmax().reshaped([n * k]), logits: h, scores: h.softmax(), k: k, smoothLoad: smoothLoad)
    }
}
