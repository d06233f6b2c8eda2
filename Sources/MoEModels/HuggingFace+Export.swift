import Foundation

/// Writing a swift-moe model as a Hugging Face checkpoint (config.json, generation_config.json and
/// model.safetensors in float32) of the family whose forward pass is the same function:
///
/// - mixtral: softmax top-k routing with renormalized weights, no shared expert;
/// - qwen2_moe: softmax top-k (renormalized or not) with a sigmoid-gated shared expert; q/k/v biases off;
/// - deepseek_v3: the DeepSeek-V3 router (below) with multi-head latent attention;
/// - glm4_moe: the DeepSeek-V3 router (sigmoid scores, selection-only correction bias, groups ranked by the sum
///   of their best two, optional renormalization, routed scaling) and DeepSeek-V3's MoE tensor layout
///   (`mlp.gate.e_score_correction_bias`, `mlp.experts.N`, `mlp.shared_experts`), with the grouped-query
///   attention swift-moe trains by default (deepseek_v3 always means latent attention); full rotary, no q/k norm.
///
/// Tensor names come from the same tables the loaders read, so an exported checkpoint loads back through
/// `HuggingFace.load`; anything these families cannot express (another router, capacity limits at inference,
/// biases, multipliers...) is refused with the reason.
extension HuggingFace {
    public struct ExportError: Error, CustomStringConvertible {
        public let description: String
    }

    /// Writes `model` to `dir` (created if needed; existing files replaced atomically). Returns the family.
    @discardableResult
    public static func export(_ model: MoETransformer<Float>, to dir: String) throws -> String {
        let c = model.config
        let (family, json, names) = try plan(c)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        var tensors: [(String, SafetensorsWriter.Payload)] = []
        for p in model.parameters + model.buffers {
            switch names(p.path) {
            case .tensor(let name): tensors.append((name, .float(p.value)))
            case .stacked(let groups):
                // [E, parts x rows, cols] back to one [rows, cols] tensor per expert and part (gate, up).
                let v = p.value
                let rows = v.shape[1] / groups[0].count, cols = v.shape[2]
                let s = v.scalars
                for (e, parts) in groups.enumerated() {
                    for (k, name) in parts.enumerated() {
                        let start = (e * v.shape[1] + k * rows) * cols
                        tensors.append((name, .float(Tensor(shape: [rows, cols], Array(s[start..<(start + rows * cols)])))))
                    }
                }
            case .derived, .misshapen:
                throw ExportError(description: "\(p.path) has no plain \(family) tensor; this model cannot be exported")
            }
        }
        // The DeepSeek-V3 layout always has the selection bias; a model trained without one selects as with zeros.
        if family == "glm4_moe" || family == "deepseek_v3", let moe = c.moe, !moe.selectionBias {
            for layer in 0..<c.numLayers where c.placement.isMoE(layer: layer) {
                tensors.append(("model.layers.\(layer).mlp.gate.e_score_correction_bias", .float(Tensor<Float>.zeros([moe.numExperts]))))
            }
        }
        try AtomicFile.write(try configJSON(json), to: dir + "/config.json")
        let generation: [String: Any] = ["bos_token_id": NSNull(), "eos_token_id": NSNull(), "transformers_version": "5.23.0"]
        try AtomicFile.write(try JSONSerialization.data(withJSONObject: generation, options: [.prettyPrinted, .sortedKeys]), to: dir + "/generation_config.json")
        try SafetensorsWriter.write(tensors, metadata: ["format": "pt"], to: dir + "/model.safetensors")
        return family
    }

    /// config.json text. transformers validates float fields strictly (`routed_scaling_factor: 1` is refused as
    /// an int) and JSONSerialization writes 1.0 as 1, so floats travel as marked strings and are unquoted after.
    static func configJSON(_ json: [String: Any]) throws -> Data {
        func mark(_ v: Any) -> Any {
            switch v {
            case let d as Double: return floatMarker + "\(d)"
            case let o as [String: Any]: return o.mapValues(mark)
            default: return v
            }
        }
        let text = String(decoding: try JSONSerialization.data(withJSONObject: mark(json), options: [.prettyPrinted, .sortedKeys]), as: UTF8.self)
        let re = try NSRegularExpression(pattern: "\"" + floatMarker + "([^\"]*)\"")
        return Data(re.stringByReplacingMatches(in: text, range: NSRange(text.startIndex..., in: text), withTemplate: "$1").utf8)
    }
    private static let floatMarker = "@float@"

