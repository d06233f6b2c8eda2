/// RMSNorm and LayerNorm over the last axis, forward and backward kernels.
///
/// RMSNorm (Zhang & Sennrich 2019): y = x * rsqrt(mean(x^2) + eps) * w.
/// LayerNorm (Ba et al. 2016): y = (x - mean) * rsqrt(var + eps) * w + b, biased variance as in PyTorch.
extension Tensor {
    /// Returns y and each row's reciprocal RMS (saved for the backward).
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public static func rmsNorm(_ x: Tensor, weight w: Tensor, eps: T) -> (y: Tensor, rstd: [T]) {
        let d = x.shape.last ?? 1
        Shape.require(w.shape == [d], "rms_norm", "weight \(Shape.describe(w.shape)) does not match last axis of \(Shape.describe(x.shape))")
        let rows = d == 0 ? 0 : x.count / d
        let y = Tensor(uninitializedShape: x.shape)
        var rstd = [T](repeating: 0, count: rows)
        let py = y.storage.base
        x.withUnsafePointer { px in
            w.withUnsafePointer { pw in
                rstd.withUnsafeMutableBufferPointer { prb in
                    let pr = prb.baseAddress!
                    Parallel.forRange(rows, grain: Swift.max(1, elementwiseGrain / Swift.max(d, 1))) { r in
                        for row in r {
                            let xr = px + row * d, yr = py + row * d
                            let ss = VectorMath.dot(xr, xr, d)  // sixteen lanes: a scalar sum chain does not vectorize
                            let inv = 1 / (ss / T(d) + eps).squareRoot()
                            pr[row] = inv
                            for j in 0..<d { yr[j] = xr[j] * inv * pw[j] }
                        }
                    }
                }
            }
        }
        return (y, rstd)
    }

    /// dx = r * (g w - xhat * mean(g w xhat)), dw = sum over rows of g xhat, with xhat = x r.
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public static func rmsNormBackward(
        _ x: Tensor, weight w: Tensor, rstd: [T], upstream g: Tensor
    ) -> (dx: Tensor, dw: Tensor) {
        let d = x.shape.last ?? 1
        let rows = d == 0 ? 0 : x.count / d
        let dx = Tensor(uninitializedShape: x.shape)
        let pdx = dx.storage.base
        let chunks = Swift.max(1, Swift.min(Parallel.cores, rows * d / elementwiseGrain))
        // Each chunk accumulates its own dw row; the rows are summed after.
        let partial = Tensor.zeros([chunks, d])
        let pp = partial.storage.base
        x.withUnsafePointer { px in
            w.withUnsafePointer { pw in
                g.withUnsafePointer { pg in
                    Parallel.forEach(chunks) { c in
                        let dwc = pp + c * d
                        for row in (rows * c / chunks)..<(rows * (c + 1) / chunks) {
                            let xr = px + row * d, gr = pg + row * d, dr = pdx + row * d
                            let inv = rstd[row]
                            // mean(g w xhat) = inv * sum(g w x) / d, summed in sixteen lanes.
                            let dot = VectorMath.dot3(gr, pw, xr, d) * inv / T(d)
                            for j in 0..<d { dwc[j] += gr[j] * (xr[j] * inv) }
                            for j in 0..<d { dr[j] = inv * (gr[j] * pw[j] - xr[j] * inv * dot) }
                        }
                    }
                }
            }
        }
        return (dx, partial.sum(axis: 0))
    }

    /// Returns y, each row's mean and reciprocal standard deviation.
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public static func layerNorm(
        _ x: Tensor, weight w: Tensor, bias b: Tensor, eps: T
    ) -> (y: Tensor, mean: [T], rstd: [T]) {
        let d = x.shape.last ?? 1
        Shape.require(
            w.shape == [d] && b.shape == [d], "layer_norm",
            "weight \(Shape.describe(w.shape)) / bias \(Shape.describe(b.shape)) do not match last axis of \(Shape.describe(x.shape))")
        let rows = d == 0 ? 0 : x.count / d
        let y = Tensor(uninitializedShape: x.shape)
        var means = [T](repeating: 0, count: rows), rstd = [T](repeating: 0, count: rows)
        let py = y.storage.base
        x.withUnsafePointer { px in
            w.withUnsafePointer { pw in
                b.withUnsafePointer { pb in
                    means.withUnsafeMutableBufferPointer { pmb in
                        rstd.withUnsafeMutableBufferPointer { prb in
                            let pm = pmb.baseAddress!, pr = prb.baseAddress!
                            Parallel.forRange(rows, grain: Swift.max(1, elementwiseGrain / Swift.max(d, 1))) { r in
                                for row in r {
                                    let xr = px + row * d, yr = py + row * d
                                    var s: T = 0
                                    for j in 0..<d { s += xr[j] }
                                    let mu = s / T(d)
                                    var v: T = 0
                                    for j in 0..<d { v += (xr[j] - mu) * (xr[j] - mu) }
                                    let inv = 1 / (v / T(d) + eps).squareRoot()
                                    pm[row] = mu
                                    pr[row] = inv
                                    for j in 0..<d { yr[j] = (xr[j] - mu) * inv * pw[j] + pb[j] }
                                }
                            }
                        }
                    }
                }
            }
        }
        return (y, means, rstd)
    }

    /// dx = r * (gh - mean(gh) - xhat * mean(gh xhat)) with gh = g w; dw = sum g xhat; db = sum g.
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public static func layerNormBackward(
        _ x: Tensor, weight w: Tensor, mean: [T], rstd: [T], upstream g: Tensor
    ) -> (dx: Tensor, dw: Tensor, db: Tensor) {
        let d = x.shape.last ?? 1
        let rows = d == 0 ? 0 : x.count / d
        let dx = Tensor(uninitializedShape: x.shape)
        let pdx = dx.storage.base
        let chunks = Swift.max(1, Swift.min(Parallel.cores, rows * d / elementwiseGrain))
        let partial = Tensor.zeros([chunks, 2, d])
        let pp = partial.storage.base
        x.withUnsafePointer { px in
            w.withUnsafePointer { pw in
                g.withUnsafePointer { pg in
                    Parallel.forEach(chunks) { c in
                        let dwc = pp + c * 2 * d, dbc = dwc + d
                        for row in (rows * c / chunks)..<(rows * (c + 1) / chunks) {
                            let xr = px + row * d, gr = pg + row * d, dr = pdx + row * d
                            let mu = mean[row], inv = rstd[row]
                            var sg: T = 0, sgx: T = 0
                            for j in 0..<d {
                                let xh = (xr[j] - mu) * inv
                                let gh = gr[j] * pw[j]
                                sg += gh
                                sgx += gh * xh
                                dwc[j] += gr[j] * xh
                                dbc[j] += gr[j]
                            }
                            sg /= T(d)
                            sgx /= T(d)
                            for j in 0..<d {
                                let xh = (xr[j] - mu) * inv
                                dr[j] = inv * (gr[j] * pw[j] - sg - xh * sgx)
                            }
                        }
                    }
                }
            }
        }
        let sums = partial.sum(axis: 0)  // [2, d]
        return (dx, sums.row(0).copy(), sums.row(1).copy())
    }
}
