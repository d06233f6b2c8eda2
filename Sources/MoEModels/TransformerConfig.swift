import Foundation
@_exported import MoE
@_exported import MoEIO

/// The decoder's configuration, written as `config.json` next to the weights. Keys follow Hugging Face
/// (`hidden_size`, `num_hidden_layers`, ...); the MoE block's own keys sit in a nested `moe` object
/// (absent for a dense model).
public struct TransformerConfig: Codable, Sendable, Equatable {
    public var modelType = "swift_moe"
    public var vocabSize: Int
    public var hiddenSize: Int
    public var numLayers: Int
    public var numHeads: Int
    public var numKVHeads: Int
    public var headDim: Int
    /// Width of the dense SwiGLU FFN (dense layers, and the whole model when `moe` is nil).
    public var intermediateSize: Int
    public var ropeTheta = 10000.0
    /// YaRN context extension of the rotary frequencies (nil: plain RoPE).
    public var ropeScaling: RopeScaling? = nil
    /// A learned logit per query head in the attention softmax (gpt-oss).
    public var attentionSinks = false
    public var rmsNormEps = 1e-5
    public var tieWordEmbeddings = false
    public var maxPositions = 4096
    public var initStd = 0.02
    /// Biases on the q, k and v projections (Qwen2).
    public var attentionBias = false
    /// RMSNorm on queries and keys before RoPE: "per_head" (Qwen3, over each head's Dh) or "full" (OLMoE,
    /// over the whole projection); nil for none.
    public var qkNorm: String? = nil
    /// Multi-head latent attention (DeepSeek) in place of grouped-query attention, when set.
    public var mla: LatentAttentionConfig? = nil
    /// Attention logit scale; nil is 1/sqrt(query-key head dim).
    public var attentionScale: Double? = nil
    /// RMSNorm (Llama family), LayerNorm (PhiMoE) or LayerNorm without shift (DBRX).
    public var normKind: NormKind = .rms
    /// A bias on the attention output projection (PhiMoE).
    public var attentionOutputBias = false
    /// A bias on the output head (PhiMoE's lm_head_bias).
    public var lmHeadBias = false
    /// Granite's multipliers: embeddings times `embeddingMultiplier`, each block's output times
    /// `residualMultiplier` before the residual add, logits divided by `logitsScaling`.
    public var embeddingMultiplier = 1.0
    public var residualMultiplier = 1.0
    public var logitsScaling = 1.0
    /// Clamp q, k and v to [-c, c] (DBRX's clip_qkv); nil for none.
    public var clipQKV: Double? = nil
    /// Rotary dims per head, the first ones (partial rotary); nil rotates the whole head.
    public var rotaryDim: Int? = nil
    /// Norms on the outputs of attention and FFN instead of their inputs (OLMo 2, FlexOlmo).
    public var postNorms = false
    /// Rotary pairs adjacent rather than split in halves (ERNIE 4.5).
    public var interleavedRope = false
    /// Per-head q/k norm after RoPE rather than before (HunYuan).
    public var qkNormAfterRope = false
    /// Sliding-window attention of this many keys on the layers in `slidingLayers` (0-based).
    public var slidingWindow: Int? = nil
    public var slidingLayers: [Int] = []
    /// Layers whose attention has no rotary position encoding (0-based).
    public var nopeLayers: [Int] = []
    public var moe: MoEConfig?
    /// PEER layers (He 2024) in place of the FFN of the layers in `peerLayers` (0-based), whatever the others are.
    public var peer: PEERConfig? = nil
    public var peerLayers: [Int] = []
    public var moeEvery = 1
    public var firstDenseLayers = 0

