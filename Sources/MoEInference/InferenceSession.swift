import Foundation
import MoE
import MoEAutograd
import MoEModels
import MoENN
import MoETensor

#if !canImport(Accelerate)
import CMoEBLAS
#endif

/// One sequence being run by an `InferenceModel`: its KV cache and the scratch that decode reuses token after
/// token. `forward` runs a prompt (prefill: tokens grouped by expert, one product per expert block) or one
/// token (decode: matrix-vector products over the selected experts only, each phase one parallel pass).
///
/// Legend: T tokens of this call, S positions in the cache, D model dim, H/KV heads, Dh head dim, F expert width.
public final class InferenceSession {
    public let model: InferenceModel
    /// Positions held in the cache.
    public private(set) var length = 0
    public let capacity: Int
    /// Per layer [capacity, KV Dh]: f32 caches, or (`kvCache == .f16`) the raw halves of f16 ones.
    var keys: [Tensor<Float>] = []
    var values: [Tensor<Float>] = []
    var keys16: [AlignedBuffer] = []
    var values16: [AlignedBuffer] = []
    /// Quantized forms of decode's inputs: [0] the layer input, [1...] one per selected expert.
    let buffers: [ActivationBuffer]
    /// gpt-oss's clamped SwiGLU (alpha, limit); nil for plain SwiGLU.
    let clamp: (alpha: Float, limit: Float)?

    /// How a prompt multiplies weights that are not stored as f32 (f32 weights always go to sgemm; decode is
    /// unaffected):
    /// - f32: widened to f32 a block of rows at a time, for sgemm (exact);
    /// - bf16: rounded to BF16 (used in place when stored so) for oneDNN's BF16 product (activations rounded to
    ///   BF16, f32 accumulation; where the CPU has AVX512_BF16 and libdnnl.so.2 is installed);
    /// - int8: q4x8 and q8 weights as stored, against the prompt's rows quantized per block as decode quantizes
    ///   them, in integer products (moe_gemm_q4x8, moe_gemm_q8: AVX-512 VNNI); other formats as with f32.
    public enum PrefillArithmetic: String, Sendable {
        case f32, bf16, int8
        /// MOE_PREFILL when set (f32, bf16, int8); else BF16 where oneDNN and the CPU allow it and it beats sgemm
        /// (AMD: on Intel without AMX it does not); else int8 where the CPU has AVX-512 VNNI; else f32.
        public static var automatic: PrefillArithmetic {
            switch ProcessInfo.processInfo.environment["MOE_PREFILL"] {
            case "f32": return .f32
            case "bf16": return moe_bf16_gemm_available() != 0 ? .bf16 : .f32
            case "int8": return moe_gemm_int8_fast() != 0 ? .int8 : .f32
            default:
                if moe_bf16_gemm_preferred() != 0 { return .bf16 }
                return moe_gemm_int8_fast() != 0 ? .int8 : .f32
            }
        }

        /// Whether a prompt's products on weights stored as `format` run in this arithmetic; the others run on
        /// sgemm, widened a block of rows at a time where they are not f32.
        public func covers(_ format: WeightMatrix.Format) -> Bool {
            switch self {
            case .f32: return false
            case .bf16: return format != .f32
            case .int8: return format == .q4x8 || format == .q8
            }
        }
    }

    public let prefill: PrefillArithmetic

    /// How the KV cache stores keys and values: f32 (exact), or f16 as llama.cpp does by default (half the bytes
    /// a deep decode step reads; keys and values are rounded to f16 when written, and attention runs in f32 on
    /// the widened values).
    public enum KVCache: String, Sendable, CaseIterable {
        case f32, f16
    }

    public let kvCache: KVCache

    public init(model: InferenceModel, capacity: Int, prefill: PrefillArithmetic = .automatic, kvCache: KVCache = .f32) {
        self.model = model
        self.capacity = capacity
        self.prefill = prefill == .bf16 && moe_bf16_gemm_available() == 0 ? .f32 : prefill
        self.kvCache = kvCache
        let c = model.config
        let width = c.numKVHeads * c.headDim
        switch kvCache {
        case .f32:
            keys = (0..<c.numLayers).map { _ in Tensor<Float>(uninitializedShape: [capacity, width]) }
            values = keys.map { _ in Tensor<Float>(uninitializedShape: [capacity, width]) }
        case .f16:
            keys16 = (0..<c.numLayers).map { _ in AlignedBuffer(bytes: 2 * capacity * width) }
            values16 = (0..<c.numLayers).map { _ in AlignedBuffer(bytes: 2 * capacity * width) }
        }
        let widest = Swift.max(c.hiddenSize, c.numHeads * c.headDim, c.intermediateSize, c.moe?.expertHiddenSize ?? 0, c.moe?.sharedExpertHiddenSize ?? 0)
        buffers = (0..<((c.moe?.expertsPerToken ?? 1) + 2)).map { _ in ActivationBuffer(capacity: widest) }
        clamp = c.moe.flatMap { $0.expertActivation == .clampedSwiglu ? (Float($0.swigluAlpha), Float($0.swigluLimit)) : nil }
    }

