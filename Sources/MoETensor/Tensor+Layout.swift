/// Layout changes that copy: permutation of axes, concatenation and splitting.
extension Tensor {
    /// Axes reordered: output axis `i` is input axis `perm[i]`.
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public func permuted(_ perm: [Int]) -> Tensor {
        Shape.require(
            perm.sorted() == Array(0..<rank), "permute",
            "\(perm) is not a permutation of the axes of \(Shape.describe(shape))")
        if perm == Array(0..<rank) { return self }
        let outShape = perm.map { shape[$0] }
        let inStrides = Shape.strides(shape)
        let st = perm.map { inStrides[$0] }  // input stride of each output axis
        let out = Tensor(uninitializedShape: outShape)
        let po = out.storage.base
        let r = rank
        // The last output axis is copied as a run, contiguous when the last axis did not move.
        let inner = outShape[r - 1], innerStride = st[r - 1]
        let rows = inner == 0 ? 0 : count / inner
        withUnsafePointer { px in
            Parallel.forRange(rows, grain: Swift.max(1, elementwiseGrain / Swift.max(inner, 1))) { range in
                for row in range {
                    var rem = row, src = 0
                    for d in stride(from: r - 2, through: 0, by: -1) {
                        src += (rem % outShape[d]) * st[d]
                        rem /= outShape[d]
                    }
                    let dst = po + row * inner
                    if innerStride == 1 {
                        dst.update(from: px + src, count: inner)
                    } else {
                        for j in 0..<inner { dst[j] = px[src + j * innerStride] }
                    }
                }
            }
        }
        return out
    }

    /// Two axes swapped.
    public func transposed(_ a: Int = -2, _ b: Int = -1) -> Tensor {
        var perm = Array(0..<rank)
        perm.swapAt(Shape.axis(a, rank: rank, op: "transpose"), Shape.axis(b, rank: rank, op: "transpose"))
        return permuted(perm)
    }

    /// Tensors joined along `axis`; all other axes must agree.
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public static func concat(_ parts: [Tensor], axis: Int) -> Tensor {
        Shape.require(!parts.isEmpty, "concat", "needs at least one tensor")
        let first = parts[0]
        let ax = Shape.axis(axis, rank: first.rank, op: "concat")
        for p in parts {
            var a = p.shape, b = first.shape
            Shape.require(a.count == b.count, "concat", "ranks differ: \(parts.map { Shape.describe($0.shape) })")
            a[ax] = 0
            b[ax] = 0
            Shape.require(a == b, "concat", "shapes differ off axis \(ax): \(parts.map { Shape.describe($0.shape) })")
        }
        var outShape = first.shape
        outShape[ax] = parts.reduce(0) { $0 + $1.shape[ax] }
        let out = Tensor(uninitializedShape: outShape)
        let outer = Shape.count(Array(outShape[..<ax]))
        let inner = Shape.count(Array(outShape[(ax + 1)...]))
        let rowOut = outShape[ax] * inner
        var col = 0
        let po = out.storage.base
        for p in parts {
            let w = p.shape[ax] * inner
            p.withUnsafePointer { src in
                for o in 0..<outer { (po + o * rowOut + col).update(from: src + o * w, count: w) }
            }
            col += w
        }
        return out
    }

    /// Pieces of the given sizes along `axis` (their sum must be the axis length).
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public func split(sizes: [Int], axis: Int) -> [Tensor] {
        let ax = Shape.axis(axis, rank: rank, op: "split")
        Shape.require(
            sizes.reduce(0, +) == shape[ax] && sizes.allSatisfy { $0 >= 0 }, "split",
            "sizes \(sizes) do not add up to axis \(ax) of \(Shape.describe(shape))")
        let outer = Shape.count(Array(shape[..<ax]))
        let inner = Shape.count(Array(shape[(ax + 1)...]))
        let rowIn = shape[ax] * inner
        var col = 0
        return withUnsafePointer { px in
            sizes.map { size in
                var s = shape
                s[ax] = size
                let t = Tensor(uninitializedShape: s)
                let w = size * inner
                let dst = t.storage.base
                for o in 0..<outer { (dst + o * w).update(from: px + o * rowIn + col, count: w) }
                col += w
                return t
            }
        }
    }
}
