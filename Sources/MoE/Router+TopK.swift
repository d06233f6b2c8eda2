extension Router {
    /// Mixtral / Qwen / OLMoE, and Switch (k = 1, not normalized):
    /// p = softmax(x Wᵀ); (w, i) = topk(p, k); w /= sum(w) when normalizing.
    func softmaxTopK(_ x: Variable<T>, _ ctx: ForwardContext<T>, k: Int, normalize: Bool) -> Routing<T> {
        let n = x.shape[0]
        let logits = gate!(x, ctx)  // [N, E]
        let probs = logits.softmax()
        let (top, idx) = probs.topK(k)  // [N, K]
        let w = normalize ? top / top.sum(axis: 1, keepDims: true) : top
        return Routing(
            numTokens: n, numExperts: config.numExperts, tokens: Self.tokenMajor(n, k), experts: idx,
            weights: w.reshaped([n * k]), logits: logits, scores: probs, k: k)
    }

    /// GPT-OSS / JetMoE: (l, i) = topk(x Wᵀ, k); w = softmax(l) over the k chosen.
    func topKSoftmax(_ x: Variable<T>, _ ctx: ForwardContext<T>) -> Routing<T> {
        let n = x.shape[0], k = config.expertsPerToken
        let logits = gate!(x, ctx)
        let (top, idx) = logits.topK(k)
        let w = top.softmax()
        return Routing(
            numTokens: n, numExperts: config.numExperts, tokens: Self.tokenMajor(n, k), experts: idx,
            weights: w.reshaped([n * k]), logits: logits, scores: logits.softmax(), k: k)
    }

    /// Dense soft mixing: every expert on every token, w = softmax(x Wᵀ).
    func dense(_ x: Variable<T>, _ ctx: ForwardContext<T>) -> Routing<T> {
        let n = x.shape[0], e = config.numExperts
        let logits = gate!(x, ctx)
        let probs = logits.softmax()
        return Routing(
            numTokens: n, numExperts: e, tokens: Self.tokenMajor(n, e), experts: (0..<(n * e)).map { $0 % e },
            weights: probs.reshaped([n * e]), logits: logits, scores: probs, k: e)
    }
}