    public func reset() { length = 0 }

    /// Positions of the cache whose pages are in memory. The cache is allocated, not touched, so that a session's
    /// memory follows its length; decode then writes one position a token, and each new page faults on its first
    /// write (M1's f16 cache: a new page every 4 tokens in each of 16 buffers). Timed per section in `moe
    /// generate`, a token's writes to the cache took about 13 us, or about 100 when they faulted. So the pages
    /// are populated ahead, 64 KB or more of each buffer with one madvise each. Token time without this over
    /// with it, alternating runs on the Intel Xeon model 207: q4 1.11 (0.97-1.48; faster with it in 9 of 10
    /// pairs), f32 1.01 (0.85-1.04; 4 of 8), q8 1.01 (0.77-1.28; 5 of 8).
    var populated = 0

    func populateCache(through end: Int) {
        guard end > populated else { return }
        let c = model.config
        let perPosition = (kvCache == .f16 ? 2 : 4) * c.numKVHeads * c.headDim
        let upTo = Swift.min(capacity, Swift.max(end, populated + Swift.max(1, (64 << 10) / Swift.max(perPosition, 1))))
        let from = populated * perPosition, count = (upTo - populated) * perPosition
        var bases: [UnsafeMutableRawPointer] = keys16.map(\.pointer) + values16.map(\.pointer)
        for t in keys + values { bases.append(UnsafeMutableRawPointer(t.storage.base)) }
        for base in bases { Pages.populate(base + from, count) }
        populated = upTo
    }

    /// For analyses (`moe analyze`): called at each MoE layer with the layer's index, its input (the normed hidden
    /// state [T, D]) and the router's decision, before the experts run.
    public var moeObserver: ((Int, Tensor<Float>, Routing<Float>) -> Void)?
    /// Routers that replace the model's in the given layers (analyses: experts removed, another top-k).
    public var routerOverrides: [Int: Router<Float>] = [:]

    /// Runs `ids` at positions `length ..< length + T` and appends them to the cache. Returns logits [T, V] with
    /// `allLogits`, else [1, V] for the last position.
    public func forward(_ ids: [Int], allLogits: Bool = false) -> Tensor<Float> {
        // A long prompt runs in chunks of `prefillChunk` tokens: the same result (each chunk attends to the cache
        // and itself), with a bounded amount of activations and attention scores alive at once.
        guard ids.count > prefillChunk else { return forwardChunk(ids, allLogits: allLogits) }
        var parts: [Tensor<Float>] = []
        for start in stride(from: 0, to: ids.count, by: prefillChunk) {
            let chunk = Array(ids[start..<Swift.min(ids.count, start + prefillChunk)])
            let last = start + chunk.count == ids.count
            let logits = forwardChunk(chunk, allLogits: allLogits)
            if allLogits { parts.append(logits) } else if last { return logits }
        }
        return Tensor.concat(parts, axis: 0)
    }

    /// Tokens per prefill pass: 512 (each expert's block twice as tall as at 256: f32 prefill on M1 313-332 -> 337-383
    /// tok/s in alternating runs, and weights stored in other formats converted once per 512 tokens instead of
    /// twice), but 256 for bf16 weights, which are used in place and where the larger chunk's 60-90 MB would take
    /// M1's peak memory past 1.15 x the weights.
    var prefillChunk: Int { model.expertFormat == .bf16 ? 256 : 512 }

