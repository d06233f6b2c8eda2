extension Router {
    /// PhiMoE's SparseMixer (Liu et al. 2024), as it runs at inference, top-2:
    /// first pick i1 = argmax l; its weight is softmax over the logits l_j with (l_i1 - l_j) / max(|l_j|, l_i1)
    /// <= 2·eps, taken at i1. Second pick i2 = argmax of l without i1; its weight is the same softmax over the
    /// rest (i1 excluded) within the margin of l_i2. The weights are not renormalized.
    /// Training uses the same deterministic picks (not the paper's Gumbel sampling and Heun estimator); the
    /// gradient flows through the two masked softmaxes.
    func sparseMixer(_ x: Variable<T>, _ ctx: ForwardContext<T>) -> Routing<T> {
        let n = x.shape[0], e = config.numExperts
        let logits = gate!(x, ctx)  // [N, E]
        let l = logits.value
        let eps2 = 2 * config.sparseMixerEps
        var mask1 = Tensor<T>.zeros([n, e]), mask2 = Tensor<T>.zeros([n, e])
        var first = [Int](repeating: 0, count: n), second = [Int](repeating: 0, count: n)
        for r in 0..<n {
            var i1 = 0
            for j in 1..<e where l[r, j] > l[r, i1] { i1 = j }
            var i2 = i1 == 0 ? 1 : 0
            for j in 0..<e where j != i1 && l[r, j] > l[r, i2] { i2 = j }
            first[r] = i1
            second[r] = e > 1 ? i2 : i1
            for j in 0..<e {
                let v = Double(l[r, j])
                func outside(_ top: Double) -> Bool { (top - v) / Swift.max(abs(v), top) > eps2 }
                if outside(Double(l[r, i1])) { mask1[r, j] = -T.infinity }
                if j == i1 || (e > 1 && outside(Double(l[r, i2]))) { mask2[r, j] = -T.infinity }
            }
        }
        let w1 = (logits + Variable(mask1)).softmax().gather(lastAxis: first, k: 1)
        let w2 = (logits + Variable(mask2)).softmax().gather(lastAxis: second, k: 1)
        let w = Variable.concat([w1, w2], axis: 1)  // [N, 2]
        var experts: [Int] = []
        for r in 0..<n { experts += [first[r], second[r]] }
        return Routing(
            numTokens: n, numExperts: e, tokens: Self.tokenMajor(n, 2), experts: experts,
            weights: w.reshaped([n * 2]), logits: logits, scores: logits.softmax(), k: 2)
    }
}