    enum CodingKeys: String, CodingKey {
        case modelType = "model_type", vocabSize = "vocab_size", hiddenSize = "hidden_size"
        case numLayers = "num_hidden_layers", numHeads = "num_attention_heads", numKVHeads = "num_key_value_heads"
        case headDim = "head_dim", intermediateSize = "intermediate_size", ropeTheta = "rope_theta"
        case rmsNormEps = "rms_norm_eps", tieWordEmbeddings = "tie_word_embeddings"
        case maxPositions = "max_position_embeddings", initStd = "initializer_range", attentionBias = "attention_bias", qkNorm = "qk_norm", moe
        case mla, attentionScale = "attention_scale", normKind = "norm_kind", attentionOutputBias = "attention_output_bias"
        case lmHeadBias = "lm_head_bias", embeddingMultiplier = "embedding_multiplier", residualMultiplier = "residual_multiplier"
        case logitsScaling = "logits_scaling", clipQKV = "clip_qkv", rotaryDim = "rotary_dim"
        case postNorms = "post_norms", interleavedRope = "rope_interleave", qkNormAfterRope = "qk_norm_after_rope"
        case moeEvery = "moe_layer_freq", firstDenseLayers = "first_k_dense_replace"
        case slidingWindow = "sliding_window", slidingLayers = "sliding_layers", nopeLayers = "nope_layers"
        case ropeScaling = "rope_scaling", attentionSinks = "attention_sinks", peer, peerLayers = "peer_layers"
    }

    public init(vocabSize: Int, hiddenSize: Int, numLayers: Int, numHeads: Int, numKVHeads: Int, headDim: Int, intermediateSize: Int, moe: MoEConfig?) {
        self.vocabSize = vocabSize
        self.hiddenSize = hiddenSize
        self.numLayers = numLayers
        self.numHeads = numHeads
        self.numKVHeads = numKVHeads
        self.headDim = headDim
        self.intermediateSize = intermediateSize
        self.moe = moe
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        modelType = try c.decodeIfPresent(String.self, forKey: .modelType) ?? "swift_moe"
        vocabSize = try c.decode(Int.self, forKey: .vocabSize)
        hiddenSize = try c.decode(Int.self, forKey: .hiddenSize)
        numLayers = try c.decode(Int.self, forKey: .numLayers)
        numHeads = try c.decode(Int.self, forKey: .numHeads)
        numKVHeads = try c.decodeIfPresent(Int.self, forKey: .numKVHeads) ?? numHeads
        headDim = try c.decodeIfPresent(Int.self, forKey: .headDim) ?? hiddenSize / max(numHeads, 1)
        intermediateSize = try c.decode(Int.self, forKey: .intermediateSize)
        ropeTheta = try c.decodeIfPresent(Double.self, forKey: .ropeTheta) ?? ropeTheta
        rmsNormEps = try c.decodeIfPresent(Double.self, forKey: .rmsNormEps) ?? rmsNormEps
        tieWordEmbeddings = try c.decodeIfPresent(Bool.self, forKey: .tieWordEmbeddings) ?? false
        maxPositions = try c.decodeIfPresent(Int.self, forKey: .maxPositions) ?? maxPositions
        initStd = try c.decodeIfPresent(Double.self, forKey: .initStd) ?? initStd
        attentionBias = try c.decodeIfPresent(Bool.self, forKey: .attentionBias) ?? false
        qkNorm = try c.decodeIfPresent(String.self, forKey: .qkNorm)
        moe = try c.decodeIfPresent(MoEConfig.self, forKey: .moe)
        mla = try c.decodeIfPresent(LatentAttentionConfig.self, forKey: .mla)
        attentionScale = try c.decodeIfPresent(Double.self, forKey: .attentionScale)
        normKind = try c.decodeIfPresent(NormKind.self, forKey: .normKind) ?? .rms
        attentionOutputBias = try c.decodeIfPresent(Bool.self, forKey: .attentionOutputBias) ?? false
        lmHeadBias = try c.decodeIfPresent(Bool.self, forKey: .lmHeadBias) ?? false
        embeddingMultiplier = try c.decodeIfPresent(Double.self, forKey: .embeddingMultiplier) ?? 1
        residualMultiplier = try c.decodeIfPresent(Double.self, forKey: .residualMultiplier) ?? 1
        logitsScaling = try c.decodeIfPresent(Double.self, forKey: .logitsScaling) ?? 1
        clipQKV = try c.decodeIfPresent(Double.self, forKey: .clipQKV)
        rotaryDim = try c.decodeIfPresent(Int.self, forKey: .rotaryDim)
        postNorms = try c.decodeIfPresent(Bool.self, forKey: .postNorms) ?? false
        interleavedRope = try c.decodeIfPresent(Bool.self, forKey: .interleavedRope) ?? false
        qkNormAfterRope = try c.decodeIfPresent(Bool.self, forKey: .qkNormAfterRope) ?? false
        moeEvery = try c.decodeIfPresent(Int.self, forKey: .moeEvery) ?? 1
        firstDenseLayers = try c.decodeIfPresent(Int.self, forKey: .firstDenseLayers) ?? 0
        slidingWindow = try c.decodeIfPresent(Int.self, forKey: .slidingWindow)
        slidingLayers = try c.decodeIfPresent([Int].self, forKey: .slidingLayers) ?? []
        nopeLayers = try c.decodeIfPresent([Int].self, forKey: .nopeLayers) ?? []
        ropeScaling = try c.decodeIfPresent(RopeScaling.self, forKey: .ropeScaling)
        attentionSinks = try c.decodeIfPresent(Bool.self, forKey: .attentionSinks) ?? false
        peer = try c.decodeIfPresent(PEERConfig.self, forKey: .peer)
        peerLayers = try c.decodeIfPresent([Int].self, forKey: .peerLayers) ?? []
    }

