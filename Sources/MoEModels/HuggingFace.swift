import Foundation

/// Hugging Face checkpoints, loaded as a visible pipeline: read config.json -> map it to a
/// `TransformerConfig` -> read the safetensors -> rename and stack the tensors -> install, strictly (every
/// file tensor used, every parameter filled, every shape checked).
public enum HuggingFace {
    /// The `model_type`s this loader understands.
    public static let supported = [
        "dbrx", "deepseek_v2", "deepseek_v3", "dots1", "ernie4_5_moe", "exaone_moe", "flex_olmo", "glm4_moe", "glm4_moe_lite", "granitemoe", "granitemoeshared",
        "hunyuan_v1_moe", "minimax_m2", "mixtral", "olmoe", "phimoe", "qwen2_moe", "qwen3_moe", "solar_open", "swift_moe",
    ]

    public struct LoadError: Error, CustomStringConvertible {
        public let description: String
        public init(description: String) { self.description = description }
    }

    /// Loads any supported checkpoint directory.
    public static func load(_ dir: String) throws -> MoETransformer<Float> {
        let path = dir + "/config.json"
        let json = try readConfig(dir)
        let type = json["model_type"] as? String ?? "(none)"
        switch type {
        case "swift_moe": return try ModelFiles.load(dir, as: Float.self)
        case "mixtral", "phimoe": return try loadMixtral(dir, config: json, family: type)
        case "granitemoe", "granitemoeshared": return try loadGranite(dir, config: json, family: type)
        case "dbrx": return try loadDBRX(dir, config: json)
        case "ernie4_5_moe": return try loadErnie(dir, config: json)
        case "hunyuan_v1_moe": return try loadHunYuan(dir, config: json)
        case "qwen2_moe", "qwen3_moe", "olmoe", "flex_olmo": return try loadQwenLike(dir, config: json, family: type)
        case "deepseek_v2", "deepseek_v3", "glm4_moe", "glm4_moe_lite", "dots1", "solar_open", "minimax_m2", "exaone_moe":
            return try loadDeepSeek(dir, config: json, family: type)
        default:
            throw LoadError(description: "\(path): unknown model_type \"\(type)\"; supported: \(supported.joined(separator: ", "))")
        }
    }