    func forwardChunk(_ ids: [Int], allLogits: Bool) -> Tensor<Float> {
        let c = model.config
        let t = ids.count, d = c.hiddenSize, start = length
        Shape.require(t > 0, "inference", "no tokens to run")
        Shape.require(start + t <= capacity, "inference", "\(start + t) positions exceed the session's capacity of \(capacity)")
        for id in ids { Shape.require(id >= 0 && id < c.vocabSize, "inference", "token id \(id) outside the vocabulary of \(c.vocabSize)") }
        populateCache(through: start + t)
        var x = Tensor<Float>(uninitializedShape: [t, d])
        x.withUnsafeMutablePointer { px in
            for (i, id) in ids.enumerated() { model.embed.widen(rows: id..<(id + 1), into: px + i * d) }
        }
        let positions = Array(start..<(start + t))
        for (i, layer) in model.layers.enumerated() {
            let a = attention(layer, index: i, Tensor.rmsNorm(x, weight: layer.inputNorm, eps: Float(c.rmsNormEps)).y, positions: positions)
            x = x + a
            let h = Tensor.rmsNorm(x, weight: layer.postNorm, eps: Float(c.rmsNormEps)).y
            let f: Tensor<Float>
            switch (layer.router, layer.dense) {
            case (let router?, _): f = moe(layer, index: i, router: routerOverrides[i] ?? router, h)
            case (nil, let dense?): f = mlp(dense, h)
            case (nil, nil): preconditionFailure("[inference] layer \(i) has neither a router nor a dense MLP")
            }
            x = x + f
        }
        length += t
        let last = allLogits || t == 1 ? x : x.rows((t - 1)..<t)
        let normed = Tensor.rmsNorm(last, weight: model.finalNorm, eps: Float(c.rmsNormEps)).y
        return project(model.head, normed)
    }

    // MARK: products

    /// x [T, cols] -> x W^T [T, rows]. One token: a parallel matrix-vector pass over the stored weights.
    /// More: f32 weights go straight to sgemm; other formats are widened a block of rows at a time (4 MB) into
    /// f32 scratch for sgemm, so a prompt runs at the BLAS's rate whatever the storage.
    func project(_ w: WeightMatrix, _ x: Tensor<Float>) -> Tensor<Float> {
        let t = x.shape[0]
        Shape.require(x.shape == [t, w.cols], "inference", "input \(Shape.describe(x.shape)) for weights [\(w.rows), \(w.cols)]")
        let y = Tensor<Float>(uninitializedShape: [t, w.rows])
        let py = y.storage.base
        x.withUnsafePointer { px in
            if t == 1 {
                MatVec.run([MatVec.Job(w: w, x: buffers[0].activation(px, count: w.cols, for: w.format), y: py)])
            } else if w.format == .f32 {
                Float.gemm(transA: false, transB: true, m: t, n: w.rows, k: w.cols, alpha: 1, a: px, lda: w.cols,
                           b: w.base.assumingMemoryBound(to: Float.self), ldb: w.cols, beta: 0, c: py, ldc: w.rows)
            } else if prefill.covers(w.format) {
                if prefill == .bf16 { projectBF16(w, px, t: t, into: py) } else { projectInt8(w, px, t: t, into: py) }
            } else {
                let block = Swift.min(w.rows, Swift.max(64, (1 << 20) / Swift.max(w.cols, 1)))
                let scratch = Tensor<Float>(uninitializedShape: [block, w.cols])
                let ps = scratch.storage.base
                for r0 in stride(from: 0, to: w.rows, by: block) {
                    let r1 = Swift.min(w.rows, r0 + block)
                    Parallel.forRange(r1 - r0, grain: 16) { r in
                        w.widen(rows: (r0 + r.lowerBound)..<(r0 + r.upperBound), into: ps + r.lowerBound * w.cols)
                    }
                    Float.gemm(transA: false, transB: true, m: t, n: r1 - r0, k: w.cols, alpha: 1, a: px, lda: w.cols,
                               b: ps, ldb: w.cols, beta: 0, c: py + r0, ldc: w.rows)
                }
            }
        }
        return y
    }

    /// x [t, cols] W^T on q4x8 or q8 weights in integer products: x's rows quantized per block (64, 32) as decode
    /// quantizes a token, then W's rows in blocks of 16 handed to the cores, each block multiplied by every row of x.
    func projectInt8(_ w: WeightMatrix, _ px: UnsafePointer<Float>, t: Int, into py: UnsafeMutablePointer<Float>) {
        let cols = w.cols, block = w.format == .q8 ? 32 : 64, blocksPerRow = cols / block
        let xq = UnsafeMutablePointer<Int8>.allocate(capacity: t * cols)
        let xd = UnsafeMutablePointer<Float>.allocate(capacity: t * blocksPerRow)
        let xs = UnsafeMutablePointer<Float>.allocate(capacity: t * blocksPerRow)
        defer { xq.deallocate(); xd.deallocate(); xs.deallocate() }
        Parallel.forRange(t, grain: 16) { r in
            for i in r {
                moe_quantize_activation(px + i * cols, xq + i * cols, xd + i * blocksPerRow, xs + i * blocksPerRow, cols, block)
            }
        }
        // Pieces of whole 16-row blocks, about four a core so a slow core's share can move.
        let rowBlocks = (w.rows + 15) / 16
        let pieces = Swift.min(rowBlocks, 4 * Parallel.cores)
        let codes = w.base.assumingMemoryBound(to: UInt8.self)
        Parallel.forEachDynamic(pieces) { p in
            let b0 = rowBlocks * p / pieces, b1 = rowBlocks * (p + 1) / pieces
            if w.format == .q8 {
                moe_gemm_q8(codes, w.rows, cols, 16 * b0, 16 * (b1 - b0), xq, xd, t, py + 16 * b0, w.rows)
            } else {
                moe_gemm_q4x8(codes, w.rows, cols, 16 * b0, 16 * (b1 - b0), xq, xd, xs, t, py + 16 * b0, w.rows)
            }
        }
    }

