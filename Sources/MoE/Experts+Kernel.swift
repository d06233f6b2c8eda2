import Foundation

/// The fused expert primitive: permute (gather rows by expert) -> one product per expert over its contiguous
/// block (gate and up fused) -> activation -> one product per expert -> weighted combine back into token
/// order; and its VJP, the same steps in reverse. No per-token loops over products and no [N, E, D]
/// intermediates: memory is O(M (D + P + F)) for M kept assignments.
///
/// Legend: N tokens, D model dim, E experts, F expert hidden dim, P = 2F (SwiGLU) or F, M kept rows.
enum ExpertsKernel {
    struct Saved<T: TensorScalar> {
        let xs: Tensor<T>  // [M, D] inputs in expert order
        let h: Tensor<T>  // [M, P] first projection (pre-activation)
        let a: Tensor<T>  // [M, F] activation
        let ys: Tensor<T>  // [M, D] expert outputs, before weighting
        let rowWeight: [T]  // [M]
    }

    static func apply<T>(
        _ inputs: [Variable<T>], hasB1: Bool, hasB2: Bool, plan: DispatchPlan, activation: ExpertBankActivation
    ) -> Variable<T> {
        let x = inputs[0].value, weights = inputs[1].value, w1 = inputs[2].value, w2 = inputs[3].value
        let b1 = hasB1 ? inputs[4].value : nil
        let b2 = hasB2 ? inputs[hasB1 ? 5 : 4].value : nil
        let (out, saved) = forward(x: x, weights: weights, w1: w1, b1: b1, w2: w2, b2: b2, plan: plan, activation: activation)
        return Variable.primitive(out, inputs: inputs) {
            { g in
                let grads = backward(
                    upstream: g, x: x, weights: weights, w1: w1, w2: w2, hasB1: hasB1, hasB2: hasB2, plan: plan,
                    activation: activation, saved: saved)
                var list: [Tensor<T>?] = [grads.dx, grads.dWeights, grads.dw1, grads.dw2]
                if hasB1 { list.append(grads.db1) }
                if hasB2 { list.append(grads.db2) }
                return list
            }
        }
    }

    /// With at least two experts per core, experts run side by side, each product on one thread, handed out
    /// one expert at a time so uneven loads balance; otherwise they run one after another, each product split
    /// across the cores (MOE_EXPERT_PARALLEL=0/1 forces either). Side by side measured faster on every shape of
    /// `moe bench layer`: the T1 layer 2x (its products are 256 x 128 x 128: a split product pays a thread
    /// hand-off per 2 MFLOP), L2 by 5-20%, L1 about the same.
    static func parallelOverExperts(_ plan: DispatchPlan) -> Bool {
        if let s = ProcessInfo.processInfo.environment["MOE_EXPERT_PARALLEL"] { return s == "1" }
        return plan.numExperts >= 2 * Parallel.cores
    }

    static func forEachExpert(_ plan: DispatchPlan, parallel: Bool, _ body: (Int, Range<Int>) -> Void) {
        if parallel {
            BLAS.singleThreaded {
                Parallel.forEachDynamic(plan.numExperts) { e in
                    let rows = plan.rows(of: e)
                    if !rows.isEmpty { body(e, rows) }
                }
            }
        } else {
            for e in 0..<plan.numExperts {
                let rows = plan.rows(of: e)
                if !rows.isEmpty { body(e, rows) }
            }
        }
    }

