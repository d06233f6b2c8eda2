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
/// triangle is never computed. The probabilities [B, Hq, T, S] are kept for the backward; in each row block
/// only the columns up to the block's last visible key are written (the rest is never read).
public struct AttentionSaved<T: TensorScalar>: Sendable {
    public let probs: Tensor<T>
    public let out: Tensor<T>
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

    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public static func attention(
        q: Tensor, k: Tensor, v: Tensor, causal: Bool, scale: T, window: Int? = nil
    ) -> AttentionSaved<T> {
        let (nb, t, s, hq, hkv, dh) = attentionDims(q, k, v)
        Shape.require(!causal || s >= t, "attention", "causal attention needs at least as many keys (\(s)) as queries (\(t))")
        Shape.require(window.map { $0 >= 1 && causal } ?? true, "attention", "a sliding window needs causal attention and at least one key")
        let out = Tensor(uninitializedShape: q.shape)
        let probs = Tensor(uninitializedShape: [nb, hq, t, s])
        let po = out.storage.base, pp = probs.storage.base
        let group = hq / hkv, ldq = hq * dh, ldk = hkv * dh
        let block = attentionBlock
        q.withUnsafePointer { pq in
            k.withUnsafePointer { pk in
                v.withUnsafePointer { pv in
                    BLAS.singleThreaded {
                        Parallel.forEach(nb * hq) { pair in
                            let b = pair / hq, h = pair % hq, g = h / group
                            let Q = pq + b * t * ldq + h * dh
                            let K = pk + b * s * ldk + g * dh
                            let V = pv + b * s * ldk + g * dh
                            let O = po + b * t * ldq + h * dh
                            let P = pp + pair * t * s
                            for r0 in stride(from: 0, to: t, by: block) {
                                let r1 = Swift.min(t, r0 + block)
                                let kmax = visibleKeys(r1 - 1, t: t, s: s, causal: causal)
                                T.gemm(
                                    transA: false, transB: true, m: r1 - r0, n: kmax, k: dh, alpha: scale,
                                    a: Q + r0 * ldq, lda: ldq, b: K, ldb: ldk, beta: 0, c: P + r0 * s, ldc: s)
                                for i in r0..<r1 {
                                    let row = P + i * s
                                    let lim = visibleKeys(i, t: t, s: s, causal: causal)
                                    let lo = window.map { Swift.max(0, i + (s - t) - $0 + 1) } ?? 0
                                    let m = VectorMath.max(row + lo, lim - lo)
                                    let inv = 1 / VectorMath.expShifted(row + lo, row + lo, lim - lo, shift: m)
                                    for j in 0..<lo { row[j] = 0 }
                                    for j in lo..<lim { row[j] *= inv }
                                    // Past the block's last visible key nothing reads the row (the PV product
                                    // and the backward stop at kmax), so only the block's masked corner is zeroed.
                                    for j in lim..<kmax { row[j] = 0 }
                                }
                                T.gemm(
                                    transA: false, transB: false, m: r1 - r0, n: dh, k: kmax, alpha: 1,
                                    a: P + r0 * s, lda: s, b: V, ldb: ldk, beta: 0, c: O + r0 * ldq, ldc: ldq)
                            }
                        }
                    }
                }
            }
        }
        return AttentionSaved(probs: probs, out: out)
    }

