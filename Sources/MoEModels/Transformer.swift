/// One decoder layer: h += attn(norm(h)); h += ffn(norm(h)), where ffn is an MoE block or a dense SwiGLU.
public final class DecoderLayer<T: TensorScalar>: Module {
    public let inputNorm: any Normalizer<T>
    public let attention: any TokenMixer<T>
    public let postNorm: any Normalizer<T>
    public let moe: MoELayer<T>?
    public let dense: SwiGLU<T>?
    /// A PEER layer in place of the FFN (the layers in `TransformerConfig.peerLayers`).
    public let peer: PEERLayer<T>?

    init(_ c: TransformerConfig, index: Int, moeConfig: MoEConfig?, rng: inout RandomGenerator) throws(ConfigError) {
        let p = "layers.\(index)"
        // Pre-norm: input_layernorm before attention, post_attention_layernorm before the FFN. Post-norm
        // (OLMo 2): post_attention_layernorm on the attention output, post_feedforward_layernorm on the FFN's.
        inputNorm = c.normKind.make(c.hiddenSize, eps: T(c.rmsNormEps), path: joinPath(p, c.postNorms ? "post_attention_layernorm" : "input_layernorm"))
        if let m = c.mla {
            attention = LatentAttention(
                dim: c.hiddenSize, heads: c.numHeads, qLoraRank: m.qLoraRank, kvLoraRank: m.kvLoraRank, nopeDim: m.nopeDim,
                ropeDim: m.ropeDim, valueDim: m.valueDim, ropeTheta: c.ropeTheta, interleaved: m.ropeInterleave,
                bias: c.attentionBias, scale: c.attentionScale, path: joinPath(p, "self_attn"), rng: &rng)
        } else {
            attention = Attention(
                dim: c.hiddenSize, heads: c.numHeads, kvHeads: c.numKVHeads, headDim: c.headDim, ropeTheta: c.ropeTheta,
                bias: c.attentionBias, qkNorm: c.qkNorm == "per_head" ? .perHead : c.qkNorm == "full" ? .full : .none,
                normEps: T(c.rmsNormEps), outputBias: c.attentionOutputBias, scale: c.attentionScale, clip: c.clipQKV,
                rotaryDim: c.rotaryDim, interleavedRope: c.interleavedRope, normAfterRope: c.qkNormAfterRope,
                window: c.slidingLayers.contains(index) ? c.slidingWindow : nil, rope: !c.nopeLayers.contains(index),
                ropeScaling: c.ropeScaling, sinks: c.attentionSinks, path: joinPath(p, "self_attn"), rng: &rng)
        }
        postNorm = c.normKind.make(c.hiddenSize, eps: T(c.rmsNormEps), path: joinPath(p, c.postNorms ? "post_feedforward_layernorm" : "post_attention_layernorm"))
        if let peerConfig = c.peer, c.peerLayers.contains(index) {
            (moe, dense) = (nil, nil)
            peer = try PEERLayer(config: peerConfig, path: joinPath(p, "mlp"), rng: &rng)
        } else if let moeConfig {
            moe = try MoELayer(config: moeConfig, path: joinPath(p, "mlp"), causal: true, rng: &rng)
            (dense, peer) = (nil, nil)
        } else {
            (moe, peer) = (nil, nil)
            dense = SwiGLU(c.hiddenSize, hidden: c.intermediateSize, path: joinPath(p, "mlp"), rng: &rng)
        }
    }

    public var parameters: [Parameter<T>] {
        inputNorm.parameters + attention.parameters + postNorm.parameters + (moe?.parameters ?? []) + (dense?.parameters ?? [])
            + (peer?.parameters ?? [])
    }
}