    /// x [t, cols] W^T in BF16 through oneDNN: x rounded to BF16 once; W's rows in blocks handed to the cores, each
    /// block used in place when stored as BF16, else rounded to BF16 in scratch a row at a time; one single-threaded
    /// oneDNN product per block. A block oneDNN refuses falls back to sgemm.
    func projectBF16(_ w: WeightMatrix, _ px: UnsafePointer<Float>, t: Int, into py: UnsafeMutablePointer<Float>) {
        let cols = w.cols
        let xb = UnsafeMutablePointer<UInt16>.allocate(capacity: t * cols)
        defer { xb.deallocate() }
        moe_narrow_bf16(px, xb, t * cols)
        let per = Swift.min((w.rows + 2 * Parallel.cores - 1) / (2 * Parallel.cores), Swift.max(16, (1 << 20) / Swift.max(cols, 1)))
        let block = Swift.max(16, (per + 15) / 16 * 16)
        let blocks = (w.rows + block - 1) / block
        Parallel.forEachDynamic(blocks) { b in
            let r0 = b * block, n = Swift.min(w.rows, r0 + block) - r0
            var narrow: UnsafeMutablePointer<UInt16>? = nil
            defer { narrow?.deallocate() }
            let rows: UnsafePointer<UInt16>
            if w.format == .bf16 {
                rows = (w.base + r0 * w.rowBytes).assumingMemoryBound(to: UInt16.self)
            } else {
                let h = UnsafeMutablePointer<UInt16>.allocate(capacity: n * cols), row = UnsafeMutablePointer<Float>.allocate(capacity: cols)
                defer { row.deallocate() }
                narrow = h
                w.narrowBF16(rows: r0..<(r0 + n), into: h, row: row)
                rows = UnsafePointer(h)
            }
            if moe_bf16_gemm(t, n, cols, xb, cols, rows, cols, py + r0, w.rows) == 0 {
                let f = UnsafeMutablePointer<Float>.allocate(capacity: n * cols)
                defer { f.deallocate() }
                w.widen(rows: r0..<(r0 + n), into: f)
                Float.gemm(transA: false, transB: true, m: t, n: n, k: cols, alpha: 1, a: px, lda: cols, b: f, ldb: cols, beta: 0, c: py + r0, ldc: w.rows)
            }
        }
    }

    static func addBias(_ y: inout Tensor<Float>, _ b: [Float]?) {
        guard let b else { return }
        let n = b.count, rows = y.count / n
        y.withUnsafeMutablePointer { p in
            for r in 0..<rows { for j in 0..<n { p[r * n + j] += b[j] } }
        }
    }

    /// The SwiGLU of `f` gate/up pairs read from `h` (gate then up halves, or alternating rows when `interleaved`),
    /// after adding `bias` (in h's order): silu(g) u, or gpt-oss's clamped form.
    func activate(_ h: UnsafeMutablePointer<Float>, bias: [Float]?, interleaved: Bool, into out: UnsafeMutablePointer<Float>, _ f: Int) {
        if let bias { for j in 0..<(2 * f) { h[j] += bias[j] } }
        let (gs, us, step) = interleaved ? (0, 1, 2) : (0, f, 1)
        if let clamp {
            for j in 0..<f {
                let g = Swift.min(h[gs + step * j], clamp.limit), u = Swift.min(Swift.max(h[us + step * j], -clamp.limit), clamp.limit)
                out[j] = g / (1 + Float.fastExp(-clamp.alpha * g)) * (u + 1)
            }
        } else if !interleaved {
            moe_swiglu_f32(h, h + f, out, f)
        } else {
            for j in 0..<f {
                let g = h[gs + step * j]
                out[j] = g / (1 + Float.fastExp(-g)) * h[us + step * j]
            }
        }
    }

    // MARK: blocks