    /// Architectures a TransformerConfig can describe (swift-moe's own and the Hugging Face families it loads).
    public static let modelTypes = ["swift_moe", "mixtral", "qwen2_moe", "qwen3_moe", "olmoe", "deepseek_v2", "deepseek_v3", "phimoe", "granitemoe", "granitemoeshared", "dbrx",
        "glm4_moe", "glm4_moe_lite", "dots1", "solar_open", "minimax_m2",
        "flex_olmo", "ernie4_5_moe", "hunyuan_v1_moe", "exaone_moe", "gpt_oss",
    ]

    public var placement: MoEPlacement { MoEPlacement(every: moeEvery, firstDense: firstDenseLayers) }
    public func isMoE(layer i: Int) -> Bool { moe != nil && placement.isMoE(layer: i) && !isPEER(layer: i) }
    public func isPEER(layer i: Int) -> Bool { peer != nil && peerLayers.contains(i) }

    public func validate() throws(ConfigError) {
        try ConfigError.check(Self.modelTypes.contains(modelType), "model_type", modelType, "supported: \(Self.modelTypes.joined(separator: ", "))")
        try ConfigError.check(qkNorm == nil || qkNorm == "per_head" || qkNorm == "full", "qk_norm", qkNorm ?? "", "use per_head, full, or leave it out")
        let maxDim = MoEConfig.maxDimension
        try ConfigError.check(vocabSize >= 1 && vocabSize <= Self.maxVocabulary, "vocab_size", vocabSize, "use a vocabulary size between 1 and \(Self.maxVocabulary)")
        try ConfigError.check(hiddenSize >= 1 && hiddenSize <= maxDim, "hidden_size", hiddenSize, "use a model dimension between 1 and \(maxDim)")
        try ConfigError.check(numLayers >= 1 && numLayers <= Self.maxLayers, "num_hidden_layers", numLayers, "use between 1 and \(Self.maxLayers) layers")
        try ConfigError.check(numHeads >= 1 && numHeads <= Self.maxHeads, "num_attention_heads", numHeads, "use between 1 and \(Self.maxHeads) heads")
        try ConfigError.check(
            numKVHeads >= 1 && numHeads % numKVHeads == 0, "num_key_value_heads", numKVHeads,
            "must divide num_attention_heads (\(numHeads))")
        if let mla {
            try ConfigError.check(mla.kvLoraRank >= 1 && mla.kvLoraRank <= maxDim, "kv_lora_rank", mla.kvLoraRank, "use a latent rank between 1 and \(maxDim)")
            try ConfigError.check(mla.qLoraRank.map { $0 >= 1 && $0 <= maxDim } ?? true, "q_lora_rank", mla.qLoraRank ?? 0, "use a rank between 1 and \(maxDim), or null for a full q_proj")
            try ConfigError.check(mla.ropeDim >= 2 && mla.ropeDim % 2 == 0 && mla.ropeDim <= Self.maxHeadDim, "qk_rope_head_dim", mla.ropeDim, "use an even rotary dimension up to \(Self.maxHeadDim)")
            try ConfigError.check(mla.nopeDim >= 0 && mla.nopeDim <= Self.maxHeadDim, "qk_nope_head_dim", mla.nopeDim, "use a head dimension between 0 and \(Self.maxHeadDim)")
            try ConfigError.check(mla.valueDim >= 1 && mla.valueDim <= Self.maxHeadDim, "v_head_dim", mla.valueDim, "use a head dimension between 1 and \(Self.maxHeadDim)")
        }
        try ConfigError.check(headDim >= 2 && headDim % 2 == 0 && headDim <= Self.maxHeadDim, "head_dim", headDim,
                              "use an even head dimension (rotary pairs) up to \(Self.maxHeadDim)")
        try ConfigError.check(intermediateSize >= 1 && intermediateSize <= maxDim, "intermediate_size", intermediateSize, "use an FFN width between 1 and \(maxDim)")
        try ConfigError.check(moeEvery >= 1 && moeEvery <= Self.maxLayers, "moe_layer_freq", moeEvery, "use 1 (every layer) or more")
        try ConfigError.check(firstDenseLayers >= 0 && firstDenseLayers <= Self.maxLayers, "first_k_dense_replace", firstDenseLayers, "use 0 or more")
        try ConfigError.check(maxPositions >= 1 && maxPositions <= 1 << 30, "max_position_embeddings", maxPositions, "use a positive context length")
        try ConfigError.check(ropeTheta > 0 && ropeTheta.isFinite, "rope_theta", ropeTheta, "use a positive base such as 10000")
        try ConfigError.check(rmsNormEps > 0 && rmsNormEps < 1, "rms_norm_eps", rmsNormEps, "use a small positive epsilon such as 1e-06")
        try ConfigError.check(initStd >= 0 && initStd.isFinite, "initializer_range", initStd, "use a non-negative standard deviation such as 0.02")
        try ConfigError.check(attentionScale.map { $0 > 0 && $0.isFinite } ?? true, "attention_scale", attentionScale ?? 0, "use a positive scale, or leave it out")
        for (name, v) in [("embedding_multiplier", embeddingMultiplier), ("residual_multiplier", residualMultiplier)] {
            try ConfigError.check(v.isFinite, name, v, "use a finite factor")
        }
        try ConfigError.check(logitsScaling != 0 && logitsScaling.isFinite, "logits_scaling", logitsScaling, "use a non-zero factor")
        try ConfigError.check(!interleavedRope || rotaryDim == nil, "rope_interleave", interleavedRope, "interleaved pairs with partial rotary are not supported; drop one")
        try ConfigError.check(rotaryDim.map { $0 >= 2 && $0 % 2 == 0 && $0 <= headDim } ?? true, "rotary_dim", rotaryDim ?? 0, "use an even number of dims up to head_dim (\(headDim))")
        try ConfigError.check(slidingWindow.map { $0 >= 1 } ?? slidingLayers.isEmpty, "sliding_window", slidingWindow ?? 0, "use a positive window for the sliding layers")
        try ConfigError.check(clipQKV.map { $0 > 0 } ?? true, "clip_qkv", clipQKV ?? 0, "use a positive bound, or null")
        if let y = ropeScaling {
            try ConfigError.check(y.factor > 0 && y.factor.isFinite, "rope_scaling.factor", y.factor, "use a positive factor")
            try ConfigError.check(y.originalMaxPositions >= 1, "rope_scaling.original_max_position_embeddings", y.originalMaxPositions, "use a positive context length")
            try ConfigError.check(y.betaFast > 0 && y.betaSlow > 0, "rope_scaling.beta_fast", y.betaFast, "use positive beta_fast and beta_slow")
            try ConfigError.check(mla == nil, "rope_scaling", "yarn", "YaRN with latent attention (DeepSeek's softmax mscale) is not supported yet")
        }
        if let peer {
            try peer.validate()
            try ConfigError.check(peer.hiddenSize == hiddenSize, "peer.hidden_size", peer.hiddenSize, "must equal hidden_size (\(hiddenSize))")
            try ConfigError.check(!peerLayers.isEmpty, "peer_layers", "[]", "list the 0-based layers that hold PEER, or drop peer")
        }
        for l in peerLayers {
            try ConfigError.check(peer != nil, "peer_layers", l, "PEER layers need a peer config")
            try ConfigError.check(l >= 0 && l < numLayers, "peer_layers", l, "use layers between 0 and \(numLayers - 1)")
        }
        try ConfigError.check(Set(peerLayers).count == peerLayers.count, "peer_layers", "\(peerLayers)", "list each layer once")
        if let moe {
            try moe.validate()
            try ConfigError.check(moe.hiddenSize == hiddenSize, "moe.hidden_size", moe.hiddenSize, "must equal hidden_size (\(hiddenSize))")
        }
        for l in slidingLayers + nopeLayers {
            try ConfigError.check(l >= 0 && l < numLayers, slidingLayers.contains(l) ? "sliding_layers" : "nope_layers", l, "use layers between 0 and \(numLayers - 1)")
        }
        _ = try parameterCount()
    }

