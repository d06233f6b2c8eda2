/// Fused scaled-dot-product attention with grouped KV heads (GQA), forward and backward.
///
/// Legend: B batch, T query positions, S key positions, Hq query heads, Hkv key/value heads (Hq % Hkv == 0),
/// Dh head dim. Layouts are the natural outputs of the projections, no transposes needed:
/// q [B, T, Hq, Dh], k and v [B, S, Hkv, Dh], output [B, T, Hq, Dh]. BLAS reads each head in place with a
/// leading dimension of H * Dh.
///
/// Causal masking lets query i see keys j <= i + (S - T), so a KV cache (S > T) works unchanged; a sliding
/// `window` W also hides keys more than W - 1 positions back (j > i + (S - T) - W, as transformers' sliding
/// window mask). Masked probabilities are zero, so the backward needs no window of its own. Rows are
/// processed in blocks, and each block multiplies only against the keys it may see: the masked upper
/// triangle is never computed. The probabilities (B Hq T S values, as slabs per KV head and row block) are kept
/// for the backward; in each row block only the columns up to the block's last visible key are written (the
/// rest is never read).
///
/// Attention sinks (gpt-oss): a learned logit per query head joins each row's softmax denominator and takes
/// no value, so a head can attend to nothing. The sink's probability per row is saved: its gradient is
/// -sum over rows of p_sink rowdot(dO, O), and the other logits' gradients keep their usual form.
public struct AttentionSaved<T: TensorScalar>: Sendable {
    public let probs: Tensor<T>
    public let out: Tensor<T>
    /// [B, Hq, T] the sink's share of each row, when there are sinks.
    public var sinkProbs: Tensor<T>? = nil
}

extension Tensor {
    static var attentionBlock: Int { 64 }

    static func attentionDims(_ q: Tensor, _ k: Tensor, _ v: Tensor) -> (b: Int, t: Int, s: Int, hq: Int, hkv: Int, dh: Int) {
        let desc = { "q \(Shape.describe(q.shape)), k \(Shape.describe(k.shape)), v \(Shape.describe(v.shape))" }
        Shape.require(q.rank == 4 && k.rank == 4 && v.rank == 4, "attention", "expected [B, T, H, Dh] operands: \(desc())")
        Shape.require(k.shape == v.shape, "attention", "k and v differ: \(desc())")
        Shape.require(q.shape[0] == k.shape[0] && q.shape[3] == k.shape[3], "attention", "batch or head dim differ: \(desc())")
        Shape.require(k.shape[2] > 0 && q.shape[2] % k.shape[2] == 0, "attention", "query heads must be a multiple of kv heads: \(desc())")
        return (q.shape[0], q.shape[1], k.shape[1], q.shape[2], k.shape[2], q.shape[3])
    }

    /// Number of keys query row `i` sees.
    @inline(__always)
    static func visibleKeys(_ i: Int, t: Int, s: Int, causal: Bool) -> Int {
        causal ? Swift.max(0, Swift.min(s, i + (s - t) + 1)) : s
    }

    /// Work items are (batch, KV head) pairs. The G = Hq / Hkv query heads of a KV head share its keys and
    /// values, so each row block gathers their query rows into one [G m, Dh] matrix: one product against K for
    /// all of them (G times the rows of a per-head product; OpenBLAS runs these thin products, inner dimension
    /// Dh, well below its peak at 64 rows), and in the backward dK and dV accumulate the whole group directly.
    /// With fewer items than cores, items run one after another and each product is split across the cores.
    @inline(__always)
    static func forEachKVHead(_ items: Int, _ body: (Int) -> Void) {
        if items >= Parallel.cores { Parallel.forEach(items, body) } else { for i in 0..<items { body(i) } }
    }

    /// Offset of the probability slab of (batch b, KV head g, row block starting at r0): [G m, S] rows, ld S,
    /// row hh * m + (i - r0) for query head g G + hh at position i. The slabs tile [B, Hq, T, S] exactly.
    @inline(__always)
    static func probsSlab(b: Int, g: Int, r0: Int, hkv: Int, group: Int, t: Int, s: Int) -> Int {
        ((b * hkv + g) * group * t + group * r0) * s
    }