/// What a forward returns: logits [B T, V] and each MoE layer's output record (routing, losses, statistics).
public struct ModelOutput<T: TensorScalar> {
    public let logits: Variable<T>
    public let moe: [MoEOutput<T>]
    /// The balancing terms folded over layers (Switch f·P pooled over all layers' tokens, or averaged over the
    /// layers' own losses: `MoEConfig.auxLossScope`), weighted by their
    /// coefficients; nil when every coefficient is 0.
    public let auxLoss: Variable<T>?
    /// With `collectHiddenStates`: the embedding output, each decoder layer's output and the final-norm
    /// output, each [B, T, D] (Hugging Face's `output_hidden_states`, last entry normed).
    public var hiddenStates: [Tensor<T>] = []
    /// Per PEER layer, the experts each token's heads retrieved ([N, H, K] flattened).
    public var peerExperts: [[Int]] = []
}

/// A decoder-only MoE transformer assembled from the shared parts: token embedding, RMSNorm, RoPE,
/// grouped-query attention, and per layer an MoE block or a dense FFN, then a final norm and an output head
/// (optionally tied to the embedding). Parameter paths follow Hugging Face Llama/Mixtral (`embed_tokens`,
/// `layers.i.self_attn.q_proj`, `layers.i.mlp...`, `norm`, `lm_head`).
///
/// Legend: B batch, T positions, D model dim, V vocabulary.
public final class MoETransformer<T: TensorScalar>: Module {
    public let config: TransformerConfig
    public let embed: Embedding<T>
    public let layers: [DecoderLayer<T>]
    public let norm: any Normalizer<T>
    public let head: Linear<T>?

    public init(_ config: TransformerConfig, seed: UInt64) throws(ConfigError) {
        try config.validate()
        self.config = config
        var rng = RandomGenerator(seed: seed)
        embed = Embedding(config.vocabSize, config.hiddenSize, path: "embed_tokens", rng: &rng)
        // The Switch loss is computed here over all layers (pooled or per layer), so the blocks leave it out.
        var layerMoE = config.moe
        layerMoE?.auxLossCoef = 0
        var built: [DecoderLayer<T>] = []
        for i in 0..<config.numLayers {
            built.append(try DecoderLayer(config, index: i, moeConfig: config.isMoE(layer: i) ? layerMoE : nil, rng: &rng))
        }
        layers = built
        norm = config.normKind.make(config.hiddenSize, eps: T(config.rmsNormEps), path: "norm")
        head = config.tieWordEmbeddings ? nil : Linear(config.hiddenSize, config.vocabSize, bias: config.lmHeadBias, path: "lm_head", rng: &rng)
        initialize(std: config.initStd, rng: &rng)
    }

    /// GPT-2 / Llama initialization: every matrix normal(0, std), norms at 1, the selection bias at 0. PEER's
    /// tables keep their own fan-in scaled initialization (their sums run over D and H·K terms).
    func initialize(std: Double, rng: inout RandomGenerator) {
        let peerOwn = Set(layers.compactMap(\.peer).flatMap { [$0.keys.path, $0.down.path, $0.up.path] })
        for p in parameters where p.shape.count >= 2 && !peerOwn.contains(p.path) {
            p.value = Tensor.normal(p.shape, std: T(std), rng: &rng)
        }
    }

    public var parameters: [Parameter<T>] {
        embed.parameters + layers.flatMap(\.parameters) + norm.parameters + (head?.parameters ?? [])
    }

    /// State saved with the weights but not trained by gradients (selection biases).
    public var buffers: [Parameter<T>] { layers.flatMap { ($0.moe?.buffers ?? []) + ($0.peer?.buffers ?? []) } }

    public var moeLayers: [MoELayer<T>] { layers.compactMap(\.moe) }