    /// Bounds on the sizes, far above any released model: a corrupted config is refused before its products
    /// can overflow or its tensors be allocated.
    public static let maxVocabulary = 1 << 24, maxLayers = 1 << 12, maxHeads = 1 << 14, maxHeadDim = 1 << 14

    /// Parameters a token touches: everything but the experts it is not routed to.
    /// PEER counts H·K experts as active (the heads may retrieve the same one).
    public func activeParameterCount(total: Int) -> Int {
        var active = total
        if let peer {
            active -= peerLayers.count * max(0, peer.numExperts - peer.heads * peer.expertsPerHead) * 2 * hiddenSize
        }
        guard let moe else { return active }
        let moeLayers = (0..<numLayers).filter { isMoE(layer: $0) }.count
        let perExpert = 3 * hiddenSize * moe.expertHiddenSize + (moe.expertBias ? 2 * moe.expertHiddenSize + hiddenSize : 0)
        let idle = max(0, moe.numExperts - moe.effectiveK) * perExpert
        return active - moeLayers * idle
    }
}

/// The shape of multi-head latent attention (DeepSeek-V2/V3 keys).
public struct LatentAttentionConfig: Codable, Sendable, Equatable {
    public var qLoraRank: Int?
    public var kvLoraRank: Int
    public var nopeDim: Int
    public var ropeDim: Int
    public var valueDim: Int
    public var ropeInterleave = true

    enum CodingKeys: String, CodingKey {
        case qLoraRank = "q_lora_rank", kvLoraRank = "kv_lora_rank", nopeDim = "qk_nope_head_dim"
        case ropeDim = "qk_rope_head_dim", valueDim = "v_head_dim", ropeInterleave = "rope_interleave"
    }

    public init(qLoraRank: Int?, kvLoraRank: Int, nopeDim: Int, ropeDim: Int, valueDim: Int, ropeInterleave: Bool = true) {
        self.qLoraRank = qLoraRank
        self.kvLoraRank = kvLoraRank
        self.nopeDim = nopeDim
        self.ropeDim = ropeDim
        self.valueDim = valueDim
        self.ropeInterleave = ropeInterleave
    }
}
