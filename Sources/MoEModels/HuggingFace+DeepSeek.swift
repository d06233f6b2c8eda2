import Foundation

extension HuggingFace {
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
}
