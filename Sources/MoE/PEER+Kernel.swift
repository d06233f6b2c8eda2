import Foundation

/// The experts each head retrieved: for token t, head h and slot a (a < K, best first), the expert
/// i·n + j and its sub-keys i (first half) and j (second half). Flattened [N, H, K].
public struct PEERPicks: Sendable, Equatable {
    public var experts: [Int]
    public var first: [Int]
    public var second: [Int]
}

/// PEER's retrieval and expert computation: the fused primitives with their own backward, each with a
/// composed reference that the tests pin it to. Legend as in `PEER.swift`; S = N·H·K retrieved slots.
public enum PEERKernel {
    // MARK: Retrieval

    /// Product-key top-k (Lample et al. 2019, as PEER uses it): per token and head, score each half of the query
    /// against its n sub-keys, keep the top K of each half, and take the top K of the K² sums. The top K of
    /// all n² sums is always among those K² (a pair outside them has a half outside its half's top K, so K
    /// better pairs exist), so this is exact. Ties go to the lower index. No gradient flows through the choice.
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public static func retrieve<T>(_ q: Tensor<T>, keys: Tensor<T>, heads h: Int, subKeys n: Int, k: Int) -> PEERPicks {
        let tokens = q.shape[0], d = keys.shape[1], w = q.shape[1]
        Shape.require(w == h * 2 * d && keys.shape[0] == h * 2 * n, "peer.retrieve",
                      "queries \(Shape.describe(q.shape)) and keys \(Shape.describe(keys.shape)) do not fit \(h) heads of \(n) sub-keys")
        var picks = PEERPicks(experts: [Int](repeating: 0, count: tokens * h * k), first: [Int](repeating: 0, count: tokens * h * k), second: [Int](repeating: 0, count: tokens * h * k))
        guard tokens > 0 else { return picks }
        var scores = [T](repeating: 0, count: 2 * tokens * n)  // one head's [2, N, n]
        q.withUnsafePointer { pq in
            keys.withUnsafePointer { pk in
                for head in 0..<h {
                    scores.withUnsafeMutableBufferPointer { s in
                        for half in 0..<2 {
                            let slot = head * 2 + half
                            T.gemm(transA: false, transB: true, m: tokens, n: n, k: d, alpha: 1, a: pq + slot * d, lda: w,
                                   b: pk + slot * n * d, ldb: d, beta: 0, c: s.baseAddress! + half * tokens * n, ldc: n)
                        }
                    }
                    scores.withUnsafeBufferPointer { sb in
                    picks.experts.withUnsafeMutableBufferPointer { pe in
                    picks.first.withUnsafeMutableBufferPointer { p1 in
                    picks.second.withUnsafeMutableBufferPointer { p2 in
                    let sp = sb.baseAddress!
                    Parallel.forRange(tokens, grain: 64) { range in
                        var v1 = [T](repeating: 0, count: k), i1 = [Int](repeating: 0, count: k)
                        var v2 = [T](repeating: 0, count: k), i2 = [Int](repeating: 0, count: k)
                        var cv = [T](repeating: 0, count: k), ci = [Int](repeating: 0, count: k)
                        for t in range {
                            topK(sp + t * n, n, k, &v1, &i1)
                            topK(sp + (tokens + t) * n, n, k, &v2, &i2)
                            // Top K of the K² sums, by (score, then lower expert id).
                            var filled = 0
                            for a in 0..<k {
                                for b in 0..<k {
                                    let s = v1[a] + v2[b], e = i1[a] * n + i2[b]
                                    insert(s, e, &cv, &ci, &filled, k)
                                }
                            }
                            let base = (t * h + head) * k
                            for a in 0..<k {
                                pe[base + a] = ci[a]
                                p1[base + a] = ci[a] / n
                                p2[base + a] = ci[a] % n
                            }
                        }
                    }
                    }
                    }
                    }
                    }
                }
            }
        }
        return picks
    }