    /// The family, its config.json and its tensor names for a model config, or why there is none.
    static func plan(_ c: TransformerConfig) throws -> (String, [String: Any], (String) -> ModelFiles.TensorSource) {
        func refuse(_ why: String) -> ExportError { ExportError(description: "cannot export as a Hugging Face checkpoint: \(why)") }
        guard let moe = c.moe else { throw refuse("a dense model has no MoE family; train with experts") }
        // Parts of the model no exported family has.
        let extras: [(Bool, String)] = [
            (c.attentionBias || c.attentionOutputBias || c.lmHeadBias, "attention or head biases"),
            (c.qkNorm != nil, "q/k norms"), (c.attentionScale != nil, "a custom attention scale"),
            (c.mla != nil && moe.router != .grouped, "latent attention without the DeepSeek-V3 router"),
            (!c.slidingLayers.isEmpty || !c.nopeLayers.isEmpty, "sliding-window or NoPE layers"),
            (c.peer != nil, "PEER layers (no Hugging Face family has them)"),
            (c.normKind != .rms, "LayerNorm"), (c.embeddingMultiplier != 1 || c.residualMultiplier != 1 || c.logitsScaling != 1, "multipliers"),
            (c.clipQKV != nil, "clipped q/k/v"), (c.rotaryDim != nil, "partial rotary"), (c.postNorms, "post-norms"),
            (c.interleavedRope, "interleaved RoPE"), (moe.expertActivation != .swiglu, "\(moe.expertActivation.rawValue) experts (only SwiGLU)"),
            (moe.expertBias, "expert biases"), (moe.evalCapacityFactor != nil, "a capacity limit at inference (tokens dropped)"),
            (moe.jitterEps != 0, "router input jitter"), (c.attentionSinks, "attention sinks"), (c.ropeScaling != nil, "YaRN RoPE"),
            (moe.routerBias, "a router bias"),
        ]
        if let (_, what) = extras.first(where: { $0.0 }) { throw refuse("the model has \(what)") }
        var j: [String: Any] = [
            "vocab_size": c.vocabSize, "hidden_size": c.hiddenSize, "num_hidden_layers": c.numLayers,
            "num_attention_heads": c.numHeads, "num_key_value_heads": c.numKVHeads, "head_dim": c.headDim,
            "hidden_act": "silu", "max_position_embeddings": c.maxPositions, "rms_norm_eps": c.rmsNormEps,
            "rope_theta": c.ropeTheta, "rope_parameters": ["rope_type": "default", "rope_theta": c.ropeTheta] as [String: Any],
            "tie_word_embeddings": c.tieWordEmbeddings, "initializer_range": c.initStd, "attention_dropout": 0.0,
            "num_experts_per_tok": moe.expertsPerToken, "router_aux_loss_coef": moe.auxLossCoef, "output_router_logits": false,
            "use_cache": true, "dtype": "float32", "transformers_version": "5.23.0",
            "bos_token_id": NSNull(), "eos_token_id": NSNull(), "pad_token_id": NSNull(),
        ]
        let softmaxTopK = (moe.router == .softmaxTopK || moe.router == .topKSoftmax) && moe.scoreFunction == .softmax
            && !moe.selectionBias && moe.routedScalingFactor == 1 && moe.numGroups == 1
        // top-k then softmax over the k is softmax top-k renormalized.
        let normalized = moe.normalizeTopK || moe.router == .topKSoftmax
        if softmaxTopK && moe.sharedExpertHiddenSize == 0 {
            guard normalized else { throw refuse("softmax top-k without renormalization and without a shared expert has no family (mixtral renormalizes)") }
            guard c.firstDenseLayers == 0 && c.moeEvery == 1 else { throw refuse("mixtral has experts in every layer; this model has dense layers") }
            j["architectures"] = ["MixtralForCausalLM"]
            j["model_type"] = "mixtral"
            j["intermediate_size"] = moe.expertHiddenSize
            j["num_local_experts"] = moe.numExperts
            j["sliding_window"] = NSNull()
            return ("mixtral", j, mixtralNames(experts: moe.numExperts))
        }
        if softmaxTopK {
            guard moe.sharedExpertGate else { throw refuse("qwen2_moe gates its shared expert with a sigmoid; this model's shared expert has no gate (train with --shared-expert-gate)") }
            guard c.firstDenseLayers == c.moeEvery - 1 else {
                throw refuse("qwen2_moe puts experts in every decoder_sparse_step-th layer; this model's dense layers do not follow that pattern")
            }
            j["architectures"] = ["Qwen2MoeForCausalLM"]
            j["model_type"] = "qwen2_moe"
            j["intermediate_size"] = c.intermediateSize
            j["moe_intermediate_size"] = moe.expertHiddenSize
            j["shared_expert_intermediate_size"] = moe.sharedExpertHiddenSize
            j["num_experts"] = moe.numExperts
            j["norm_topk_prob"] = normalized
            j["decoder_sparse_step"] = c.moeEvery
            j["mlp_only_layers"] = [Int]()
            j["qkv_bias"] = false
            j["use_sliding_window"] = false
            return ("qwen2_moe", j, qwenNames(experts: moe.numExperts))
        }
        if moe.router == .grouped && moe.scoreFunction == .sigmoid {
            guard moe.groupScore == .top2Sum else { throw refuse("the DeepSeek-V3 router ranks groups by their best two experts; this model uses \(moe.groupScore.rawValue)") }
            guard moe.sharedExpertHiddenSize % moe.expertHiddenSize == 0, !moe.sharedExpertGate else {
                throw refuse("glm4_moe's shared experts are ungated and a whole number of expert widths; this model's are not")
            }
            guard c.moeEvery == 1 else { throw refuse("the DeepSeek-V3 layout has experts in every layer after the first_k_dense_replace dense ones") }
            j["intermediate_size"] = c.intermediateSize
            j["moe_intermediate_size"] = moe.expertHiddenSize
            j["n_routed_experts"] = moe.numExperts
            j["n_shared_experts"] = moe.sharedExpertHiddenSize / moe.expertHiddenSize
            j["n_group"] = moe.numGroups
            j["topk_group"] = moe.topKGroups
            j["norm_topk_prob"] = moe.normalizeTopK
            j["routed_scaling_factor"] = moe.routedScalingFactor
            j["first_k_dense_replace"] = c.firstDenseLayers
            if let m = c.mla {
                // Latent attention: the real deepseek_v3.
                j["architectures"] = ["DeepseekV3ForCausalLM"]
                j["model_type"] = "deepseek_v3"
                j["q_lora_rank"] = m.qLoraRank.map { $0 as Any } ?? NSNull()
                j["kv_lora_rank"] = m.kvLoraRank
                j["qk_nope_head_dim"] = m.nopeDim
                j["qk_rope_head_dim"] = m.ropeDim
                j["v_head_dim"] = m.valueDim
                j["head_dim"] = m.ropeDim
                j["num_key_value_heads"] = c.numHeads
                j["rope_interleave"] = m.ropeInterleave
                j["topk_method"] = "noaux_tc"
                j["attention_bias"] = false
                return ("deepseek_v3", j, deepSeekNames(experts: moe.numExperts, minimax: false))
            }
            j["architectures"] = ["Glm4MoeForCausalLM"]
            j["model_type"] = "glm4_moe"
            j["partial_rotary_factor"] = 1.0
            j["rope_parameters"] = ["rope_type": "default", "rope_theta": c.ropeTheta, "partial_rotary_factor": 1.0] as [String: Any]
            j["use_qk_norm"] = false
            j["attention_bias"] = false
            return ("glm4_moe", j, deepSeekNames(experts: moe.numExperts, minimax: false))
        }
        throw refuse("router \(moe.router.rawValue) (\(moe.scoreFunction.rawValue) scores) has no Hugging Face family; softmax_topk and topk_softmax export as mixtral or qwen2_moe, grouped sigmoid as glm4_moe")
    }
}
