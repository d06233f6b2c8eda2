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
    static func loadDeepSeek(_ dir: String, config j: ConfigReader, family: String) throws -> MoETransformer<Float> {
        let path = j.path
        let v2 = family == "deepseek_v2", minimax = family == "minimax_m2", exaone = family == "exaone_moe"
        let usesMLA = ["deepseek_v2", "deepseek_v3", "glm4_moe_lite"].contains(family)
        let experts = try j.int(minimax ? "num_local_experts" : exaone ? "num_experts" : "n_routed_experts")
        let width = try j.int(minimax ? "intermediate_size" : "moe_intermediate_size")
        var moe = MoEConfig(
            hiddenSize: try j.int("hidden_size"), expertHiddenSize: width, numExperts: experts,
            expertsPerToken: try j.int("num_experts_per_tok"), router: .grouped)
        let method = try j.string("topk_method") ?? (v2 ? "greedy" : "noaux_tc")
        guard v2 ? ["greedy", "group_limited_greedy"].contains(method) : method == "noaux_tc" else {
            throw LoadError(description: "\(path): topk_method \"\(method)\" is not one \(family) uses; expected \(v2 ? "greedy or group_limited_greedy" : "noaux_tc")")
        }
        let grouped = !v2 || method == "group_limited_greedy"
        moe.scoreFunction = v2 ? .softmax : .sigmoid
        moe.selectionBias = !v2
        let normTopK = try j.bool("norm_topk_prob", default: false)
        moe.normalizeTopK = minimax || (!v2 && normTopK)
        moe.numGroups = grouped && !minimax ? (try j.int("n_group", default: 1)) : 1
        moe.topKGroups = grouped && !minimax ? (try j.int("topk_group", default: 1)) : 1
        moe.groupScore = v2 ? .max : .top2Sum
        moe.routedScalingFactor = try j.double("routed_scaling_factor", default: 1)
        moe.sharedExpertHiddenSize = try j.int(exaone ? "num_shared_experts" : "n_shared_experts", default: 0, min: 0, nullable: true) * min(moe.expertHiddenSize, MoEConfig.maxDimension)
        // Solar Open has no dense layers and so no intermediate_size.
        let denseWidth = j["intermediate_size"] == nil && family == "solar_open" ? width : try j.int("intermediate_size")
        var c = try baseConfig(j, modelType: family, intermediate: denseWidth, moe: moe)
        c.attentionBias = try j.bool("attention_bias", default: false)
        c.firstDenseLayers = try denseLayerPrefix(j) ?? j.int("first_k_dense_replace", default: 0, min: 0)
        c.moeEvery = try j.int("moe_layer_freq", default: 1)
        if usesMLA {
            c.mla = LatentAttentionConfig(
                qLoraRank: try j.optionalInt("q_lora_rank", nullable: true), kvLoraRank: try j.int("kv_lora_rank"),
                nopeDim: try j.int("qk_nope_head_dim", min: 0), ropeDim: try j.int("qk_rope_head_dim"),
                valueDim: try j.int("v_head_dim"), ropeInterleave: v2 ? true : (try j.bool("rope_interleave", default: true)))
            c.headDim = c.mla!.ropeDim
        } else {
            let useQKNorm = try j.bool("use_qk_norm", default: false)
            c.qkNorm = minimax ? "full" : family == "dots1" || exaone || (family == "glm4_moe" && useQKNorm) ? "per_head" : nil
            if exaone { try slidingLayers(j, into: &c, nopeOnFullLayers: true) }
            let rope = try j.object("rope_parameters")
            let factor = try rope?.optionalDouble("partial_rotary_factor") ?? j.optionalDouble("partial_rotary_factor")
            if let f = factor, f != 1 {
                guard f > 0 && f <= 1 else { throw LoadError(description: "\(path): partial_rotary_factor \(f) is outside (0, 1]; fix it") }
                c.rotaryDim = Int(Double(c.headDim) * f)
            }
            if let r = try j.optionalInt("rotary_dim"), r != c.headDim { c.rotaryDim = r }
        }
        return try buildAndInstall(c, dir: dir, family: family, names: deepSeekNames(experts: experts, minimax: minimax, biasInGate: !exaone))
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