    /// Copies the G heads' rows [r0, r0 + m) of a [B, T, Hq, Dh] tensor into (or, `back`, out of) a [G m, Dh] matrix.
    @inline(__always)
    static func groupRows(
        _ x: UnsafeMutablePointer<T>, _ g: UnsafeMutablePointer<T>, b: Int, head0: Int, group: Int, r0: Int, m: Int, t: Int, ld: Int,
        dh: Int, back: Bool
    ) {
        for hh in 0..<group {
            for i in 0..<m {
                let src = x + (b * t + r0 + i) * ld + (head0 + hh) * dh, dst = g + (hh * m + i) * dh
                if back { src.update(from: dst, count: dh) } else { dst.update(from: src, count: dh) }
            }
        }
    }

    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public static func attention(
        q: Tensor, k: Tensor, v: Tensor, causal: Bool, scale: T, window: Int? = nil, sinks: Tensor? = nil
    ) -> AttentionSaved<T> {
        let (nb, t, s, hq, hkv, dh) = attentionDims(q, k, v)
        Shape.require(sinks.map { $0.shape == [hq] } ?? true, "attention", "sinks \(Shape.describe(sinks?.shape ?? [])) should be [\(hq)], one per query head")
        let sinkLogits = sinks?.scalars
        let sinkProbs = sinks == nil ? nil : Tensor(uninitializedShape: [nb, hq, t])
        let psink = sinkProbs?.storage.base
        Shape.require(!causal || s >= t, "attention", "causal attention needs at least as many keys (\(s)) as queries (\(t))")
        Shape.require(window.map { $0 >= 1 && causal } ?? true, "attention", "a sliding window needs causal attention and at least one key")
        let out = Tensor(uninitializedShape: q.shape)
        let probs = Tensor(uninitializedShape: [nb, hq, t, s])  // as slabs per (b, KV head, row block): see probsSlab
        let po = out.storage.base, pp = probs.storage.base
        let group = hq / hkv, ldq = hq * dh, ldk = hkv * dh
        let block = attentionBlock
        q.withUnsafePointer { pq in
            k.withUnsafePointer { pk in
                v.withUnsafePointer { pv in
                    let mq = UnsafeMutablePointer(mutating: pq)
                    forEachKVHead(nb * hkv) { item in
                        let b = item / hkv, g = item % hkv
                        let K = pk + b * s * ldk + g * dh, V = pv + b * s * ldk + g * dh
                        let qg = UnsafeMutablePointer<T>.allocate(capacity: group * block * dh)
                        let og = UnsafeMutablePointer<T>.allocate(capacity: group * block * dh)
                        defer {
                            qg.deallocate()
                            og.deallocate()
                        }
                        for r0 in stride(from: 0, to: t, by: block) {
                            let r1 = Swift.min(t, r0 + block), m = r1 - r0, rows = group * m
                            let kmax = visibleKeys(r1 - 1, t: t, s: s, causal: causal)
                            let P = pp + probsSlab(b: b, g: g, r0: r0, hkv: hkv, group: group, t: t, s: s)
                            groupRows(mq, qg, b: b, head0: g * group, group: group, r0: r0, m: m, t: t, ld: ldq, dh: dh, back: false)
                            T.gemm(transA: false, transB: true, m: rows, n: kmax, k: dh, alpha: scale, a: qg, lda: dh, b: K, ldb: ldk,
                                   beta: 0, c: P, ldc: s)
                            for rr in 0..<rows {
                                let i = r0 + rr % m, row = P + rr * s
                                let lim = visibleKeys(i, t: t, s: s, causal: causal)
                                let lo = window.map { Swift.max(0, i + (s - t) - $0 + 1) } ?? 0
                                var mx = VectorMath.max(row + lo, lim - lo)
                                if let sinkLogits { mx = Swift.max(mx, sinkLogits[g * group + rr / m]) }
                                var total = VectorMath.expShifted(row + lo, row + lo, lim - lo, shift: mx)
                                if let sinkLogits, let psink {
                                    let e = T.fastExp(sinkLogits[g * group + rr / m] - mx)
                                    total += e
                                    psink[(b * hq + g * group + rr / m) * t + i] = e / total
                                }
                                let inv = 1 / total
                                for j in 0..<lo { row[j] = 0 }
                                for j in lo..<lim { row[j] *= inv }
                                // Past the block's last visible key nothing reads the row (the PV product and the
                                // backward stop at kmax), so only the block's masked corner is zeroed.
                                for j in lim..<kmax { row[j] = 0 }
                            }
                            T.gemm(transA: false, transB: false, m: rows, n: dh, k: kmax, alpha: 1, a: P, lda: s, b: V, ldb: ldk,
                                   beta: 0, c: og, ldc: dh)
                            groupRows(po, og, b: b, head0: g * group, group: group, r0: r0, m: m, t: t, ld: ldq, dh: dh, back: true)
                        }
                    }
                }
            }
        }
        return AttentionSaved(probs: probs, out: out, sinkProbs: sinkProbs)
    }