    func attention(_ l: InferenceModel.Layer, index: Int, _ h: Tensor<Float>, positions: [Int]) -> Tensor<Float> {
        let c = model.config
        let t = h.shape[0], dh = c.headDim, hq = c.numHeads, hkv = c.numKVHeads
        var q: Tensor<Float>, k: Tensor<Float>, v: Tensor<Float>
        if t == 1 {
            q = Tensor(uninitializedShape: [1, hq * dh])
            k = Tensor(uninitializedShape: [1, hkv * dh])
            v = Tensor(uninitializedShape: [1, hkv * dh])
            h.withUnsafePointer { ph in
                // One pass over q, k and v when they share a format (they do in every file moe quantize writes).
                if l.q.format == l.k.format && l.k.format == l.v.format {
                    let act = buffers[0].activation(ph, count: c.hiddenSize, for: l.q.format)
                    MatVec.run([
                        MatVec.Job(w: l.q, x: act, y: q.storage.base), MatVec.Job(w: l.k, x: act, y: k.storage.base),
                        MatVec.Job(w: l.v, x: act, y: v.storage.base),
                    ])
                } else {
                    for (w, y) in [(l.q, q.storage.base), (l.k, k.storage.base), (l.v, v.storage.base)] {
                        MatVec.run([MatVec.Job(w: w, x: buffers[0].activation(ph, count: c.hiddenSize, for: w.format), y: y)])
                    }
                }
            }
        } else {
            q = project(l.q, h)
            k = project(l.k, h)
            v = project(l.v, h)
        }
        Self.addBias(&q, l.qBias)
        Self.addBias(&k, l.kBias)
        Self.addBias(&v, l.vBias)
        let eps = Float(c.rmsNormEps)
        if let qn = l.qNorm, let kn = l.kNorm {
            if qn.count == dh {
                q = Tensor.rmsNorm(q.reshaped([t * hq, dh]), weight: qn, eps: eps).y
                k = Tensor.rmsNorm(k.reshaped([t * hkv, dh]), weight: kn, eps: eps).y
            } else {
                q = Tensor.rmsNorm(q, weight: qn, eps: eps).y
                k = Tensor.rmsNorm(k, weight: kn, eps: eps).y
            }
        }
        q = Tensor.rope(q.reshaped([1, t, hq, dh]), positions: positions, theta: c.ropeTheta, rotaryDim: c.rotaryDim, scaling: c.ropeScaling)
        k = Tensor.rope(k.reshaped([1, t, hkv, dh]), positions: positions, theta: c.ropeTheta, rotaryDim: c.rotaryDim, scaling: c.ropeScaling)
        let start = positions[0], s = start + t, width = hkv * dh
        if kvCache == .f16 {
            let pk16 = keys16[index].pointer.assumingMemoryBound(to: UInt16.self), pv16 = values16[index].pointer.assumingMemoryBound(to: UInt16.self)
            k.withUnsafePointer { moe_narrow_f16($0, pk16 + start * width, t * width) }
            v.withUnsafePointer { moe_narrow_f16($0, pv16 + start * width, t * width) }
        } else {
            k.withUnsafePointer { pk in
                keys[index].withUnsafeMutablePointer { dst in (dst + start * width).update(from: pk, count: t * width) }
            }
            v.withUnsafePointer { pv in
                values[index].withUnsafeMutablePointer { dst in (dst + start * width).update(from: pv, count: t * width) }
            }
        }
        let scale = Float(c.attentionScale ?? 1 / Double(dh).squareRoot())
        let out: Tensor<Float>
        if t == 1 {
            // One query: a loop over the cached positions per head, heads split across the cores.
            // A sliding window sees the last `window` positions: the cache from `first` on.
            out = Tensor<Float>(uninitializedShape: [1, 1, hq, dh])
            let po = out.storage.base
            let first = l.window.map { Swift.max(0, s - $0) } ?? 0, n = s - first
            let grain = n * dh >= 2048 ? Swift.max(1, hq / Parallel.cores) : hq
            q.withUnsafePointer { pq in
                Self.withPointer(l.sinks) { ps in
                    if kvCache == .f16 {
                        let pk = keys16[index].pointer.assumingMemoryBound(to: UInt16.self) + first * width
                        let pv = values16[index].pointer.assumingMemoryBound(to: UInt16.self) + first * width
                        let floats = moe_attention_decode_f16_scratch(n, dh)
                        Parallel.forRange(hq, grain: grain) { r in
                            let scratch = UnsafeMutablePointer<Float>.allocate(capacity: floats)
                            defer { scratch.deallocate() }
                            moe_attention_decode_f16(pq, pk, pv, po, n, hq, hkv, dh, scale, ps, r.lowerBound, r.upperBound, scratch)
                        }
                        return
                    }
                    keys[index].withUnsafePointer { pk in
                        values[index].withUnsafePointer { pv in
                            Parallel.forRange(hq, grain: grain) { r in
                                let scratch = UnsafeMutablePointer<Float>.allocate(capacity: n)
                                defer { scratch.deallocate() }
                                moe_attention_decode(pq, pk + first * width, pv + first * width, po, n, hq, hkv, dh, scale, ps, r.lowerBound, r.upperBound, scratch)
                            }
                        }
                    }
                }
            }
        } else {
            // The f16 cache's rows 0..<s widened (the prompt's own keys and values too, as decode will see them).
            let (ks, vs) = kvCache == .f16 ? (Self.widened(keys16[index], rows: s, width: width), Self.widened(values16[index], rows: s, width: width))
                                           : (keys[index].rows(0..<s), values[index].rows(0..<s))
            out = Tensor.attention(
                q: q, k: ks.reshaped([1, s, hkv, dh]), v: vs.reshaped([1, s, hkv, dh]),
                causal: true, scale: scale, window: l.window, sinks: l.sinks.map { Tensor(shape: [hq], $0) }
            ).out
        }
        var o = project(l.o, out.reshaped([t, hq * dh]))
        Self.addBias(&o, l.oBias)
        return o
    }

