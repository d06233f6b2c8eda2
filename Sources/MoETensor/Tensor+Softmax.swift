#if !canImport(Accelerate)
import CMoEBLAS
#endif

/// Softmax, log-softmax and fused cross-entropy over the last axis (rows of length V).
extension Tensor {
    @inline(__always)
    var rowsAndLength: (rows: Int, n: Int) {
        let n = shape.last ?? 1
        return (n == 0 ? 0 : count / n, n)
    }

    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public func softmax() -> Tensor {
        let (rows, n) = rowsAndLength
        let out = Tensor(uninitializedShape: shape)
        let po = out.storage.base
        #if !canImport(Accelerate)
        // Outputs larger than the caches: the exponentials go to a scratch row (in L1) and the scaled row is
        // streamed out (moe_scale_stream_f32), so no output line is read before it is written. Same values.
        if T.self == Float.self && count * 4 > 8 << 20 && n <= 1 << 16 {
            withUnsafePointer { px in
                Parallel.forRange(rows, grain: Swift.max(1, elementwiseGrain / Swift.max(n, 1))) { r in
                    withUnsafeTemporaryAllocation(of: T.self, capacity: n) { scratch in
                        let tmp = scratch.baseAddress!
                        for row in r {
                            let x = px + row * n
                            var m = VectorMath.max(x, n)
                            if m == -T.infinity { m = 0 }
                            let inv = 1 / VectorMath.expShifted(x, tmp, n, shift: m)
                            moe_scale_stream_f32(
                                UnsafeRawPointer(tmp).assumingMemoryBound(to: Float.self),
                                UnsafeMutableRawPointer(po + row * n).assumingMemoryBound(to: Float.self), n, unsafeBitCast(inv, to: Float.self))
                        }
                    }
                }
            }
            return out
        }
        #endif
        withUnsafePointer { px in
            Parallel.forRange(rows, grain: Swift.max(1, elementwiseGrain / Swift.max(n, 1))) { r in
                for row in r {
                    let x = px + row * n, y = po + row * n
                    var m = VectorMath.max(x, n)
                    if m == -T.infinity { m = 0 }
                    let inv = 1 / VectorMath.expShifted(x, y, n, shift: m)
                    for j in 0..<n { y[j] *= inv }
                }
            }
        }
        return out
    }

    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public func logSoftmax() -> Tensor {
        let (rows, n) = rowsAndLength
        let out = Tensor(uninitializedShape: shape)
        let po = out.storage.base
        withUnsafePointer { px in
            Parallel.forRange(rows, grain: Swift.max(1, elementwiseGrain / Swift.max(n, 1))) { r in
                for row in r {
                    let lse = Tensor.logSumExp(px + row * n, n)
                    let x = px + row * n, y = po + row * n
                    for j in 0..<n { y[j] = x[j] - lse }
                }
            }
        }
        return out
    }

    /// log sum_j exp(x[j]), shifted by the row max for stability.
    @inline(__always)
    static func logSumExp(_ x: UnsafePointer<T>, _ n: Int) -> T {
        let m = VectorMath.max(x, n)
        if m == -T.infinity { return m }
        var s: T = 0
        var j = 0
        // Blocks of 64 through a stack buffer so the exponentials vectorize.
        withUnsafeTemporaryAllocation(of: T.self, capacity: 64) { buf in
            let b = buf.baseAddress!
            while j < n {
                let w = Swift.min(64, n - j)
                s += VectorMath.expShifted(x + j, b, w, shift: m)
                j += w
            }
        }
        return m + T.log(s)
    }

    /// `dx = y * (g - sum(g * y))` for `y = softmax(x)`.
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public static func softmaxBackward(y: Tensor, upstream g: Tensor) -> Tensor {
        Shape.require(y.shape == g.shape, "softmax.vjp", "shapes differ: \(Shape.describe(y.shape)) vs \(Shape.describe(g.shape))")
        let (rows, n) = y.rowsAndLength
        let out = Tensor(uninitializedShape: y.shape)
        let po = out.storage.base
        y.withUnsafePointer { py in
            g.withUnsafePointer { pg in
                Parallel.forRange(rows, grain: Swift.max(1, elementwiseGrain / Swift.max(n, 1))) { r in
                    for row in r {
                        let yy = py + row * n, gg = pg + row * n, dx = po + row * n
                        let dot = VectorMath.dot(gg, yy, n)
                        for j in 0..<n { dx[j] = yy[j] * (gg[j] - dot) }
                    }
                }
            }
        }
        return out
    }

