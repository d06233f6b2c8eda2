/// Matrix products, all through BLAS with transpose flags (never a transposing copy).
///
/// Shapes: `op(a)` is [..., M, K], `op(b)` is [..., K, N]. Three forms:
/// - 2-D x 2-D;
/// - [..., M, K] x [K, N] (leading axes of `a` folded into M, one BLAS call);
/// - batched [B..., M, K] x [B..., K, N] with equal batch axes, one BLAS call per batch.
extension Tensor {
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public static func matmul(_ a: Tensor, _ b: Tensor, transposeA: Bool = false, transposeB: Bool = false) -> Tensor {
        var out = Tensor(uninitializedShape: matmulShape(a, b, transposeA: transposeA, transposeB: transposeB))
        matmul(a, b, transposeA: transposeA, transposeB: transposeB, into: &out, beta: 0)
        return out
    }

    /// The result shape of a product, or a stop naming the shapes.
    public static func matmulShape(_ a: Tensor, _ b: Tensor, transposeA: Bool, transposeB: Bool) -> [Int] {
        let desc = { "\(Shape.describe(a.shape))\(transposeA ? "ᵀ" : "") x \(Shape.describe(b.shape))\(transposeB ? "ᵀ" : "")" }
        Shape.require(a.rank >= 2 && b.rank >= 2, "matmul", "operands must have rank >= 2: \(desc())")
        let m = transposeA ? a.shape[a.rank - 1] : a.shape[a.rank - 2]
        let ka = transposeA ? a.shape[a.rank - 2] : a.shape[a.rank - 1]
        let kb = transposeB ? b.shape[b.rank - 1] : b.shape[b.rank - 2]
        let n = transposeB ? b.shape[b.rank - 2] : b.shape[b.rank - 1]
        Shape.require(ka == kb, "matmul", "inner dimensions differ: \(desc())")
        if b.rank == 2 {
            Shape.require(a.rank == 2 || !transposeA, "matmul", "a transposed operand of rank > 2 needs a batched partner: \(desc())")
            return Array(a.shape.dropLast(2)) + [m, n]
        }
        Shape.require(
            a.rank == b.rank && a.shape.dropLast(2) == b.shape.dropLast(2), "matmul",
            "batch dimensions differ: \(desc())")
        return Array(a.shape.dropLast(2)) + [m, n]
    }

    /// `out = op(a) op(b) + beta * out`; `beta = 1` accumulates into `out` (used by gradients).
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public static func matmul(
        _ a: Tensor, _ b: Tensor, transposeA: Bool = false, transposeB: Bool = false, into out: inout Tensor, beta: T
    ) {
        let shape = matmulShape(a, b, transposeA: transposeA, transposeB: transposeB)
        Shape.require(out.shape == shape, "matmul", "output \(Shape.describe(out.shape)) should be \(Shape.describe(shape))")
        let k = transposeA ? a.shape[a.rank - 2] : a.shape[a.rank - 1]
        let n = shape[shape.count - 1]
        let lda = a.shape[a.rank - 1], ldb = b.shape[b.rank - 1]
        a.withUnsafePointer { pa in
            b.withUnsafePointer { pb in
                out.withUnsafeMutablePointer { pc in
                    if b.rank == 2 {
                        let m = Shape.count(Array(shape.dropLast()))
                        T.gemm(
                            transA: transposeA, transB: transposeB, m: m, n: n, k: k, alpha: 1,
                            a: pa, lda: lda, b: pb, ldb: ldb, beta: beta, c: pc, ldc: n)
                    } else {
                        let m = shape[shape.count - 2]
                        let batches = Shape.count(Array(shape.dropLast(2)))
                        let sa = a.shape[a.rank - 2] * lda, sb = b.shape[b.rank - 2] * ldb
                        for i in 0..<batches {
                            T.gemm(
                                transA: transposeA, transB: transposeB, m: m, n: n, k: k, alpha: 1,
                                a: pa + i * sa, lda: lda, b: pb + i * sb, ldb: ldb, beta: beta,
                                c: pc + i * m * n, ldc: n)
                        }
                    }
                }
            }
        }
    }
}