    /// `body` with the array's elements, or with nil (the C kernels' optional arrays).
    static func withPointer<R>(_ a: [Float]?, _ body: (UnsafePointer<Float>?) -> R) -> R {
        guard let a else { return body(nil) }
        return a.withUnsafeBufferPointer { body($0.baseAddress) }
    }

    /// The first `rows` rows of an f16 cache as f32 [rows, width].
    static func widened(_ cache: AlignedBuffer, rows: Int, width: Int) -> Tensor<Float> {
        let out = Tensor<Float>(uninitializedShape: [rows, width])
        moe_widen_f16(cache.pointer.assumingMemoryBound(to: UInt16.self), out.storage.base, rows * width)
        return out
    }

    /// A SwiGLU MLP over all T rows.
    func mlp(_ m: InferenceModel.MLP, _ x: Tensor<Float>) -> Tensor<Float> {
        let t = x.shape[0], f = m.width
        // [T, 2F]: each row's gate and up values, in the first products' order.
        let h = m.interleaved ? project(m.first[0], x) : Tensor.concat([project(m.first[0], x), project(m.first[1], x)], axis: 1)
        let a = Tensor<Float>(uninitializedShape: [t, f])
        let ph = h.storage.base, pa = a.storage.base
        Parallel.forRange(t, grain: Swift.max(1, 8192 / Swift.max(f, 1))) { rs in
            for r in rs { activate(ph + r * 2 * f, bias: m.firstBias, interleaved: m.interleaved, into: pa + r * f, f) }
        }
        var y = project(m.down, a)
        Self.addBias(&y, m.downBias)
        return y
    }

    /// Expert `e` of `layer` on every row of h [T, D], as if each token had chosen it: its output [T, D] (the down
    /// product, bias included, before the routing weight).
    public func expertOutput(layer: Int, expert e: Int, _ h: Tensor<Float>) -> Tensor<Float> {
        mlp(model.layers[layer].experts[e], h)
    }

    /// act(gate x) [T, F] of the same: the gate's activation before the product with up (clamped as gpt-oss's
    /// SwiGLU clamps it).
    public func expertGateActivations(layer: Int, expert e: Int, _ h: Tensor<Float>) -> Tensor<Float> {
        let m = model.layers[layer].experts[e]
        let t = h.shape[0], f = m.width
        let g: Tensor<Float>
        if m.interleaved {  // rows alternate gate and up: the even columns of the product
            let both = project(m.first[0], h)
            g = Tensor(uninitializedShape: [t, f])
            for r in 0..<t { for j in 0..<f { g.storage.base[r * f + j] = both.storage.base[r * 2 * f + 2 * j] } }
        } else {
            g = project(m.first[0], h)
        }
        var out = Tensor<Float>(uninitializedShape: [t, f])
        g.withUnsafePointer { pg in
            out.withUnsafeMutablePointer { po in
                for r in 0..<t {
                    for j in 0..<f {
                        let x = pg[r * f + j] + (m.firstBias?[m.interleaved ? 2 * j : j] ?? 0)
                        if let c = clamp {
                            let g = Swift.min(x, c.limit)
                            po[r * f + j] = g * Pointwise.sigmoid(c.alpha * g)
                        } else {
                            po[r * f + j] = Pointwise.Silu.apply(x)
                        }
                    }
                }
            }
        }
        return out
    }

