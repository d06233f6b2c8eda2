/// Index-driven kernels: row selection, scatter-add, gather along the last axis, top-k.
extension Tensor {
    /// Rows of the first axis picked by `indices`: out[i] = self[indices[i]]; shape [indices.count, rest...].
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public func indexSelect(_ indices: [Int]) -> Tensor {
        Shape.require(rank >= 1, "index_select", "needs rank >= 1, got \(Shape.describe(shape))")
        let n = shape[0]
        let d = n == 0 ? 0 : count / n
        for i in indices {
            Shape.require(i >= 0 && i < n, "index_select", "index \(i) out of range for \(n) rows of \(Shape.describe(shape))")
        }
        let out = Tensor(uninitializedShape: [indices.count] + shape.dropFirst())
        let po = out.storage.base
        withUnsafePointer { px in
            indices.withUnsafeBufferPointer { pi in
                Parallel.forRange(indices.count, grain: Swift.max(1, elementwiseGrain / Swift.max(d, 1))) { r in
                    for i in r { (po + i * d).update(from: px + pi[i] * d, count: d) }
                }
            }
        }
        return out
    }

    /// `self` with rows `src[i]` added into rows `indices[i]` (repeated indices accumulate).
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public func scatterAdd(_ indices: [Int], _ src: Tensor) -> Tensor {
        var out = self.copy()
        out.scatterAddInPlace(indices, src)
        return out
    }

    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public mutating func scatterAddInPlace(_ indices: [Int], _ src: Tensor) {
        Shape.require(rank >= 1, "scatter_add", "needs rank >= 1, got \(Shape.describe(shape))")
        let n = shape[0]
        let d = n == 0 ? 0 : count / n
        Shape.require(
            src.shape == [indices.count] + shape.dropFirst(), "scatter_add",
            "source \(Shape.describe(src.shape)) does not match \(indices.count) rows of \(Shape.describe(shape))")
        for i in indices {
            Shape.require(i >= 0 && i < n, "scatter_add", "index \(i) out of range for \(n) rows")
        }
        src.withUnsafePointer { ps in
            withUnsafeMutablePointer { po in
                for (i, row) in indices.enumerated() {
                    let dst = po + row * d, s = ps + i * d
                    for j in 0..<d { dst[j] += s[j] }
                }
            }
        }
    }

    /// Gather along the last axis: out[..., j] = self[..., index[..., j]]. `index` has the output's shape,
    /// which matches `self` except in the last axis.
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public func gather(lastAxis index: [Int], k: Int) -> Tensor {
        let n = shape.last ?? 1
        let rows = n == 0 ? 0 : count / n
        Shape.require(index.count == rows * k, "gather", "\(index.count) indices for \(rows) rows of \(k)")
        let out = Tensor(uninitializedShape: Array(shape.dropLast()) + [k])
        let po = out.storage.base
        withUnsafePointer { px in
            for r in 0..<rows {
                for j in 0..<k {
                    let i = index[r * k + j]
                    Shape.require(i >= 0 && i < n, "gather", "index \(i) out of range for axis of \(n)")
                    po[r * k + j] = px[r * n + i]
                }
            }
        }
        return out
    }

    /// The adjoint of `gather`: `g` [..., k] scattered (added) into zeros of `inputShape`.
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public static func gatherBackward(_ g: Tensor, index: [Int], inputShape: [Int]) -> Tensor {
        let out = Tensor.zeros(inputShape)
        let n = inputShape.last ?? 1, k = g.shape.last ?? 1
        let rows = k == 0 ? 0 : g.count / k
        let po = out.storage.base
        g.withUnsafePointer { pg in
            for r in 0..<rows {
                for j in 0..<k { po[r * n + index[r * k + j]] += pg[r * k + j] }
            }
        }
        return out
    }

    /// The `k` largest values along the last axis, in descending order, with their indices.
    /// Ties keep the lower index first, so results are deterministic.
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public func topK(_ k: Int) -> (values: Tensor, indices: [Int]) {
        let n = shape.last ?? 1
        Shape.require(rank >= 1 && k >= 0 && k <= n, "topk", "k = \(k) out of range for last axis of \(Shape.describe(shape))")
        let rows = n == 0 ? 0 : count / n
        let out = Tensor(uninitializedShape: Array(shape.dropLast()) + [k])
        var idx = [Int](repeating: 0, count: rows * k)
        let po = out.storage.base
        withUnsafePointer { px in
            idx.withUnsafeMutableBufferPointer { pib in
                let pi = pib.baseAddress!
                Parallel.forRange(rows, grain: Swift.max(1, elementwiseGrain / Swift.max(n, 1))) { r in
                    var order = [Int]()
                    for row in r {
                        let x = px + row * n, vals = po + row * k, ids = pi + row * k
                        if k <= 32 {
                            // Insertion into a sorted list of k: O(n k), fastest for routing-sized k.
                            var filled = 0
                            for j in 0..<n {
                                let v = x[j]
                                if filled == k && !(v > vals[k - 1]) { continue }
                                var p = filled == k ? k - 1 : filled
                                while p > 0 && v > vals[p - 1] {
                                    vals[p] = vals[p - 1]
                                    ids[p] = ids[p - 1]
                                    p -= 1
                                }
                                vals[p] = v
                                ids[p] = j
                                if filled < k { filled += 1 }
                            }
                        } else {
                            order = Array(0..<n)
                            order.sort { x[$0] > x[$1] || (x[$0] == x[$1] && $0 < $1) }
                            for j in 0..<k {
                                ids[j] = order[j]
                                vals[j] = x[order[j]]
                            }
                        }
                    }
                }
            }
        }
        return (out, idx)
    }
}