    /// Gradients of attention with respect to q, k and v, given the saved probabilities and output.
    ///
    /// Per KV head and row block, with the group's rows stacked: dP = dO V^T; dS = P * (dP - rowdot(dO, O));
    /// dQ = scale dS K; dK += scale dS^T Q; dV += P^T dO. dK and dV of a KV head accumulate straight into the
    /// result (one item owns each), summing its query heads in the products themselves.
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public static func attentionBackward(
        q: Tensor, k: Tensor, v: Tensor, saved: AttentionSaved<T>, upstream dOut: Tensor, causal: Bool, scale: T
    ) -> (dq: Tensor, dk: Tensor, dv: Tensor, dsinks: Tensor?) {
        let (nb, t, s, hq, hkv, dh) = attentionDims(q, k, v)
        // Per (batch, KV head) item and query head of its group, summed over the batch at the end.
        let sinkGrads: UnsafeMutablePointer<T>? = saved.sinkProbs == nil ? nil : .allocate(capacity: nb * hq)
        sinkGrads?.initialize(repeating: 0, count: nb * hq)
        defer { sinkGrads?.deallocate() }
        Shape.require(dOut.shape == q.shape, "attention.vjp", "upstream \(Shape.describe(dOut.shape)) should be \(Shape.describe(q.shape))")
        let dq = Tensor(uninitializedShape: q.shape)
        let dk = Tensor.zeros(k.shape), dv = Tensor.zeros(v.shape)
        let group = hq / hkv, ldq = hq * dh, ldk = hkv * dh
        let block = attentionBlock
        let pdq = dq.storage.base, pdk = dk.storage.base, pdv = dv.storage.base
        q.withUnsafePointer { pq in
            k.withUnsafePointer { pk in
                v.withUnsafePointer { pv in
                    saved.probs.withUnsafePointer { pp in
                        saved.out.withUnsafePointer { po in
                            dOut.withUnsafePointer { pg in
                                let (mq, mo, mg) = (UnsafeMutablePointer(mutating: pq), UnsafeMutablePointer(mutating: po), UnsafeMutablePointer(mutating: pg))
                                forEachKVHead(nb * hkv) { item in
                                    let b = item / hkv, g = item % hkv
                                    let K = pk + b * s * ldk + g * dh, V = pv + b * s * ldk + g * dh
                                    let dK = pdk + b * s * ldk + g * dh, dV = pdv + b * s * ldk + g * dh
                                    let cap = group * block * dh
                                    let qg = UnsafeMutablePointer<T>.allocate(capacity: cap), og = UnsafeMutablePointer<T>.allocate(capacity: cap)
                                    let dog = UnsafeMutablePointer<T>.allocate(capacity: cap), dqg = UnsafeMutablePointer<T>.allocate(capacity: cap)
                                    let dS = UnsafeMutablePointer<T>.allocate(capacity: group * block * s)
                                    defer {
                                        for p in [qg, og, dog, dqg, dS] { p.deallocate() }
                                    }
                                    for r0 in stride(from: 0, to: t, by: block) {
                                        let r1 = Swift.min(t, r0 + block), m = r1 - r0, rows = group * m
                                        let kmax = visibleKeys(r1 - 1, t: t, s: s, causal: causal)
                                        let P = pp + probsSlab(b: b, g: g, r0: r0, hkv: hkv, group: group, t: t, s: s)
                                        let h0 = g * group
                                        groupRows(mq, qg, b: b, head0: h0, group: group, r0: r0, m: m, t: t, ld: ldq, dh: dh, back: false)
                                        groupRows(mo, og, b: b, head0: h0, group: group, r0: r0, m: m, t: t, ld: ldq, dh: dh, back: false)
                                        groupRows(mg, dog, b: b, head0: h0, group: group, r0: r0, m: m, t: t, ld: ldq, dh: dh, back: false)
                                        T.gemm(transA: false, transB: true, m: rows, n: kmax, k: dh, alpha: 1, a: dog, lda: dh, b: V, ldb: ldk,
                                               beta: 0, c: dS, ldc: s)
                                        for rr in 0..<rows {
                                            let dot = VectorMath.dot(og + rr * dh, dog + rr * dh, dh)
                                            let prow = P + rr * s, srow = dS + rr * s
                                            for j in 0..<kmax { srow[j] = prow[j] * (srow[j] - dot) }
                                            if let sinkGrads, let sp = saved.sinkProbs {
                                                let head = b * hq + h0 + rr / m
                                                sinkGrads[head] -= sp.storage.base[head * t + r0 + rr % m] * dot
                                            }
                                        }
                                        T.gemm(transA: false, transB: false, m: rows, n: dh, k: kmax, alpha: scale, a: dS, lda: s, b: K, ldb: ldk,
                                               beta: 0, c: dqg, ldc: dh)
                                        groupRows(pdq, dqg, b: b, head0: h0, group: group, r0: r0, m: m, t: t, ld: ldq, dh: dh, back: true)
                                        T.gemm(transA: true, transB: false, m: kmax, n: dh, k: rows, alpha: scale, a: dS, lda: s, b: qg, ldb: dh,
                                               beta: 1, c: dK, ldc: ldk)
                                        T.gemm(transA: true, transB: false, m: kmax, n: dh, k: rows, alpha: 1, a: P, lda: s, b: dog, ldb: dh,
                                               beta: 1, c: dV, ldc: ldk)
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        var dsinks: Tensor? = nil
        if let sinkGrads {
            var sums = [T](repeating: 0, count: hq)
            for b in 0..<nb { for h in 0..<hq { sums[h] += sinkGrads[b * hq + h] } }
            dsinks = Tensor(shape: [hq], sums)
        }
        return (dq, dk, dv, dsinks)
    }

    /// Useful FLOPs of the causal (or full) attention forward: QK^T and PV over the visible keys only.
    public static func attentionForwardFLOPs(b: Int, t: Int, s: Int, hq: Int, dh: Int, causal: Bool) -> Double {
        var keys = 0
        for i in 0..<t { keys += visibleKeys(i, t: t, s: s, causal: causal) }
        return Double(b * hq) * Double(keys) * Double(dh) * 4
    }
}