    @_specialize(where T == Float)
    @_specialize(where T == Double)
    static func forward<T: TensorScalar>(
        x: Tensor<T>, weights: Tensor<T>, w1: Tensor<T>, b1: Tensor<T>?, w2: Tensor<T>, b2: Tensor<T>?,
        plan: DispatchPlan, activation: ExpertBankActivation
    ) -> (Tensor<T>, Saved<T>) {
        let (n, d) = (x.shape[0], x.shape[1])
        let (e, p) = (w1.shape[0], w1.shape[1]), f = w2.shape[2]
        Shape.require(w1.shape == [e, p, d] && w2.shape == [e, d, f], "moe_experts", "weights \(Shape.describe(w1.shape)), \(Shape.describe(w2.shape)) for input \(Shape.describe(x.shape))")
        Shape.require(e == plan.numExperts && n == plan.numTokens, "moe_experts", "plan for \(plan.numTokens) tokens and \(plan.numExperts) experts, input \(Shape.describe(x.shape)) with \(e) experts")
        let m = plan.rowCount
        let xs = x.indexSelect(plan.token)  // [M, D] permute: rows sorted by expert
        let h = Tensor<T>(uninitializedShape: [m, p])
        let a = Tensor<T>(uninitializedShape: [m, f])
        let ys = Tensor<T>(uninitializedShape: [m, d])
        let parallel = parallelOverExperts(plan)
        xs.withUnsafePointer { px in
            w1.withUnsafePointer { pw1 in
                w2.withUnsafePointer { pw2 in
                    let ph = h.storage.base, pa = a.storage.base, py = ys.storage.base
                    forEachExpert(plan, parallel: parallel) { ex, rows in
                        let r0 = rows.lowerBound, cnt = rows.count
                        T.gemm(transA: false, transB: true, m: cnt, n: p, k: d, alpha: 1, a: px + r0 * d, lda: d,
                               b: pw1 + ex * p * d, ldb: d, beta: 0, c: ph + r0 * p, ldc: p)
                        if let b1 { addRowBias(ph + r0 * p, rows: cnt, width: p, bias: b1, expert: ex) }
                        activate(activation, h: ph + r0 * p, a: pa + r0 * f, rows: cnt, f: f, parallel: !parallel)
                        T.gemm(transA: false, transB: true, m: cnt, n: d, k: f, alpha: 1, a: pa + r0 * f, lda: f,
                               b: pw2 + ex * d * f, ldb: f, beta: 0, c: py + r0 * d, ldc: d)
                        if let b2 { addRowBias(py + r0 * d, rows: cnt, width: d, bias: b2, expert: ex) }
                    }
                }
            }
        }
        // Combine: out[n] = sum over n's rows of w * y, one token per iteration (no write conflicts).
        let rowWeight: [T] = weights.withUnsafePointer { pw in plan.assignment.map { pw[$0] } }
        let out = unpermute(ys, plan: plan, rowWeight: rowWeight)
        return (out, Saved(xs: xs, h: h, a: a, ys: ys, rowWeight: rowWeight))
    }

    struct Gradients<T: TensorScalar> {
        let dx: Tensor<T>, dWeights: Tensor<T>, dw1: Tensor<T>, dw2: Tensor<T>, db1: Tensor<T>?, db2: Tensor<T>?
    }

    @_specialize(where T == Float)
    @_specialize(where T == Double)
    static func backward<T: TensorScalar>(
        upstream g: Tensor<T>, x: Tensor<T>, weights: Tensor<T>, w1: Tensor<T>, w2: Tensor<T>, hasB1: Bool,
        hasB2: Bool, plan: DispatchPlan, activation: ExpertBankActivation, saved: Saved<T>
    ) -> Gradients<T> {
        let d = x.shape[1]
        let (e, p) = (w1.shape[0], w1.shape[1]), f = w2.shape[2]
        let m = plan.rowCount
        // Un-combine: dys[r] = w[r] * g[token r]; dw[assignment r] = g[token r] · ys[r].
        let dys = Tensor<T>(uninitializedShape: [m, d])
        var dWeights = Tensor<T>.zeros(weights.shape)
        let pdys = dys.storage.base
        g.withUnsafePointer { pg in
            saved.ys.withUnsafePointer { py in
                dWeights.withUnsafeMutablePointer { pdw in
                    Parallel.forRange(m, grain: Swift.max(1, elementwiseGrain / Swift.max(d, 1))) { range in
                        for r in range {
                            let src = pg + plan.token[r] * d, w = saved.rowWeight[r], dst = pdys + r * d
                            for j in 0..<d { dst[j] = w * src[j] }
                            pdw[plan.assignment[r]] = VectorMath.dot(src, py + r * d, d)
                        }
                    }
                }
            }
        }
        let dw1 = Tensor<T>.zeros([e, p, d]), dw2 = Tensor<T>.zeros([e, d, f])
        let db1: Tensor<T>? = hasB1 ? .zeros([e, p]) : nil
        let db2: Tensor<T>? = hasB2 ? .zeros([e, d]) : nil
        let da = Tensor<T>(uninitializedShape: [m, f])
        let dh = Tensor<T>(uninitializedShape: [m, p])
        let dxs = Tensor<T>(uninitializedShape: [m, d])
        let parallel = parallelOverExperts(plan)
        saved.xs.withUnsafePointer { px in
            saved.h.withUnsafePointer { ph in
                saved.a.withUnsafePointer { pa in
                    w1.withUnsafePointer { pw1 in
                        w2.withUnsafePointer { pw2 in
                            let pda = da.storage.base, pdh = dh.storage.base, pdx = dxs.storage.base
                            let pdw1 = dw1.storage.base, pdw2 = dw2.storage.base
                            forEachExpert(plan, parallel: parallel) { ex, rows in
                                let r0 = rows.lowerBound, cnt = rows.count
                                // dW2[e] = dYᵀ A ; dA = dY W2[e]
                                T.gemm(transA: true, transB: false, m: d, n: f, k: cnt, alpha: 1, a: pdys + r0 * d, lda: d,
                                       b: pa + r0 * f, ldb: f, beta: 0, c: pdw2 + ex * d * f, ldc: f)
                                T.gemm(transA: false, transB: false, m: cnt, n: f, k: d, alpha: 1, a: pdys + r0 * d, lda: d,
                                       b: pw2 + ex * d * f, ldb: f, beta: 0, c: pda + r0 * f, ldc: f)
                                if let db2 { sumRows(pdys + r0 * d, rows: cnt, width: d, into: db2.storage.base + ex * d) }
                                activateBackward(activation, h: ph + r0 * p, da: pda + r0 * f, dh: pdh + r0 * p, rows: cnt, f: f, parallel: !parallel)
                                // dW1[e] = dHᵀ X ; dX = dH W1[e]
                                T.gemm(transA: true, transB: false, m: p, n: d, k: cnt, alpha: 1, a: pdh + r0 * p, lda: p,
                                       b: px + r0 * d, ldb: d, beta: 0, c: pdw1 + ex * p * d, ldc: d)
                                T.gemm(transA: false, transB: false, m: cnt, n: d, k: p, alpha: 1, a: pdh + r0 * p, lda: p,
                                       b: pw1 + ex * p * d, ldb: d, beta: 0, c: pdx + r0 * d, ldc: d)
                                if let db1 { sumRows(pdh + r0 * p, rows: cnt, width: p, into: db1.storage.base + ex * p) }
                            }
                        }
                    }
                }
            }
        }
        // Un-permute: dx[n] = sum of dxs over n's rows.
        let dx = unpermute(dxs, plan: plan, rowWeight: nil)
        return Gradients(dx: dx, dWeights: dWeights, dw1: dw1, dw2: dw2, db1: db1, db2: db2)
    }