    /// The MoE block: the shared router picks the experts; one token runs its k experts' gate and up in one
    /// parallel pass and their downs in another; a prompt runs each expert once over its block of tokens.
    func moe(_ l: InferenceModel.Layer, index: Int, router: Router<Float>, _ h: Tensor<Float>) -> Tensor<Float> {
        let t = h.shape[0], d = h.shape[1]
        let routing = router.route(Variable(h), .inference, .inference)
        moeObserver?(index, h, routing)
        let weights = routing.weights.value.scalars
        let out = Tensor<Float>.zeros([t, d])
        let po = out.storage.base
        let kept = (0..<routing.assignmentCount).filter { routing.kept[$0] }
        if t == 1 {
            let f = l.experts[0].width
            let gu = Tensor<Float>(uninitializedShape: [kept.count, 2 * f])  // gate and up values per selected expert
            let act = Tensor<Float>(uninitializedShape: [kept.count, f])
            let ys = Tensor<Float>(uninitializedShape: [kept.count, d])
            let pgu = gu.storage.base, pa = act.storage.base, py = ys.storage.base
            h.withUnsafePointer { ph in
                // Every expert's first products of a file share one format (moe quantize treats them alike).
                let x = buffers[0].activation(ph, count: d, for: l.experts[0].first[0].format)
                var jobs: [MatVec.Job] = []
                for (i, a) in kept.enumerated() {
                    var offset = 2 * i * f
                    for w in l.experts[routing.experts[a]].first {
                        jobs.append(MatVec.Job(w: w, x: x, y: pgu + offset))
                        offset += w.rows
                    }
                }
                MatVec.run(jobs)
                jobs.removeAll(keepingCapacity: true)
                // Each selected expert's activation and its quantized form, one expert per core.
                let chosen = kept.map { l.experts[routing.experts[$0]] }
                var inputs = [Activation?](repeating: nil, count: chosen.count)
                inputs.withUnsafeMutableBufferPointer { slots in
                    Parallel.forRange(chosen.count, grain: 1) { r in
                        for i in r {
                            let e = chosen[i]
                            activate(pgu + 2 * i * f, bias: e.firstBias, interleaved: e.interleaved, into: pa + i * f, f)
                            slots[i] = buffers[1 + i].activation(pa + i * f, count: f, for: e.down.format)
                        }
                    }
                }
                for (i, e) in chosen.enumerated() { jobs.append(MatVec.Job(w: e.down, x: inputs[i]!, y: py + i * d)) }
                MatVec.run(jobs)
            }
            for (i, a) in kept.enumerated() {
                let w = weights[a], bias = l.experts[routing.experts[a]].downBias
                for j in 0..<d { po[j] += w * (py[i * d + j] + (bias?[j] ?? 0)) }
            }
        } else {
            // Permute: the kept assignments grouped by expert, in token order within each.
            var rows = [[Int]](repeating: [], count: l.experts.count)
            for a in kept { rows[routing.experts[a]].append(a) }
            h.withUnsafePointer { ph in
                for (e, assignments) in rows.enumerated() where !assignments.isEmpty {
                    let n = assignments.count
                    let xe = Tensor<Float>(uninitializedShape: [n, d])  // [n, D] gathered rows
                    for (i, a) in assignments.enumerated() { (xe.storage.base + i * d).update(from: ph + routing.tokens[a] * d, count: d) }
                    let y = mlp(l.experts[e], xe)  // [n, D]
                    y.withUnsafePointer { py in
                        for (i, a) in assignments.enumerated() {
                            let w = weights[a], dst = po + routing.tokens[a] * d, src = py + i * d
                            for j in 0..<d { dst[j] += w * src[j] }
                        }
                    }
                }
            }
        }
        if let s = l.shared {
            let y = mlp(s, h)
            y.withUnsafePointer { py in
                h.withUnsafePointer { ph in
                    for r in 0..<t {
                        var scale: Float = 1
                        if let g = l.sharedGate {
                            var z: Float = 0
                            for j in 0..<d { z += g[j] * ph[r * d + j] }
                            scale = 1 / (1 + Float.fastExp(-z))
                        }
                        for j in 0..<d { po[r * d + j] += scale * py[r * d + j] }
                    }
                }
            }
        }
        return out
    }
}