    /// `dir/config.json` as a JSON object.
    public static func readConfig(_ dir: String) throws -> [String: Any] {
        let path = dir + "/config.json"
        guard let data = FileManager.default.contents(atPath: path) else {
            throw LoadError(description: "\(path): not found; point at a model directory with config.json")
        }
        guard let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw LoadError(description: "\(path): not valid JSON; fix or re-download the file")
        }
        return json
    }

    /// The families whose config maps to a `TransformerConfig` without building the model (the inference
    /// engine's families).
    public static let configOnlyFamilies = ["mixtral", "olmoe", "qwen2_moe", "qwen3_moe"]

    /// The `TransformerConfig` of a checkpoint of one of `configOnlyFamilies`, without building the model.
    public static func config(_ dir: String) throws -> TransformerConfig {
        let path = dir + "/config.json"
        let j = try readConfig(dir)
        let type = j["model_type"] as? String ?? "(none)"
        switch type {
        case "mixtral": return try mixtralConfig(j, path: path, family: type)
        case "olmoe", "qwen2_moe", "qwen3_moe": return try qwenConfig(j, path: path, family: type)
        default:
            throw LoadError(description: "\(path): model_type \"\(type)\" is not supported by the inference engine yet; supported: \(configOnlyFamilies.joined(separator: ", "))")
        }
    }

    static func int(_ j: [String: Any], _ k: String, _ path: String) throws -> Int {
        guard let v = j[k] as? Int else { throw LoadError(description: "\(path): missing or non-integer \"\(k)\"; the config is incomplete") }
        return v
    }

    /// The attention and norm part of a Llama-family config.
    static func baseConfig(_ j: [String: Any], path: String, modelType: String, intermediate: Int, moe: MoEConfig?) throws -> TransformerConfig {
        let d = try int(j, "hidden_size", path), heads = try int(j, "num_attention_heads", path)
        var c = TransformerConfig(
            vocabSize: try int(j, "vocab_size", path), hiddenSize: d, numLayers: try int(j, "num_hidden_layers", path),
            numHeads: heads, numKVHeads: j["num_key_value_heads"] as? Int ?? heads,
            headDim: j["head_dim"] as? Int ?? d / heads, intermediateSize: intermediate, moe: moe)
        c.modelType = modelType
        c.ropeTheta = try ropeTheta(j, path: path)
        c.rmsNormEps = j["rms_norm_eps"] as? Double ?? 1e-5
        c.tieWordEmbeddings = j["tie_word_embeddings"] as? Bool ?? false
        return c
    }

    static func build(_ c: TransformerConfig, path: String) throws -> MoETransformer<Float> {
        do { return try MoETransformer<Float>(c, seed: 0) } catch { throw LoadError(description: "\(path): \(error)") }
    }

    /// Mixtral (`MixtralForCausalLM`): Llama attention, SwiGLU experts (`w1` gate, `w3` up, `w2` down) under
    /// `block_sparse_moe`, softmax top-k routing with renormalized weights.
    /// PhiMoE (`PhimoeForCausalLM`): the same layout with LayerNorm (weight and bias) in place of RMSNorm,
    /// optional biases on q/k/v/o and the head, and SparseMixer routing (top-2, margin `router_jitter_noise`).
    static func loadMixtral(_ dir: String, config j: [String: Any], family: String) throws -> MoETransformer<Float> {
        let path = dir + "/config.json"
        let c = try mixtralConfig(j, path: path, family: family)
        let model = try build(c, path: path)
        let file = try SafetensorsCheckpoint(directory: dir)
        try ModelFiles.install(model.parameters, from: file, family: family, source: mixtralNames(experts: c.moe!.numExperts))
        return model
    }

    static func mixtralConfig(_ j: [String: Any], path: String, family: String) throws -> TransformerConfig {
        let f = try int(j, "intermediate_size", path)
        var moe = MoEConfig(
            hiddenSize: try int(j, "hidden_size", path), expertHiddenSize: f, numExperts: try int(j, "num_local_experts", path),
            expertsPerToken: try int(j, "num_experts_per_tok", path))
        moe.normalizeTopK = true
        moe.auxLossCoef = j["router_aux_loss_coef"] as? Double ?? 0
        var c = try baseConfig(j, path: path, modelType: family, intermediate: f, moe: moe)
        if family == "phimoe" {
            moe.router = .sparseMixer
            moe.sparseMixerEps = j["router_jitter_noise"] as? Double ?? 0.01
            moe.jitterEps = j["input_jitter_noise"] as? Double ?? 0
            c.moe = moe
            c.normKind = .layer
            c.attentionBias = j["attention_bias"] as? Bool ?? false
            c.attentionOutputBias = c.attentionBias
            c.lmHeadBias = j["lm_head_bias"] as? Bool ?? false
        }
        return c
    }

    /// Mixtral's file names for the model's parameters (also what `export` writes).
    static func mixtralNames(experts: Int) -> (String) -> ModelFiles.TensorSource {
        { name in
            if let s = stackedExperts(name, count: experts, block: ".block_sparse_moe.experts", gateUp: ["w1", "w3"], down: "w2") { return s }
            if name.hasPrefix("lm_head.") { return .tensor(name) }
            return .tensor("model." + name.replacingOccurrences(of: ".mlp.gate.", with: ".block_sparse_moe.gate."))
        }
    }

    /// The Qwen / OLMoE shape: SwiGLU experts (`mlp.experts.N.gate_proj|up_proj|down_proj`), router
    /// `mlp.gate`, softmax top-k (renormalized when `norm_topk_prob`), MoE every `decoder_sparse_step` layers.
    /// - qwen2_moe: q/k/v biases and a shared expert scaled by sigmoid(`shared_expert_gate`);
    /// - qwen3_moe: RMSNorm of each query and key head before RoPE;
    /// - olmoe: RMSNorm of the whole query and key projections before RoPE;
    /// - flex_olmo: as olmoe, with OLMo 2's norms on the attention and FFN outputs instead of their inputs.
    static func loadQwenLike(_ dir: String, config j: [String: Any], family: String) throws -> MoETransformer<Float> {
        let path = dir + "/config.json"
        let c = try qwenConfig(j, path: path, family: family)
        let model = try build(c, path: path)
        let file = try SafetensorsCheckpoint(directory: dir)
        try ModelFiles.install(model.parameters, from: file, family: family, source: qwenNames(experts: c.moe!.numExperts))
        return model
    }

    static func qwenConfig(_ j: [String: Any], path: String, family: String) throws -> TransformerConfig {
        if let only = j["mlp_only_layers"] as? [Int], !only.isEmpty {
            throw LoadError(description: "\(path): mlp_only_layers \(only) is not supported yet; only decoder_sparse_step placement is")
        }
        var moe = MoEConfig(
            // OLMoE's experts use intermediate_size; Qwen's have their own moe_intermediate_size.
            hiddenSize: try int(j, "hidden_size", path),
            expertHiddenSize: try j["moe_intermediate_size"] == nil ? int(j, "intermediate_size", path) : int(j, "moe_intermediate_size", path),
            numExperts: try j["num_experts"] == nil ? int(j, "num_local_experts", path) : int(j, "num_experts", path),
            expertsPerToken: try int(j, "num_experts_per_tok", path))
        moe.normalizeTopK = j["norm_topk_prob"] as? Bool ?? false
        moe.auxLossCoef = j["router_aux_loss_coef"] as? Double ?? 0
        moe.sharedExpertHiddenSize = family == "qwen2_moe" ? j["shared_expert_intermediate_size"] as? Int ?? 0 : 0
        moe.sharedExpertGate = moe.sharedExpertHiddenSize > 0
        var c = try baseConfig(j, path: path, modelType: family, intermediate: try int(j, "intermediate_size", path), moe: moe)
        c.attentionBias = family == "qwen2_moe" ? (j["qkv_bias"] as? Bool ?? true) : (j["attention_bias"] as? Bool ?? false)
        c.qkNorm = family == "qwen3_moe" ? "per_head" : family == "olmoe" || family == "flex_olmo" ? "full" : nil
        c.postNorms = family == "flex_olmo"
        let step = j["decoder_sparse_step"] as? Int ?? 1
        c.moeEvery = step
        c.firstDenseLayers = step - 1
        return c
    }

    /// The Qwen / OLMoE file names for the model's parameters (also what `export` writes for qwen2_moe).
    static func qwenNames(experts: Int) -> (String) -> ModelFiles.TensorSource {
        { name in
            if name == "lm_head.weight" { return .tensor(name) }
            if let s = stackedExperts(name, count: experts, block: ".mlp.experts") { return s }
            if let s = sharedExpert(name, block: ".mlp.shared_expert") { return s }
            return .tensor("model." + name)
        }
    }

    /// Per-expert file tensors stacked into the model's expert bank: the model path
    /// `<layer>.mlp.experts.gate_up_proj` (or `down_proj`) reads `<prefix><layer><block>.<e>.<part>.weight`
    /// for every expert e, gate and up concatenated. Returns nil for other paths.
    static func stackedExperts(
        _ name: String, count: Int, block: String, gateUp: [String] = ["gate_proj", "up_proj"], down: String = "down_proj"
    ) -> ModelFiles.TensorSource? {
        guard let r = name.range(of: ".mlp.experts.") else { return nil }
        let head = "model." + name[..<r.lowerBound] + block + "."
        let parts = name.hasSuffix("gate_up_proj") ? gateUp : [down]
        return .stacked((0..<count).map { e in parts.map { head + "\(e).\($0).weight" } })
    }

    /// A single shared expert stored as a plain SwiGLU MLP under `<layer><block>.{gate,up,down}_proj`.
    static func sharedExpert(_ name: String, block: String) -> ModelFiles.TensorSource? {
        guard let r = name.range(of: ".mlp.shared_expert.") else { return nil }
        let head = "model." + name[..<r.lowerBound] + block + "."
        let parts = name.hasSuffix("gate_up_proj") ? ["gate_proj", "up_proj"] : ["down_proj"]
        return .stacked([parts.map { head + $0 + ".weight" }])
    }

    static func ropeTheta(_ j: [String: Any], path: String) throws -> Double {
        if let rp = j["rope_parameters"] as? [String: Any], let type = rp["rope_type"] as? String, type != "default" {
            throw LoadError(description: "\(path): rope_type \"\(type)\" is not supported yet; only default RoPE is")
        }
        if let rs = j["rope_scaling"] as? [String: Any], let type = (rs["rope_type"] ?? rs["type"]) as? String, type != "default" {
            throw LoadError(description: "\(path): rope_scaling \"\(type)\" is not supported yet; only default RoPE is")
        }
        return number((j["rope_parameters"] as? [String: Any])?["rope_theta"] ?? j["rope_theta"]) ?? 10000
    }

    /// The DeepSeek line and the families that took its router (`DeepseekV2/V3`, `Glm4Moe`, `Glm4MoeLite`,
    /// `Dots1`, `SolarOpen`, `MiniMaxM2` ...ForCausalLM): the first `first_k_dense_replace` layers dense, then
    /// routed experts plus `n_shared_experts` always-on ones.
    /// - deepseek_v2: MLA; softmax scores, top-k `greedy` or `group_limited_greedy` (groups ranked by their
    ///   best expert), weights never renormalized, times `routed_scaling_factor`.
    /// - deepseek_v3, glm4_moe_lite: MLA; sigmoid scores plus `e_score_correction_bias` for selection only,
    ///   groups ranked by the sum of their best two, weights renormalized when `norm_topk_prob`, then scaled.
    /// - glm4_moe (partial rotary, optional per-head q/k norm), dots1 (per-head q/k norm), solar_open:
    ///   grouped-query attention with the V3 router.
    /// - minimax_m2: grouped-query attention with q/k RMSNorm over the whole projection, Mixtral's tensor
    ///   names, sigmoid + bias selection, weights always renormalized, no shared expert.
    static func loadDeepSeek(_ dir: String, config j: [String: Any], family: String) throws -> MoETransformer<Float> {
        let path = dir + "/config.json"
        let v2 = family == "deepseek_v2", minimax = family == "minimax_m2", exaone = family == "exaone_moe"
        let usesMLA = ["deepseek_v2", "deepseek_v3", "glm4_moe_lite"].contains(family)
        let experts = try int(j, minimax ? "num_local_experts" : exaone ? "num_experts" : "n_routed_experts", path)
        let width = minimax ? try int(j, "intermediate_size", path) : try int(j, "moe_intermediate_size", path)
        var moe = MoEConfig(
            hiddenSize: try int(j, "hidden_size", path), expertHiddenSize: width, numExperts: experts,
            expertsPerToken: try int(j, "num_experts_per_tok", path), router: .grouped)
        let method = j["topk_method"] as? String ?? (v2 ? "greedy" : "noaux_tc")
        guard v2 ? ["greedy", "group_limited_greedy"].contains(method) : method == "noaux_tc" else {
            throw LoadError(description: "\(path): topk_method \"\(method)\" is not one \(family) uses; expected \(v2 ? "greedy or group_limited_greedy" : "noaux_tc")")
        }
        let grouped = !v2 || method == "group_limited_greedy"
        moe.scoreFunction = v2 ? .softmax : .sigmoid
        moe.selectionBias = !v2
        moe.normalizeTopK = minimax || (!v2 && (j["norm_topk_prob"] as? Bool ?? false))
        moe.numGroups = grouped && !minimax ? (j["n_group"] as? Int ?? 1) : 1
        moe.topKGroups = grouped && !minimax ? (j["topk_group"] as? Int ?? 1) : 1
        moe.groupScore = v2 ? .max : .top2Sum
        moe.routedScalingFactor = double(j, "routed_scaling_factor", default: 1)
        moe.sharedExpertHiddenSize = (j[exaone ? "num_shared_experts" : "n_shared_experts"] as? Int ?? 0) * moe.expertHiddenSize
        // Solar Open has no dense layers and so no intermediate_size.
        let denseWidth = j["intermediate_size"] == nil && family == "solar_open" ? width : try int(j, "intermediate_size", path)
        var c = try baseConfig(j, path: path, modelType: family, intermediate: denseWidth, moe: moe)
        c.attentionBias = j["attention_bias"] as? Bool ?? false
        c.firstDenseLayers = try denseLayerPrefix(j, path: path) ?? j["first_k_dense_replace"] as? Int ?? 0
        c.moeEvery = j["moe_layer_freq"] as? Int ?? 1
        if usesMLA {
            c.mla = LatentAttentionConfig(
                qLoraRank: j["q_lora_rank"] as? Int, kvLoraRank: try int(j, "kv_lora_rank", path),
                nopeDim: try int(j, "qk_nope_head_dim", path), ropeDim: try int(j, "qk_rope_head_dim", path),
                valueDim: try int(j, "v_head_dim", path), ropeInterleave: v2 ? true : (j["rope_interleave"] as? Bool ?? true))
            c.headDim = c.mla!.ropeDim
        } else {
            c.qkNorm = minimax ? "full" : family == "dots1" || exaone || (family == "glm4_moe" && j["use_qk_norm"] as? Bool ?? false) ? "per_head" : nil
            if exaone { try slidingLayers(j, path: path, into: &c, nopeOnFullLayers: true) }
            let factor = (j["rope_parameters"] as? [String: Any])?["partial_rotary_factor"] ?? j["partial_rotary_factor"]
            if let f = number(factor), f != 1 { c.rotaryDim = Int(Double(c.headDim) * f) }
            if let r = j["rotary_dim"] as? Int, r != c.headDim { c.rotaryDim = r }
        }
        let model = try build(c, path: path)
        let file = try SafetensorsCheckpoint(directory: dir)
        try ModelFiles.install(model.parameters + model.buffers, from: file, family: family,
                               source: deepSeekNames(experts: experts, minimax: minimax, biasInGate: !exaone))
        return model
    }

    /// The DeepSeek line's file names for the model's parameters and buffers (also what `export` writes for
    /// glm4_moe); MiniMax-M2 keeps Mixtral's.
    static func deepSeekNames(experts: Int, minimax: Bool, biasInGate: Bool = true) -> (String) -> ModelFiles.TensorSource {
        { name in
            if name == "lm_head.weight" { return .tensor(name) }
            if minimax {
                if let s = stackedExperts(name, count: experts, block: ".block_sparse_moe.experts", gateUp: ["w1", "w3"], down: "w2") { return s }
                return .tensor("model." + name.replacingOccurrences(of: ".mlp.", with: ".block_sparse_moe."))
            }
            if let s = stackedExperts(name, count: experts, block: ".mlp.experts") { return s }
            if let s = sharedExpert(name, block: ".mlp.shared_experts") { return s }
            guard biasInGate else { return .tensor("model." + name) }
            return .tensor("model." + name.replacingOccurrences(of: ".mlp.e_score_correction_bias", with: ".mlp.gate.e_score_correction_bias"))
        }
    }

    /// `layer_types` with "sliding_attention" entries: those layers attend over the last `sliding_window` keys.
    /// With `nopeOnFullLayers` (EXAONE), the other layers use no rotary embedding when there is a window.
    static func slidingLayers(_ j: [String: Any], path: String, into c: inout TransformerConfig, nopeOnFullLayers: Bool) throws {
        guard let types = j["layer_types"] as? [String] else { return }
        guard types.count == c.numLayers else {
            throw LoadError(description: "\(path): layer_types has \(types.count) entries for \(c.numLayers) layers; give one per layer")
        }
        if let bad = types.first(where: { $0 != "sliding_attention" && $0 != "full_attention" }) {
            throw LoadError(description: "\(path): layer type \"\(bad)\" is not supported yet; only sliding_attention and full_attention are")
        }
        guard let window = j["sliding_window"] as? Int, types.contains("sliding_attention") else { return }
        c.slidingWindow = window
        c.slidingLayers = types.indices.filter { types[$0] == "sliding_attention" }
        if nopeOnFullLayers { c.nopeLayers = types.indices.filter { types[$0] == "full_attention" } }
    }

    /// `mlp_layer_types` (["dense", ..., "sparse", ...]) as a count of leading dense layers; other patterns
    /// are refused.
    static func denseLayerPrefix(_ j: [String: Any], path: String) throws -> Int? {
        guard let types = j["mlp_layer_types"] as? [String] else { return nil }
        let k = types.prefix { $0 == "dense" }.count
        guard types.dropFirst(k).allSatisfy({ $0 == "sparse" }) else {
            throw LoadError(description: "\(path): mlp_layer_types \(types) is not supported yet; only dense layers first, then sparse ones")
        }
        return k
    }

    /// A JSON number as Double (JSONSerialization gives Int for integral literals).
    static func number(_ v: Any?) -> Double? { (v as? Double) ?? (v as? Int).map(Double.init) }

    static func double(_ j: [String: Any], _ k: String, default d: Double) -> Double { number(j[k]) ?? d }

    /// Granite MoE (`GraniteMoeForCausalLM`, `GraniteMoeSharedForCausalLM`): Llama attention scaled by
    /// `attention_multiplier`, embeddings times `embedding_multiplier`, block outputs times
    /// `residual_multiplier`, logits divided by `logits_scaling`; experts stored stacked (`input_linear`
    /// [E, 2F, D] gate then up, `output_linear` [E, D, F]); top-k on the logits, softmax over the k.
    /// granitemoeshared adds an always-on `shared_mlp` of width `shared_intermediate_size`.
    static func loadGranite(_ dir: String, config j: [String: Any], family: String) throws -> MoETransformer<Float> {
        let path = dir + "/config.json"
        let f = try int(j, "intermediate_size", path)
        var moe = MoEConfig(
            hiddenSize: try int(j, "hidden_size", path), expertHiddenSize: f, numExperts: try int(j, "num_local_experts", path),
            expertsPerToken: try int(j, "num_experts_per_tok", path), router: .topKSoftmax)
        moe.auxLossCoef = j["router_aux_loss_coef"] as? Double ?? 0
        moe.sharedExpertHiddenSize = family == "granitemoeshared" ? j["shared_intermediate_size"] as? Int ?? 0 : 0
        var c = try baseConfig(j, path: path, modelType: family, intermediate: f, moe: moe)
        c.attentionBias = j["attention_bias"] as? Bool ?? false
        c.attentionOutputBias = c.attentionBias
        c.attentionScale = double(j, "attention_multiplier", default: 1)
        c.embeddingMultiplier = double(j, "embedding_multiplier", default: 1)
        c.residualMultiplier = double(j, "residual_multiplier", default: 1)
        c.logitsScaling = double(j, "logits_scaling", default: 1)
        let model = try build(c, path: path)
        let file = try SafetensorsCheckpoint(directory: dir)
        try ModelFiles.install(model.parameters, from: file, family: family) { name in
            if name.hasPrefix("lm_head.") { return .tensor(name) }
            let m = "model." + name
            if m.hasSuffix(".mlp.experts.gate_up_proj") { return .tensor(m.replacingOccurrences(of: ".mlp.experts.gate_up_proj", with: ".block_sparse_moe.input_linear.weight")) }
            if m.hasSuffix(".mlp.experts.down_proj") { return .tensor(m.replacingOccurrences(of: ".mlp.experts.down_proj", with: ".block_sparse_moe.output_linear.weight")) }
            if m.hasSuffix(".mlp.gate.weight") { return .tensor(m.replacingOccurrences(of: ".mlp.gate.weight", with: ".block_sparse_moe.router.layer.weight")) }
            if m.hasSuffix(".mlp.shared_expert.gate_up_proj") { return .stacked([[m.replacingOccurrences(of: ".mlp.shared_expert.gate_up_proj", with: ".shared_mlp.input_linear.weight")]]) }
            if m.hasSuffix(".mlp.shared_expert.down_proj") { return .stacked([[m.replacingOccurrences(of: ".mlp.shared_expert.down_proj", with: ".shared_mlp.output_linear.weight")]]) }
            return .tensor(m)
        }
        return model
    }

    /// DBRX (`DbrxForCausalLM`): its own config layout (`d_model`, `n_heads`, `attn_config`, `ffn_config`),
    /// LayerNorm without shift, one fused `Wqkv` clamped to +-`clip_qkv`, experts stored as [E F, D] slabs
    /// (`w1` gate, `v1` up, `w2` down transposed), softmax top-k weights divided by their p-norm
    /// (`moe_normalize_expert_weights`; p = 1 supported).
    static func loadDBRX(_ dir: String, config j: [String: Any]) throws -> MoETransformer<Float> {
        let path = dir + "/config.json"
        let attn = j["attn_config"] as? [String: Any] ?? [:], ffn = j["ffn_config"] as? [String: Any] ?? [:]
        let d = try int(j, "d_model", path), heads = try int(j, "n_heads", path)
        let f = try int(ffn, "ffn_hidden_size", path + " ffn_config"), e = try int(ffn, "moe_num_experts", path + " ffn_config")
        var moe = MoEConfig(hiddenSize: d, expertHiddenSize: f, numExperts: e, expertsPerToken: try int(ffn, "moe_top_k", path + " ffn_config"))
        let p = number(ffn["moe_normalize_expert_weights"])
        guard p == nil || p == 1 else {
            throw LoadError(description: "\(path): moe_normalize_expert_weights \(p!) is not supported yet; only 1 (sum) or null is")
        }
        moe.normalizeTopK = p == 1
        if let act = (ffn["ffn_act_fn"] as? [String: Any])?["name"] as? String, act != "silu" {
            throw LoadError(description: "\(path): ffn_act_fn \"\(act)\" is not supported; DBRX experts here are SwiGLU (silu)")
        }
        let kvHeads = attn["kv_n_heads"] as? Int ?? heads
        var c = TransformerConfig(
            vocabSize: try int(j, "vocab_size", path), hiddenSize: d, numLayers: try int(j, "n_layers", path), numHeads: heads,
            numKVHeads: kvHeads, headDim: d / heads, intermediateSize: f, moe: moe)
        c.modelType = "dbrx"
        // transformers builds the rotary table from the top-level rope_parameters when present (attn_config's
        // rope_theta is then unused), so the same precedence here.
        c.ropeTheta = j["rope_parameters"] != nil ? try ropeTheta(j, path: path) : double(attn, "rope_theta", default: 10000)
        c.clipQKV = number(attn["clip_qkv"])
        c.normKind = .layerNoBias
        c.rmsNormEps = 1e-5
        c.tieWordEmbeddings = j["tie_word_embeddings"] as? Bool ?? false
        let model = try build(c, path: path)
        let file = try SafetensorsCheckpoint(directory: dir)
        let qRows = heads * (d / heads), kvRows = kvHeads * (d / heads)
        try ModelFiles.install(model.parameters, from: file, family: "dbrx") { name in
            if name.hasPrefix("lm_head.") { return .tensor(name) }
            if name == "embed_tokens.weight" { return .tensor("transformer.wte.weight") }
            if name == "norm.weight" { return .tensor("transformer.norm_f.weight") }
            let parts = name.split(separator: ".", maxSplits: 2).map(String.init)  // layers, i, rest
            let block = "transformer.blocks.\(parts[1])."
            switch parts[2] {
            case "input_layernorm.weight": return .tensor(block + "norm_attn_norm.norm_1.weight")
            case "post_attention_layernorm.weight": return .tensor(block + "norm_attn_norm.norm_2.weight")
            case "self_attn.o_proj.weight": return .tensor(block + "norm_attn_norm.attn.out_proj.weight")
            case "self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight":
                let which = ["q": 0, "k": 1, "v": 2][String(parts[2].dropFirst(10).prefix(1))]!
                return .derived([block + "norm_attn_norm.attn.Wqkv.weight"]) { t in t[0].split(sizes: [qRows, kvRows, kvRows], axis: 0)[which] }
            case "mlp.gate.weight": return .tensor(block + "ffn.router.layer.weight")
            case "mlp.experts.gate_up_proj":
                return .derived([block + "ffn.experts.mlp.w1", block + "ffn.experts.mlp.v1"]) { t in
                    Tensor.concat([t[0].reshaped([e, f, d]), t[1].reshaped([e, f, d])], axis: 1)
                }
            case "mlp.experts.down_proj":
                return .derived([block + "ffn.experts.mlp.w2"]) { t in t[0].reshaped([e, f, d]).transposed(1, 2).copy() }
            default: return .tensor(block + parts[2])
            }
        }
        return model
    }

    /// ERNIE 4.5 MoE (`Ernie4_5_MoeForCausalLM`): Llama attention with adjacent-pair RoPE, MoE on layers
    /// `moe_layer_start_index`...`moe_layer_end_index` every `moe_layer_interval`; softmax scores, selection by
    /// scores plus `moe_statics.e_score_correction_bias`, weights renormalized; shared experts always on.
    static func loadErnie(_ dir: String, config j: [String: Any]) throws -> MoETransformer<Float> {
        let path = dir + "/config.json"
        let layers = try int(j, "num_hidden_layers", path)
        let experts = try int(j, "moe_num_experts", path), width = try int(j, "moe_intermediate_size", path)
        var moe = MoEConfig(
            hiddenSize: try int(j, "hidden_size", path), expertHiddenSize: width, numExperts: experts,
            expertsPerToken: try int(j, "moe_k", path), router: .grouped)
        moe.scoreFunction = .softmax
        moe.selectionBias = true
        moe.normalizeTopK = true
        moe.groupScore = .max
        moe.sharedExpertHiddenSize = (j["moe_num_shared_experts"] as? Int ?? 0) * width
        moe.auxLossCoef = j["router_aux_loss_coef"] as? Double ?? 0
        if j["use_bias"] as? Bool == true {
            throw LoadError(description: "\(path): use_bias true is not supported yet; only bias-free ERNIE 4.5 checkpoints are")
        }
        var c = try baseConfig(j, path: path, modelType: "ernie4_5_moe", intermediate: try int(j, "intermediate_size", path), moe: moe)
        c.interleavedRope = true
        let start = j["moe_layer_start_index"] as? Int ?? 0, end = j["moe_layer_end_index"] as? Int ?? layers - 1
        let interval = j["moe_layer_interval"] as? Int ?? 1
        guard interval == 1, end >= layers - 1 || end < 0 else {
            throw LoadError(description: "\(path): MoE layers \(start)...\(end) every \(interval) are not supported yet; only a dense prefix then MoE to the last layer")
        }
        c.firstDenseLayers = start
        let model = try build(c, path: path)
        let file = try SafetensorsCheckpoint(directory: dir)
        try ModelFiles.install(model.parameters + model.buffers, from: file, family: "ernie4_5_moe") { name in
            if name == "lm_head.weight" { return .tensor(name) }
            if let s = stackedExperts(name, count: experts, block: ".mlp.experts") { return s }
            if let s = sharedExpert(name, block: ".mlp.shared_experts") { return s }
            if name.hasSuffix(".mlp.e_score_correction_bias") {
                let file = "model." + name.replacingOccurrences(of: ".mlp.e_score_correction_bias", with: ".mlp.moe_statics.e_score_correction_bias")
                return .derived([file]) { t in t[0].reshaped([experts]) }
            }
            return .tensor("model." + name)
        }
        return model
    }

    /// HunYuan MoE v1 (`HunYuanMoEV1ForCausalLM`): Llama attention with per-head q/k RMSNorm applied after
    /// RoPE (`query_layernorm`, `key_layernorm`), Mixtral routing (softmax top-`moe_topk`, renormalized) under
    /// `mlp.gate.wg`, and an ungated shared MLP of the experts' width beside them.
    static func loadHunYuan(_ dir: String, config j: [String: Any]) throws -> MoETransformer<Float> {
        let path = dir + "/config.json"
        guard let k = j["moe_topk"] as? Int else {
            throw LoadError(description: "\(path): moe_topk must be one integer; per-layer lists are not supported yet")
        }
        if let shared = j["num_shared_expert"] as? Int, shared != 1 {
            throw LoadError(description: "\(path): num_shared_expert \(shared) is not supported yet; only 1")
        }
        let width = try int(j, "intermediate_size", path), experts = try int(j, "num_experts", path)
        var moe = MoEConfig(hiddenSize: try int(j, "hidden_size", path), expertHiddenSize: width, numExperts: experts, expertsPerToken: k)
        moe.normalizeTopK = true
        moe.sharedExpertHiddenSize = width
        moe.auxLossCoef = j["router_aux_loss_coef"] as? Double ?? 0
        var c = try baseConfig(j, path: path, modelType: "hunyuan_v1_moe", intermediate: width, moe: moe)
        c.attentionBias = j["attention_bias"] as? Bool ?? false
        c.attentionOutputBias = c.attentionBias
        c.qkNorm = "per_head"
        c.qkNormAfterRope = true
        let model = try build(c, path: path)
        let file = try SafetensorsCheckpoint(directory: dir)
        try ModelFiles.install(model.parameters, from: file, family: "hunyuan_v1_moe") { name in
            if name == "lm_head.weight" { return .tensor(name) }
            if let s = stackedExperts(name, count: experts, block: ".mlp.experts") { return s }
            if let s = sharedExpert(name, block: ".mlp.shared_mlp") { return s }
            return .tensor("model." + name.replacingOccurrences(of: ".mlp.gate.weight", with: ".mlp.gate.wg.weight")
                .replacingOccurrences(of: ".self_attn.q_norm.", with: ".self_attn.query_layernorm.")
                .replacingOccurrences(of: ".self_attn.k_norm.", with: ".self_attn.key_layernorm."))
        }
        return model
    }
}