    /// The K largest of `count` values at `p`, best first (ties: lower index first).
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    @inline(__always)
    static func topK<T: TensorScalar>(_ p: UnsafePointer<T>, _ count: Int, _ k: Int, _ values: inout [T], _ index: inout [Int]) {
        var filled = 0
        for i in 0..<count { insert(p[i], i, &values, &index, &filled, k) }
    }

    /// Inserts (v, i) into the sorted best-first list of at most `k`, if it belongs there.
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    @inline(__always)
    static func insert<T: TensorScalar>(_ v: T, _ i: Int, _ values: inout [T], _ index: inout [Int], _ filled: inout Int, _ k: Int) {
        func better(_ v: T, _ i: Int, than pos: Int) -> Bool { v > values[pos] || (v == values[pos] && i < index[pos]) }
        if filled == k && !better(v, i, than: k - 1) { return }
        var pos = filled == k ? k - 1 : filled
        if filled < k { filled += 1 }
        while pos > 0 && better(v, i, than: pos - 1) {
            values[pos] = values[pos - 1]
            index[pos] = index[pos - 1]
            pos -= 1
        }
        values[pos] = v
        index[pos] = i
    }

    /// The same choice by brute force over all n² experts: the reference `retrieve` is tested against.
    public static func referenceRetrieve<T>(_ q: Tensor<T>, keys: Tensor<T>, heads h: Int, subKeys n: Int, k: Int) -> [Int] {
        let tokens = q.shape[0], d = keys.shape[1]
        let qa = q.scalars, ka = keys.scalars
        var out: [Int] = []
        for t in 0..<tokens {
            for head in 0..<h {
                func half(_ p: Int) -> [T] {
                    (0..<n).map { i in (0..<d).reduce(T(0)) { $0 + qa[t * h * 2 * d + (head * 2 + p) * d + $1] * ka[((head * 2 + p) * n + i) * d + $1] } }
                }
                let s1 = half(0), s2 = half(1)
                var all = (0..<(n * n)).map { (s1[$0 / n] + s2[$0 % n], $0) }
                all.sort { $0.0 > $1.0 || ($0.0 == $1.0 && $0.1 < $1.1) }
                out += all.prefix(k).map(\.1)
            }
        }
        return out
    }

    // MARK: Scores