    /// Back into token order: out[n] = sum over n's rows r of w[r] * rows[r] (w = 1 when nil), one token per
    /// iteration so no two threads write the same row. The combine step of the forward and the un-permute
    /// of the input gradient.
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    static func unpermute<T: TensorScalar>(_ rows: Tensor<T>, plan: DispatchPlan, rowWeight: [T]?) -> Tensor<T> {
        let d = rows.shape[1]
        let out = Tensor<T>(uninitializedShape: [plan.numTokens, d])
        let po = out.storage.base
        rows.withUnsafePointer { py in
            Parallel.forRange(plan.numTokens, grain: Swift.max(1, elementwiseGrain / Swift.max(d, 1))) { range in
                for t in range {
                    let dst = po + t * d
                    for j in 0..<d { dst[j] = 0 }
                    for i in plan.tokenStart[t]..<plan.tokenStart[t + 1] {
                        let row = plan.tokenRows[i], src = py + row * d
                        if let rowWeight {
                            let w = rowWeight[row]
                            for j in 0..<d { dst[j] += w * src[j] }
                        } else {
                            for j in 0..<d { dst[j] += src[j] }
                        }
                    }
                }
            }
        }
        return out
    }

    @inline(__always)
    static func addRowBias<T: TensorScalar>(_ p: UnsafeMutablePointer<T>, rows: Int, width: Int, bias: Tensor<T>, expert: Int) {
        bias.withUnsafePointer { pb in
            let b = pb + expert * width
            for r in 0..<rows {
                let row = p + r * width
                for j in 0..<width { row[j] += b[j] }
            }
        }
    }

    @inline(__always)
    static func sumRows<T: TensorScalar>(_ p: UnsafePointer<T>, rows: Int, width: Int, into out: UnsafeMutablePointer<T>) {
        for r in 0..<rows {
            let row = p + r * width
            for j in 0..<width { out[j] += row[j] }
        }
    }