    /// ids [B T] (row-major, B sequences of T) -> logits [B T, V]. `startPosition` and `caches` (one per
    /// layer) serve incremental decoding.
    public func callAsFunction(
        ids: [Int], batch b: Int, _ ctx: ForwardContext<T>, options: RouteOptions = .inference,
        caches: [KVCache<T>]? = nil, startPosition: Int = 0, lastPositionOnly: Bool = false,
        collectHiddenStates: Bool = false
    ) -> ModelOutput<T> {
        Shape.require(b > 0 && ids.count % b == 0, "model", "\(ids.count) ids do not split into \(b) sequences")
        let t = ids.count / b
        for id in ids where id < 0 || id >= config.vocabSize {
            Shape.require(false, "model", "token id \(id) outside the vocabulary of \(config.vocabSize)")
        }
        let positions = Array(startPosition..<(startPosition + t))
        var h = embed(ids, shape: [b, t], ctx)  // [B, T, D]
        if config.embeddingMultiplier != 1 { h = h * T(config.embeddingMultiplier) }
        let residualScale = T(config.residualMultiplier)
        func scaled(_ v: Variable<T>) -> Variable<T> { residualScale == 1 ? v : v * residualScale }
        var hidden: [Tensor<T>] = collectHiddenStates ? [h.value] : []
        var outs: [MoEOutput<T>] = []
        var peerExperts: [[Int]] = []
        var opts = options
        opts.tokenIDs = ids
        opts.sequenceLength = t
        let post = config.postNorms
        for (i, layer) in layers.enumerated() {
            // Pre-norm: h += f(norm(h)). Post-norm (OLMo 2 / FlexOlmo): h += norm(f(h)).
            let a = layer.attention(post ? h : layer.inputNorm(h, ctx), positions: positions, cache: caches?[i], ctx)
            h = h + scaled(post ? layer.inputNorm(a, ctx) : a)
            let x = post ? h : layer.postNorm(h, ctx)
            var f: Variable<T>
            if let moe = layer.moe {
                let out = moe(x, ctx, options: opts)
                outs.append(out)
                f = out.output
            } else if let peer = layer.peer {
                let out = peer(x, ctx, training: options.training)
                peerExperts.append(out.experts)
                f = out.output
            } else {
                f = layer.dense!(x, ctx)
            }
            h = h + scaled(post ? layer.postNorm(f, ctx) : f)
            if collectHiddenStates && i < layers.count - 1 { hidden.append(h.value) }
        }
        var last = h
        if lastPositionOnly && t > 1 {
            last = h.reshaped([b * t, -1]).indexSelect((0..<b).map { $0 * t + t - 1 }).reshaped([b, 1, -1])
        }
        let finalNorm = norm(last, ctx)
        if collectHiddenStates { hidden.append(finalNorm.value) }
        let normed = finalNorm.reshaped([-1, config.hiddenSize])
        var logits = head.map { $0(normed, ctx) } ?? Variable.matmul(normed, ctx(embed.weight), transposeB: true)
        if config.logitsScaling != 1 { logits = logits * T(1 / config.logitsScaling) }
        var out = ModelOutput(logits: logits, moe: outs, auxLoss: foldAux(outs))
        out.hiddenStates = hidden
        out.peerExperts = peerExperts
        return out
    }

    func foldAux(_ outs: [MoEOutput<T>]) -> Variable<T>? {
        var total: Variable<T>? = nil
        for o in outs { if let t = o.losses.total { total = total.map { $0 + t } ?? t } }
        if let moe = config.moe, moe.auxLossCoef > 0, !outs.isEmpty, outs[0].routing.logits != nil {
            let loss: Variable<T>
            switch moe.auxLossScope {
            case .pooled: loss = Balancing.switchLoss(outs.map(\.routing))
            case .perLayer:
                // Each layer's own f and P, averaged over the MoE layers.
                let layers = outs.map { Balancing.switchLoss([$0.routing]) }
                loss = layers.dropFirst().reduce(layers[0], +) * T(1.0 / Double(layers.count))
            }
            let weighted = loss * T(moe.auxLossCoef)
            total = total.map { $0 + weighted } ?? weighted
        }
        return total
    }

    public var parameterCount: Int { parameters.reduce(0) { $0 + $1.value.count } }
    public var activeParameterCount: Int { config.activeParameterCount(total: parameterCount) }
}
