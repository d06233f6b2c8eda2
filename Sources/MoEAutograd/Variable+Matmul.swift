import MoETensor

extension Variable {
    /// `op(a) op(b)`: 2-D, [..., M, K] x [K, N], or batched with equal batch axes. See `Tensor.matmul`.
    ///
    /// VJP for C = op(A) op(B), written with transpose flags only:
    /// - A B:     dA = dC Bᵀ,   dB = Aᵀ dC
    /// - A Bᵀ:    dA = dC B,    dB = dCᵀ A
    /// - Aᵀ B:    dA = B dCᵀ,   dB = A dC
    /// - Aᵀ Bᵀ:   dA = Bᵀ dCᵀ,  dB = dCᵀ Aᵀ
    public static func matmul(_ a: Variable, _ b: Variable, transposeA: Bool = false, transposeB: Bool = false) -> Variable {
        let y = Tensor.matmul(a.value, b.value, transposeA: transposeA, transposeB: transposeB)
        return result(y, a, b) {
            let av = a.value, bv = b.value
            let needA = a.requiresGrad, needB = b.requiresGrad
            return { g in
                // [..., M, K] x [K, N]: fold the leading axes so both gradients are single products.
                let fold = bv.rank == 2 && av.rank > 2
                let a2 = fold ? av.reshaped([-1, av.shape[av.rank - 1]]) : av
                let g2 = fold ? g.reshaped([-1, g.shape[g.rank - 1]]) : g
                var ga: Tensor<T>? = nil, gb: Tensor<T>? = nil
                switch (transposeA, transposeB) {
                case (false, false):
                    if needA { ga = Tensor.matmul(g, bv, transposeB: true) }
                    if needB { gb = Tensor.matmul(a2, g2, transposeA: true) }
                case (false, true):
                    if needA { ga = Tensor.matmul(g, bv) }
                    if needB { gb = Tensor.matmul(g2, a2, transposeA: true) }
                case (true, false):
                    if needA { ga = Tensor.matmul(bv, g, transposeB: true) }
                    if needB { gb = Tensor.matmul(av, g) }
                case (true, true):
                    if needA { ga = Tensor.matmul(bv, g, transposeA: true, transposeB: true) }
                    if needB { gb = Tensor.matmul(g, av, transposeA: true, transposeB: true) }
                }
                return [ga, gb]
            }
        }
    }

    public func matmul(_ other: Variable, transposeB: Bool = false) -> Variable {
        Variable.matmul(self, other, transposeB: transposeB)
    }
}