    /// Gradients of attention with respect to q, k and v, given the saved probabilities and output.
    ///
    /// Per head: dP = dO V^T; dS = P * (dP - rowdot(dO, O)); dQ = scale dS K; dK += scale dS^T Q; dV += P^T dO.
    /// Heads run in parallel; each writes its own dK/dV slab, summed over the group at the end.
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public static func attentionBackward(
        q: Tensor, k: Tensor, v: Tensor, saved: AttentionSaved<T>, upstream dOut: Tensor, causal: Bool, scale: T
    ) -> (dq: Tensor, dk: Tensor, dv: Tensor) {
        let (nb, t, s, hq, hkv, dh) = attentionDims(q, k, v)
        Shape.require(dOut.shape == q.shape, "attention.vjp", "upstream \(Shape.describe(dOut.shape)) should be \(Shape.describe(q.shape))")
        let dq = Tensor(uninitializedShape: q.shape)
        let dkh = Tensor.zeros([nb, hq, s, dh]), dvh = Tensor.zeros([nb, hq, s, dh])
        let group = hq / hkv, ldq = hq * dh, ldk = hkv * dh
        let block = attentionBlock
        let pdq = dq.storage.base, pdk = dkh.storage.base, pdv = dvh.storage.base
        q.withUnsafePointer { pq in
            k.withUnsafePointer { pk in
                v.withUnsafePointer { pv in
                    saved.probs.withUnsafePointer { pp in
                        saved.out.withUnsafePointer { po in
                            dOut.withUnsafePointer { pg in
                                BLAS.singleThreaded {
                                    Parallel.forEach(nb * hq) { pair in
                                        let b = pair / hq, h = pair % hq, g = h / group
                                        let Q = pq + b * t * ldq + h * dh, dQ = pdq + b * t * ldq + h * dh
                                        let K = pk + b * s * ldk + g * dh
                                        let V = pv + b * s * ldk + g * dh
                                        let O = po + b * t * ldq + h * dh, dO = pg + b * t * ldq + h * dh
                                        let P = pp + pair * t * s
                                        let dK = pdk + pair * s * dh, dV = pdv + pair * s * dh
                                        let dS = UnsafeMutablePointer<T>.allocate(capacity: block * s)
                                        defer { dS.deallocate() }
                                        for r0 in stride(from: 0, to: t, by: block) {
                                            let r1 = Swift.min(t, r0 + block), m = r1 - r0
                                            let kmax = visibleKeys(r1 - 1, t: t, s: s, causal: causal)
                                            T.gemm(
                                                transA: false, transB: true, m: m, n: kmax, k: dh, alpha: 1,
                                                a: dO + r0 * ldq, lda: ldq, b: V, ldb: ldk, beta: 0, c: dS, ldc: s)
                                            for i in r0..<r1 {
                                                let dot = VectorMath.dot(O + i * ldq, dO + i * ldq, dh)
                                                let prow = P + i * s, srow = dS + (i - r0) * s
                                                for j in 0..<kmax { srow[j] = prow[j] * (srow[j] - dot) }
                                            }
                                            T.gemm(
                                                transA: false, transB: false, m: m, n: dh, k: kmax, alpha: scale,
                                                a: dS, lda: s, b: K, ldb: ldk, beta: 0, c: dQ + r0 * ldq, ldc: ldq)
                                            T.gemm(
                                                transA: true, transB: false, m: kmax, n: dh, k: m, alpha: scale,
                                                a: dS, lda: s, b: Q + r0 * ldq, ldb: ldq, beta: 1, c: dK, ldc: dh)
                                            T.gemm(
                                                transA: true, transB: false, m: kmax, n: dh, k: m, alpha: 1,
                                                a: P + r0 * s, lda: s, b: dO + r0 * ldq, ldb: ldq, beta: 1, c: dV, ldc: dh)
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        // [B, Hq, S, Dh] -> [B, Hkv, group, S, Dh] -> sum over group -> [B, Hkv, S, Dh] -> [B, S, Hkv, Dh]
        let dk = dkh.reshaped([nb, hkv, group, s, dh]).sum(axis: 2).permuted([0, 2, 1, 3])
        let dv = dvh.reshaped([nb, hkv, group, s, dh]).sum(axis: 2).permuted([0, 2, 1, 3])
        return (dq, dk, dv)
    }

    /// Useful FLOPs of the causal (or full) attention forward: QK^T and PV over the visible keys only.
    public static func attentionForwardFLOPs(b: Int, t: Int, s: Int, hq: Int, dh: Int, causal: Bool) -> Double {
        var keys = 0
        for i in 0..<t { keys += visibleKeys(i, t: t, s: s, causal: causal) }
        return Double(b * hq) * Double(keys) * Double(dh) * 4
    }
}