    /// The retrieved experts' scores [N·H, K]: s = q_{h,1}·key_{h,1,i} + q_{h,2}·key_{h,2,j}, differentiable in
    /// the queries and the keys.
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public static func scores<T>(_ q: Variable<T>, _ keys: Variable<T>, picks: PEERPicks, heads h: Int, subKeys n: Int, k: Int) -> Variable<T> {
        let tokens = q.shape[0], d = keys.shape[1], w = q.shape[1]
        var out = Tensor<T>(uninitializedShape: [tokens * h, k])
        let qv = q.value, kv = keys.value
        qv.withUnsafePointer { pq in
            kv.withUnsafePointer { pk in
                out.withUnsafeMutablePointer { po in
                    for slot in 0..<(tokens * h * k) {
                        let t = slot / (h * k), head = (slot / k) % h
                        let q1 = pq + t * w + head * 2 * d, q2 = q1 + d
                        let k1 = pk + ((head * 2) * n + picks.first[slot]) * d, k2 = pk + ((head * 2 + 1) * n + picks.second[slot]) * d
                        var s = T(0)
                        for c in 0..<d { s += q1[c] * k1[c] + q2[c] * k2[c] }
                        po[slot] = s
                    }
                }
            }
        }
        return Variable.primitive(out, inputs: [q, keys]) {
            { g in
                var dq = Tensor<T>.zeros(qv.shape), dk = Tensor<T>.zeros(kv.shape)
                g.withUnsafePointer { pg in
                    qv.withUnsafePointer { pq in
                        kv.withUnsafePointer { pk in
                            dq.withUnsafeMutablePointer { dqp in
                                dk.withUnsafeMutablePointer { dkp in
                                    for slot in 0..<(tokens * h * k) {
                                        let t = slot / (h * k), head = (slot / k) % h, gs = pg[slot]
                                        let qo = t * w + head * 2 * d
                                        let r1 = ((head * 2) * n + picks.first[slot]) * d, r2 = ((head * 2 + 1) * n + picks.second[slot]) * d
                                        for c in 0..<d {
                                            dqp[qo + c] += gs * pk[r1 + c]
                                            dqp[qo + d + c] += gs * pk[r2 + c]
                                            dkp[r1 + c] += gs * pq[qo + c]
                                            dkp[r2 + c] += gs * pq[qo + d + c]
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                return [dq, dk]
            }
        }
    }

    /// `scores` composed from gathers, products and sums (the reference).
    public static func referenceScores<T>(_ q: Variable<T>, _ keys: Variable<T>, picks: PEERPicks, heads h: Int, subKeys n: Int, k: Int) -> Variable<T> {
        let tokens = q.shape[0], d = keys.shape[1]
        let rows = q.reshaped([tokens * h * 2, d])  // row (t·H + h)·2 + half
        let slots = tokens * h * k
        let q1 = (0..<slots).map { ($0 / k) * 2 }, q2 = q1.map { $0 + 1 }
        let k1 = (0..<slots).map { ((($0 / k) % h) * 2) * n + picks.first[$0] }
        let k2 = (0..<slots).map { ((($0 / k) % h) * 2 + 1) * n + picks.second[$0] }
        let s = (rows.indexSelect(q1) * keys.indexSelect(k1)).sum(axis: 1) + (rows.indexSelect(q2) * keys.indexSelect(k2)).sum(axis: 1)
        return s.reshaped([tokens * h, k])
    }

    // MARK: Experts

    @_specialize(where T == Float)
    @_specialize(where T == Double)
    @inline(__always)
    static func act<T: TensorScalar>(_ f: ExpertActivation, _ z: T) -> T {
        switch f {
        case .relu: return Pointwise.Relu.apply(z)
        case .geluTanh: return Pointwise.GeluTanh.apply(z)
        case .silu: return Pointwise.Silu.apply(z)
        default: return Pointwise.Gelu.apply(z)
        }
    }

    @_specialize(where T == Float)
    @_specialize(where T == Double)
    @inline(__always)
    static func actGrad<T: TensorScalar>(_ f: ExpertActivation, _ z: T) -> T {
        switch f {
        case .relu: return Pointwise.ReluGrad.apply(1, z)
        case .geluTanh: return Pointwise.GeluTanhGrad.apply(1, z)
        case .silu: return Pointwise.SiluGrad.apply(1, z)
        default: return Pointwise.GeluGrad.apply(1, z)
        }
    }

    static func unary(_ f: ExpertActivation) -> UnaryOp {
        switch f {
        case .relu: return .relu
        case .geluTanh: return .geluTanh
        case .silu: return .silu
        default: return .gelu
        }
    }

    /// y_t = Σ over the token's S/N slots of g · σ(u_eᵀ x_t) · v_e: x [N, D], down (u) and up (v) [E, D],
    /// gates [N, H·K], `experts` [N·H·K]. Only the retrieved rows are read. Backward: dx and dg per token in
    /// parallel; du and dv scatter-add the retrieved rows, each core owning a slice of the D columns so no
    /// two cores write the same element.
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public static func experts<T>(_ x: Variable<T>, _ down: Variable<T>, _ up: Variable<T>, gates: Variable<T>, experts idx: [Int], activation f: ExpertActivation) -> Variable<T> {
        let tokens = x.shape[0], dim = x.shape[1], per = gates.shape[1]
        Shape.require(idx.count == tokens * per && down.shape == up.shape && down.shape[1] == dim, "peer.experts",
                      "\(idx.count) experts for \(tokens) tokens x \(per) slots; tables \(Shape.describe(down.shape)), \(Shape.describe(up.shape)) for D \(dim)")
        let xv = x.value, uv = down.value, vv = up.value, gv = gates.value
        var z = [T](repeating: 0, count: idx.count)
        var y = Tensor<T>.zeros([tokens, dim])
        xv.withUnsafePointer { px in
            uv.withUnsafePointer { pu in
                vv.withUnsafePointer { pv in
                    gv.withUnsafePointer { pg in
                        y.withUnsafeMutablePointer { py in
                            z.withUnsafeMutableBufferPointer { pz in
                                let pz = pz.baseAddress!
                                Parallel.forRange(tokens, grain: 16) { range in
                                    for t in range {
                                        let xt = px + t * dim, yt = py + t * dim
                                        for s in (t * per)..<((t + 1) * per) {
                                            let u = pu + idx[s] * dim, v = pv + idx[s] * dim
                                            var dot = T(0)
                                            for c in 0..<dim { dot += u[c] * xt[c] }
                                            pz[s] = dot
                                            let coef = pg[s] * act(f, dot)
                                            for c in 0..<dim { yt[c] += coef * v[c] }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        return Variable.primitive(y, inputs: [x, down, up, gates]) {
            { dy in
                var dx = Tensor<T>.zeros(xv.shape), dg = Tensor<T>.zeros(gv.shape)
                var du = Tensor<T>.zeros(uv.shape), dv = Tensor<T>.zeros(vv.shape)
                var dz = [T](repeating: 0, count: idx.count), coef = [T](repeating: 0, count: idx.count)
                dy.withUnsafePointer { pdy in
                    xv.withUnsafePointer { px in
                        uv.withUnsafePointer { pu in
                            vv.withUnsafePointer { pv in
                                gv.withUnsafePointer { pg in
                                    dx.withUnsafeMutablePointer { pdx in
                                        dg.withUnsafeMutablePointer { pdg in
                                            du.withUnsafeMutablePointer { pdu in
                                                dv.withUnsafeMutablePointer { pdv in
                                                    dz.withUnsafeMutableBufferPointer { pdz in
                                                        coef.withUnsafeMutableBufferPointer { pc in
                                                            let pdz = pdz.baseAddress!, pc = pc.baseAddress!
                                                            // Per token: dc = v·dy, dg = σ(z) dc, dz = g σ'(z) dc, dx += dz u.
                                                            Parallel.forRange(tokens, grain: 16) { range in
                                                                for t in range {
                                                                    let dyt = pdy + t * dim, dxt = pdx + t * dim
                                                                    for s in (t * per)..<((t + 1) * per) {
                                                                        let u = pu + idx[s] * dim, v = pv + idx[s] * dim
                                                                        var dc = T(0)
                                                                        for c in 0..<dim { dc += v[c] * dyt[c] }
                                                                        let a = act(f, z[s])
                                                                        pdg[s] = a * dc
                                                                        pc[s] = pg[s] * a
                                                                        let d = pg[s] * actGrad(f, z[s]) * dc
                                                                        pdz[s] = d
                                                                        for c in 0..<dim { dxt[c] += d * u[c] }
                                                                    }
                                                                }
                                                            }
                                                            // du_e += dz x_t, dv_e += g σ(z) dy_t: cores split the columns.
                                                            Parallel.forRange(dim, grain: 8) { cols in
                                                                for s in 0..<idx.count {
                                                                    let t = s / per, e = idx[s] * dim
                                                                    let a = pdz[s], b = pc[s]
                                                                    for c in cols {
                                                                        pdu[e + c] += a * px[t * dim + c]
                                                                        pdv[e + c] += b * pdy[t * dim + c]
                                                                    }
                                                                }
                                                            }
                                                        }
                                                    }
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                return [dx, du, dv, dg]
            }
        }
    }

    /// `experts` composed from gathers, products, the activation and sums (the reference).
    public static func referenceExperts<T>(_ x: Variable<T>, _ down: Variable<T>, _ up: Variable<T>, gates: Variable<T>, experts idx: [Int], activation f: ExpertActivation) -> Variable<T> {
        let tokens = x.shape[0], dim = x.shape[1], per = gates.shape[1], slots = idx.count
        let xs = x.indexSelect((0..<slots).map { $0 / per })  // [S, D]
        let z = (down.indexSelect(idx) * xs).sum(axis: 1)  // [S]
        let c = z.apply(unary(f)) * gates.reshaped([slots])
        return (up.indexSelect(idx) * c.reshaped([slots, 1])).reshaped([tokens, per, dim]).sum(axis: 1)
    }
}
