/// Reductions over one axis, and broadcasting back. A tensor is read as [outer, n, inner] around the axis.
extension Tensor {
    @inline(__always)
    func split(around axis: Int) -> (outer: Int, n: Int, inner: Int) {
        (Shape.count(Array(shape[..<axis])), shape[axis], Shape.count(Array(shape[(axis + 1)...])))
    }

    @inline(__always)
    func reducedShape(_ axis: Int, keepDims: Bool) -> [Int] {
        var s = shape
        if keepDims { s[axis] = 1 } else { s.remove(at: axis) }
        return s
    }

    /// Sum over `axis`.
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public func sum(axis: Int, keepDims: Bool = false) -> Tensor {
        let ax = Shape.axis(axis, rank: rank, op: "sum")
        let (outer, n, inner) = split(around: ax)
        let out = Tensor.zeros(reducedShape(ax, keepDims: keepDims))
        let po = out.storage.base
        withUnsafePointer { px in
            if inner == 1 {
                Parallel.forRange(outer, grain: Swift.max(1, elementwiseGrain / Swift.max(n, 1))) { r in
                    for o in r {
                        var s: T = 0
                        let row = px + o * n
                        for j in 0..<n { s += row[j] }
                        po[o] = s
                    }
                }
            } else {
                // Accumulate whole rows of length `inner` (vectorizes); split over `outer` or over `inner`.
                if outer >= Parallel.cores {
                    Parallel.forRange(outer, grain: Swift.max(1, elementwiseGrain / Swift.max(n * inner, 1))) { r in
                        for o in r {
                            let dst = po + o * inner
                            for j in 0..<n {
                                let src = px + (o * n + j) * inner
                                for i in 0..<inner { dst[i] += src[i] }
                            }
                        }
                    }
                } else {
                    for o in 0..<outer {
                        Parallel.forRange(inner, grain: Swift.max(1, elementwiseGrain / Swift.max(n, 1))) { r in
                            let dst = po + o * inner
                            for j in 0..<n {
                                let src = px + (o * n + j) * inner
                                for i in r { dst[i] += src[i] }
                            }
                        }
                    }
                }
            }
        }
        return out
    }

    /// Sum over several axes.
    public func sum(axes: [Int], keepDims: Bool = false) -> Tensor {
        let norm = Set(axes.map { Shape.axis($0, rank: rank, op: "sum") }).sorted(by: >)
        var t = self
        for a in norm { t = t.sum(axis: a, keepDims: true) }
        if keepDims { return t }
        return t.reshaped(shape.enumerated().filter { !norm.contains($0.offset) }.map(\.element))
    }

    /// Mean over `axis`.
    public func mean(axis: Int, keepDims: Bool = false) -> Tensor {
        let ax = Shape.axis(axis, rank: rank, op: "mean")
        return sum(axis: ax, keepDims: keepDims).scaled(by: 1 / T(Swift.max(shape[ax], 1)))
    }

    /// Maximum over `axis`, with the index of the first maximum.
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public func max(axis: Int, keepDims: Bool = false) -> (values: Tensor, indices: [Int]) {
        let ax = Shape.axis(axis, rank: rank, op: "max")
        let (outer, n, inner) = split(around: ax)
        Shape.require(n > 0, "max", "cannot take the max over an empty axis of \(Shape.describe(shape))")
        let out = Tensor(uninitializedShape: reducedShape(ax, keepDims: keepDims))
        var idx = [Int](repeating: 0, count: outer * inner)
        let po = out.storage.base
        withUnsafePointer { px in
            idx.withUnsafeMutableBufferPointer { pi in
                let pidx = pi.baseAddress!
                Parallel.forRange(outer, grain: Swift.max(1, elementwiseGrain / Swift.max(n * inner, 1))) { r in
                    for o in r {
                        for i in 0..<inner {
                            var best = px[o * n * inner + i]
                            var arg = 0
                            for j in 1..<n {
                                let v = px[(o * n + j) * inner + i]
                                if v > best || (best.isNaN && !v.isNaN) {
                                    best = v
                                    arg = j
                                }
                            }
                            po[o * inner + i] = best
                            pidx[o * inner + i] = arg
                        }
                    }
                }
            }
        }
        return (out, idx)
    }

    /// Scatters `g` (the reduced shape) to the positions `indices` chose along `axis`; zeros elsewhere.
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public static func maxBackward(_ g: Tensor, indices: [Int], inputShape: [Int], axis: Int) -> Tensor {
        let out = Tensor.zeros(inputShape)
        let outer = Shape.count(Array(inputShape[..<axis]))
        let n = inputShape[axis]
        let inner = Shape.count(Array(inputShape[(axis + 1)...]))
        let po = out.storage.base
        g.withUnsafePointer { pg in
            for o in 0..<outer {
                for i in 0..<inner {
                    po[(o * n + indices[o * inner + i]) * inner + i] = pg[o * inner + i]
                }
            }
        }
        return out
    }

    /// This tensor broadcast (copied) to `target`.
    public func broadcast(to target: [Int]) -> Tensor {
        if shape == target { return self }
        let out = Tensor.zip(Tensor.zeros(target), self, op: "broadcast", Pointwise.Second.self)
        Shape.require(
            out.shape == target, "broadcast",
            "\(Shape.describe(shape)) does not broadcast to \(Shape.describe(target))")
        return out
    }

    /// Sums a broadcast result back to `target` (the inverse of broadcasting, for gradients).
    public func sum(toShape target: [Int]) -> Tensor {
        if shape == target { return self }
        let lead = rank - target.count
        Shape.require(lead >= 0, "sum_to", "cannot reduce \(Shape.describe(shape)) to \(Shape.describe(target))")
        var axes = Array(0..<lead)
        for (i, d) in target.enumerated() where d == 1 && shape[lead + i] != 1 { axes.append(lead + i) }
        return sum(axes: axes, keepDims: true).reshaped(target)
    }
}