    /// `dx = g - softmax(x) * sum(g)` for `y = logSoftmax(x)`; `softmax(x) = exp(y)`.
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public static func logSoftmaxBackward(y: Tensor, upstream g: Tensor) -> Tensor {
        Shape.require(y.shape == g.shape, "logSoftmax.vjp", "shapes differ: \(Shape.describe(y.shape)) vs \(Shape.describe(g.shape))")
        let (rows, n) = y.rowsAndLength
        let out = Tensor(uninitializedShape: y.shape)
        let po = out.storage.base
        y.withUnsafePointer { py in
            g.withUnsafePointer { pg in
                Parallel.forRange(rows, grain: Swift.max(1, elementwiseGrain / Swift.max(n, 1))) { r in
                    for row in r {
                        let yy = py + row * n, gg = pg + row * n, dx = po + row * n
                        let s = VectorMath.sum(gg, n)
                        for j in 0..<n { dx[j] = gg[j] - T.fastExp(yy[j]) * s }
                    }
                }
            }
        }
        return out
    }

    /// Mean cross-entropy of `logits` [N, V] against `targets` [N], skipping rows whose target is
    /// `ignoreIndex`. Returns the loss, each row's log-sum-exp (for the backward) and the counted rows.
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public static func crossEntropy(
        logits: Tensor, targets: [Int], ignoreIndex: Int
    ) -> (loss: T, logSumExp: [T], valid: Int) {
        Shape.require(logits.rank == 2, "cross_entropy", "logits must be [N, V], got \(Shape.describe(logits.shape))")
        let (rows, v) = (logits.shape[0], logits.shape[1])
        Shape.require(
            targets.count == rows, "cross_entropy",
            "\(targets.count) targets for logits \(Shape.describe(logits.shape))")
        for t in targets where t != ignoreIndex {
            Shape.require(t >= 0 && t < v, "cross_entropy", "target \(t) out of range for vocabulary \(v)")
        }
        var lse = [T](repeating: 0, count: rows)
        lse.withUnsafeMutableBufferPointer { pl in
            let out = pl.baseAddress!
            logits.withUnsafePointer { px in
                Parallel.forRange(rows, grain: Swift.max(1, elementwiseGrain / Swift.max(v, 1))) { r in
                    for row in r { out[row] = logSumExp(px + row * v, v) }
                }
            }
        }
        var total = 0.0
        var valid = 0
        logits.withUnsafePointer { px in
            for row in 0..<rows where targets[row] != ignoreIndex {
                total += Double(lse[row] - px[row * v + targets[row]])
                valid += 1
            }
        }
        return (valid > 0 ? T(total / Double(valid)) : 0, lse, valid)
    }

    /// Gradient of the mean cross-entropy: `(softmax - onehot) * g / valid` on counted rows, zero on ignored.
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public static func crossEntropyBackward(
        logits: Tensor, targets: [Int], ignoreIndex: Int, logSumExp lse: [T], valid: Int, upstream g: T
    ) -> Tensor {
        let (rows, v) = (logits.shape[0], logits.shape[1])
        let out = Tensor(uninitializedShape: logits.shape)
        let po = out.storage.base
        let scale = valid > 0 ? g / T(valid) : 0
        logits.withUnsafePointer { px in
            lse.withUnsafeBufferPointer { pl in
                targets.withUnsafeBufferPointer { pt in
                    Parallel.forRange(rows, grain: Swift.max(1, elementwiseGrain / Swift.max(v, 1))) { r in
                        for row in r {
                            let dx = po + row * v
                            if pt[row] == ignoreIndex {
                                for j in 0..<v { dx[j] = 0 }
                                continue
                            }
                            let x = px + row * v, m = pl[row]
                            for j in 0..<v { dx[j] = T.fastExp(x[j] - m) * scale }
                            dx[pt[row]] -= scale
                        }
                    }
                }
            }
        }
        return out
    }
}
