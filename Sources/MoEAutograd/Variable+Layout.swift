import MoETensor

extension Variable {
    /// A view with a new shape (one axis may be -1). VJP: the gradient viewed in the old shape.
    public func reshaped(_ newShape: [Int]) -> Variable {
        let inShape = shape
        return Variable.result(value.reshaped(newShape), self) { { g in [g.reshaped(inShape)] } }
    }

    /// Axes reordered (output axis i is input axis perm[i]). VJP: the inverse permutation.
    public func permuted(_ perm: [Int]) -> Variable {
        var inverse = [Int](repeating: 0, count: perm.count)
        for (i, p) in perm.enumerated() where p >= 0 && p < perm.count { inverse[p] = i }
        return Variable.result(value.permuted(perm), self) { { g in [g.permuted(inverse)] } }
    }

    /// Two axes swapped.
    public func transposed(_ a: Int = -2, _ b: Int = -1) -> Variable {
        var perm = Array(0..<rank)
        perm.swapAt(Shape.axis(a, rank: rank, op: "transpose"), Shape.axis(b, rank: rank, op: "transpose"))
        return permuted(perm)
    }

    /// Joined along `axis`. VJP: the gradient split back into the parts' sizes.
    public static func concat(_ parts: [Variable], axis: Int) -> Variable {
        let y = Tensor.concat(parts.map(\.value), axis: axis)
        return result(y, parts) {
            let ax = Shape.axis(axis, rank: y.rank, op: "concat")
            let sizes = parts.map { $0.shape[ax] }
            return { g in g.split(sizes: sizes, axis: ax).map { Optional($0) } }
        }
    }

    /// Pieces of the given sizes along `axis`. Each piece's VJP places its gradient in a zero tensor of the
    /// input's shape (the tape sums the pieces).
    public func split(sizes: [Int], axis: Int) -> [Variable] {
        let ax = Shape.axis(axis, rank: rank, op: "split")
        let pieces = value.split(sizes: sizes, axis: ax)
        var start = 0
        return pieces.enumerated().map { i, piece in
            let before = start
            start += sizes[i]
            return Variable.result(piece, self) {
                let total = shape[ax]
                return { g in
                    var parts: [Tensor<T>] = []
                    var zShape = g.shape
                    if before > 0 {
                        zShape[ax] = before
                        parts.append(.zeros(zShape))
                    }
                    parts.append(g)
                    let after = total - before - g.shape[ax]
                    if after > 0 {
                        zShape[ax] = after
                        parts.append(.zeros(zShape))
                    }
                    return [Tensor.concat(parts, axis: ax)]
                }
            }
        }
    }
}