    /// a = silu(h[:, :F]) * h[:, F:] (SwiGLU), its clamped form, or act(h).
    static func activate<T: TensorScalar>(
        _ spec: ExpertBankActivation, h: UnsafeMutablePointer<T>, a: UnsafeMutablePointer<T>, rows: Int, f: Int, parallel: Bool
    ) {
        let grain = parallel ? Swift.max(1, elementwiseGrain / Swift.max(f, 1)) : Int.max
        let elementGrain = parallel ? elementwiseGrain : Int.max
        switch spec.kind {
        case .swiglu:
            Parallel.forRange(rows, grain: grain) { range in
                for r in range {
                    let hg = h + r * 2 * f, hu = hg + f, ar = a + r * f
                    for j in 0..<f { ar[j] = Pointwise.Silu.apply(hg[j]) * hu[j] }
                }
            }
        case .clampedSwiglu:
            let alpha = T(spec.alpha), limit = T(spec.limit)
            Parallel.forRange(rows, grain: grain) { range in
                for r in range {
                    let hg = h + r * 2 * f, hu = hg + f, ar = a + r * f
                    for j in 0..<f {
                        let g = Swift.min(hg[j], limit), u = Swift.min(Swift.max(hu[j], -limit), limit)
                        ar[j] = g * Pointwise.sigmoid(alpha * g) * (u + 1)
                    }
                }
            }
        case .relu: pointwise(Pointwise.Relu.self, h, a, rows * f, elementGrain)
        case .gelu: pointwise(Pointwise.Gelu.self, h, a, rows * f, elementGrain)
        case .geluTanh: pointwise(Pointwise.GeluTanh.self, h, a, rows * f, elementGrain)
        case .silu: pointwise(Pointwise.Silu.self, h, a, rows * f, elementGrain)
        }
    }

    @inline(__always)
    static func pointwise<T: TensorScalar, K: PointwiseUnary>(_: K.Type, _ x: UnsafeMutablePointer<T>, _ y: UnsafeMutablePointer<T>, _ n: Int, _ grain: Int) {
        Parallel.forRange(n, grain: grain) { r in for i in r { y[i] = K.apply(x[i]) } }
    }

    @inline(__always)
    static func pointwiseGrad<T: TensorScalar, K: PointwiseBinary>(_: K.Type, _ g: UnsafeMutablePointer<T>, _ x: UnsafeMutablePointer<T>, _ out: UnsafeMutablePointer<T>, _ n: Int, _ grain: Int) {
        Parallel.forRange(n, grain: grain) { r in for i in r { out[i] = K.apply(g[i], x[i]) } }
    }

    /// dh from da: SwiGLU dh_gate = da * up * silu'(gate), dh_up = da * silu(gate); else da * act'(h).
    static func activateBackward<T: TensorScalar>(
        _ spec: ExpertBankActivation, h: UnsafePointer<T>, da: UnsafeMutablePointer<T>, dh: UnsafeMutablePointer<T>, rows: Int, f: Int,
        parallel: Bool
    ) {
        let grain = parallel ? Swift.max(1, elementwiseGrain / Swift.max(f, 1)) : Int.max
        let elementGrain = parallel ? elementwiseGrain : Int.max
        let hm = UnsafeMutablePointer(mutating: h)
        switch spec.kind {
        case .swiglu:
            Parallel.forRange(rows, grain: grain) { range in
                for r in range {
                    let hg = h + r * 2 * f, hu = hg + f, g = da + r * f, dg = dh + r * 2 * f, du = dg + f
                    for j in 0..<f {
                        dg[j] = Pointwise.SiluGrad.apply(g[j] * hu[j], hg[j])
                        du[j] = g[j] * Pointwise.Silu.apply(hg[j])
                    }
                }
            }
        case .clampedSwiglu:
            // d/dg [g s(alpha g)] = s + alpha g s (1 - s); the clamps pass no gradient where they bind.
            let alpha = T(spec.alpha), limit = T(spec.limit)
            Parallel.forRange(rows, grain: grain) { range in
                for r in range {
                    let hg = h + r * 2 * f, hu = hg + f, g = da + r * f, dg = dh + r * 2 * f, du = dg + f
                    for j in 0..<f {
                        let gc = Swift.min(hg[j], limit), u = Swift.min(Swift.max(hu[j], -limit), limit)
                        let s = Pointwise.sigmoid(alpha * gc)
                        dg[j] = hg[j] < limit ? g[j] * (u + 1) * (s + alpha * gc * s * (1 - s)) : 0
                        du[j] = hu[j] > -limit && hu[j] < limit ? g[j] * gc * s : 0
                    }
                }
            }
        case .relu: pointwiseGrad(Pointwise.ReluGrad.self, da, hm, dh, rows * f, elementGrain)
        case .gelu: pointwiseGrad(Pointwise.GeluGrad.self, da, hm, dh, rows * f, elementGrain)
        case .geluTanh: pointwiseGrad(Pointwise.GeluTanhGrad.self, da, hm, dh, rows * f, elementGrain)
        case .silu: pointwiseGrad(Pointwise.SiluGrad.self, da, hm, dh, rows * f, elementGrain)
        }
    }
}