/// Bringing memory's pages in before they are written (the KV cache's).
public enum Pages {
    public static let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))

    /// Populates the pages of `p ..< p + count` for writing, their contents unchanged: one
    /// madvise(MADV_POPULATE_WRITE), or, where the kernel lacks that advice (before Linux 5.14), `touchPages`.
    public static func populate(_ p: UnsafeMutableRawPointer, _ count: Int) {
        guard count > 0 else { return }
        let first = Int(bitPattern: p) / pageSize * pageSize
        let last = (Int(bitPattern: p) + count + pageSize - 1) / pageSize * pageSize
        if madvise(UnsafeMutableRawPointer(bitPattern: first), last - first, 23 /* MADV_POPULATE_WRITE */) == 0 { return }
        touchPages(p, count)
    }

    /// Writes 0 to the first byte of `p ..< p + count` in each page (so the range must hold nothing yet).
    public static func touchPages(_ p: UnsafeMutableRawPointer, _ count: Int) {
        var q = p
        while q < p + count {
            q.storeBytes(of: 0, as: UInt8.self)
            q = UnsafeMutableRawPointer(bitPattern: (Int(bitPattern: q) / pageSize + 1) * pageSize)!
        }
    }
}

/// Matrix-vector products run together: the rows of all jobs are cut into pieces handed to the cores as they
/// free up, so one pass covers (say) q, k and v, or the gate and up of every selected expert.
public enum MatVec {
    struct Job {
        let w: WeightMatrix
        let x: Activation
        let y: UnsafeMutablePointer<Float>
    }

    /// A pass under `minimumPass` bytes runs as one piece: a second core costs more to wake than it saves.
    public static let minimumPass = 256 << 10
    /// The smallest piece of a longer pass (the last ones).
    public static let minimumPiece = 64 << 10
    /// Pieces shrink as the pass goes (guided scheduling): each is the rows left over twice the cores, down to
    /// `minimumPiece`. The first pieces are long streams, which the hardware prefetcher follows best; the last
    /// are short, so a core that finishes early waits for at most a short piece of the other's. M1 decode has
    /// 33 passes a token; with 16 equal pieces a pass the cores spent 4.6% (f32) to 13% (q4) of their samples
    /// spinning in the pool (perf), partly at the passes' ends. Against the equal pieces on the Intel Xeon model
    /// 207, `moe generate` of 40-100 tokens in alternating runs, token time with equal pieces over guided:
    /// q4 1.11 (0.97-1.29; guided faster in 9 of 10 pairs); f32 1.08 (0.99-1.43; 9 of 10) in one set, 0.98
    /// (0.90-1.05; 2 of 8) in another; q8 0.99 (0.93-1.25; 3 of 8); bf16 1.01 (0.75-1.51; 4 of 8). The VM was
    /// noisy (token times varied 1.5x within a set). `MOE_MATVEC_PIECES=equal` restores the 2 to 8 equal pieces
    /// a core of at least 256 KB, for comparisons.
    public static let equalPieces = ProcessInfo.processInfo.environment["MOE_MATVEC_PIECES"] == "equal"

    /// The rows' unit: pieces start at multiples of 16 rows (the kernels' blocks).
    static let unit = 16

    /// Piece boundaries in units of 16 rows, for a pass of `units` units and `bytes` bytes.
    public static func pieces(units: Int, bytes: Int, cores: Int, equal: Bool = equalPieces) -> [Int] {
        guard bytes >= minimumPass, units > 1, cores > 1 else { return [0, units] }
        if equal {
            let n = Swift.min(units, cores * 8, Swift.max(2, bytes / minimumPass))
            return (0...n).map { units * $0 / n }
        }
        let least = Swift.max(1, minimumPiece * units / bytes)
        var bounds = [0]
        var left = units
        while left > 0 {
            let n = Swift.min(left, Swift.max(least, (left + 2 * cores - 1) / (2 * cores)))
            bounds.append(bounds[bounds.count - 1] + n)
            left -= n
        }
        return bounds
    }

    static func run(_ jobs: [Job]) {
        let total = jobs.reduce(0) { $0 + $1.w.rows }
        let bytes = jobs.reduce(0) { $0 + $1.w.bytes }
        let bounds = pieces(units: (total + unit - 1) / unit, bytes: bytes, cores: Parallel.cores)
        Parallel.forEachDynamic(bounds.count - 1) { p in
            let lo = Swift.min(total, bounds[p] * unit), hi = Swift.min(total, bounds[p + 1] * unit)
            var base = 0
            for job in jobs {
                let r0 = Swift.max(lo, base), r1 = Swift.min(hi, base + job.w.rows)
                if r1 > r0 { job.w.matvec(rows: (r0 - base)..<(r1 - base), job.x, job.y + (r0 - base)) }
                base += job.w.rows
                if base >= hi { break }
            }
        }
    }
}
