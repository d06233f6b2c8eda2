/// Keys and values of the positions seen so far, per layer, for incremental decoding.
/// k and v are [B, S, Hkv, Dh].
public final class KVCache<T: TensorScalar> {
    public var k: Tensor<T>?
    public var v: Tensor<T>?
    public init() {}
    public var length: Int { k?.shape[1] ?? 0 }

    /// Appends new keys and values along the position axis and returns the full ones.
    func append(_ newK: Tensor<T>, _ newV: Tensor<T>) -> (Tensor<T>, Tensor<T>) {
        let fullK = k.map { Tensor.concat([$0, newK], axis: 1) } ?? newK
        let fullV = v.map { Tensor.concat([$0, newV], axis: 1) } ?? newV
        k = fullK
        v = fullV
        return (fullK, fullV)
    }
}

/// Causal multi-head self-attention with grouped KV heads and rotary positions (Llama / Mixtral layout):
/// `q_proj` [Hq Dh, D], `k_proj` and `v_proj` [Hkv Dh, D], `o_proj` [D, Hq Dh].
///
/// Legend: B batch, T new positions, S positions attended (cache + new), D model dim, Dh head dim.
public final class Attention<T: TensorScalar>: Module {
    public let q: Linear<T>, k: Linear<T>, v: Linear<T>, o: Linear<T>
    public let heads: Int, kvHeads: Int, headDim: Int
    public let ropeTheta: Double
    /// Optional RMSNorm of queries and keys before RoPE, over each head (Qwen3) or the whole projection (OLMoE).
    public let qNorm: RMSNorm<T>?, kNorm: RMSNorm<T>?
    public let perHeadNorm: Bool
    /// Logit scale (default 1/sqrt(Dh)); Granite sets its own.
    public let scale: T
    /// Clamp q, k and v projections to [-c, c] (DBRX's clip_qkv).
    public let clip: T?
    /// Rotary dims per head (the first ones; partial rotary, GLM-4.5); nil rotates all.
    public let rotaryDim: Int?
    /// Rotary pairs are adjacent (x0, x1), (x2, x3)... (GPT-J style, ERNIE) rather than the two halves.
    public let interleavedRope: Bool
    /// The per-head q/k norm comes after RoPE (HunYuan) instead of before it (Qwen3).
    public let normAfterRope: Bool
    /// Sliding-window attention: each query sees its last `window` keys (nil: all earlier keys).
    public let window: Int?
    /// False for layers without position encoding (NoPE), as EXAONE's global layers.
    public let usesRope: Bool
    /// YaRN's frequencies and cos/sin scale (nil: plain RoPE).
    public let ropeScaling: RopeScaling?
    /// A learned logit per query head in the softmax denominator (gpt-oss's `sinks` [Hq]).
    public let sinks: Parameter<T>?

    public enum QKNorm: Sendable { case none, perHead, full }

    public init(
        dim: Int, heads: Int, kvHeads: Int, headDim: Int, ropeTheta: Double, bias: Bool = false, qkNorm: QKNorm = .none,
        normEps: T = 1e-6, outputBias: Bool = false, scale: Double? = nil, clip: Double? = nil, rotaryDim: Int? = nil,
        interleavedRope: Bool = false, normAfterRope: Bool = false, window: Int? = nil, rope: Bool = true,
        ropeScaling: RopeScaling? = nil, sinks: Bool = false, path: String, rng: inout RandomGenerator
    ) {
        self.window = window
        self.ropeScaling = ropeScaling
        self.sinks = sinks ? Parameter(joinPath(path, "sinks"), .zeros([heads])) : nil
        self.usesRope = rope
        self.normAfterRope = normAfterRope
        self.rotaryDim = rotaryDim
        self.interleavedRope = interleavedRope
        self.scale = T(scale ?? 1 / Double(headDim).squareRoot())
        self.clip = clip.map { T($0) }
        perHeadNorm = qkNorm == .perHead
        switch qkNorm {
        case .none:
            qNorm = nil
            kNorm = nil
        case .perHead:
            qNorm = RMSNorm(headDim, eps: normEps, path: joinPath(path, "q_norm"))
            kNorm = RMSNorm(headDim, eps: normEps, path: joinPath(path, "k_norm"))
        case .full:
            qNorm = RMSNorm(heads * headDim, eps: normEps, path: joinPath(path, "q_norm"))
            kNorm = RMSNorm(kvHeads * headDim, eps: normEps, path: joinPath(path, "k_norm"))
        }
        q = Linear(dim, heads * headDim, bias: bias, path: joinPath(path, "q_proj"), rng: &rng)
        k = Linear(dim, kvHeads * headDim, bias: bias, path: joinPath(path, "k_proj"), rng: &rng)
        v = Linear(dim, kvHeads * headDim, bias: bias, path: joinPath(path, "v_proj"), rng: &rng)
        o = Linear(heads * headDim, dim, bias: outputBias, path: joinPath(path, "o_proj"), rng: &rng)
        self.heads = heads
        self.kvHeads = kvHeads
        self.headDim = headDim
        self.ropeTheta = ropeTheta
    }

    public var parameters: [Parameter<T>] {
        q.parameters + k.parameters + v.parameters + o.parameters + (qNorm?.parameters ?? []) + (kNorm?.parameters ?? [])
            + (sinks.map { [$0] } ?? [])
    }

    /// x [B, T, D] at `positions` (T entries) -> [B, T, D]. With a cache, attends over cached + new keys.
    public func callAsFunction(
        _ x: Variable<T>, positions: [Int], cache: KVCache<T>? = nil, _ ctx: ForwardContext<T>
    ) -> Variable<T> {
        let (b, t) = (x.shape[0], x.shape[1])
        var qp = q(x, ctx), kp = k(x, ctx), vp = v(x, ctx)
        if let clip {
            (qp, kp, vp) = (qp.clamped(min: -clip, max: clip), kp.clamped(min: -clip, max: clip), vp.clamped(min: -clip, max: clip))
        }
        if !perHeadNorm, let qNorm, let kNorm {
            qp = qNorm(qp, ctx)
            kp = kNorm(kp, ctx)
        }
        var qr = qp.reshaped([b, t, heads, headDim]), kr = kp.reshaped([b, t, kvHeads, headDim])
        if perHeadNorm, !normAfterRope, let qNorm, let kNorm {
            qr = qNorm(qr, ctx)
            kr = kNorm(kr, ctx)
        }
        if interleavedRope {
            qr = qr.adjacentPairsToHalves()
            kr = kr.adjacentPairsToHalves()
        }
        var qh = usesRope ? qr.rope(positions: positions, theta: ropeTheta, rotaryDim: rotaryDim, scaling: ropeScaling) : qr
        var kh = usesRope ? kr.rope(positions: positions, theta: ropeTheta, rotaryDim: rotaryDim, scaling: ropeScaling) : kr
        if perHeadNorm, normAfterRope, let qNorm, let kNorm {
            qh = qNorm(qh, ctx)
            kh = kNorm(kh, ctx)
        }
        var vh = vp.reshaped([b, t, kvHeads, headDim])
        if let cache {
            // Decoding records nothing: the cached keys are constants.
            let (fk, fv) = cache.append(kh.value, vh.value)
            kh = Variable(fk)
            vh = Variable(fv)
        }
        let out = Variable.attention(q: qh, k: kh, v: vh, causal: true, scale: scale, window: window, sinks: sinks.map { ctx($0) })  // [B, T, Hq, Dh]
        return o(out.reshaped([b, t, heads * headDim]), ctx)
    }
}
