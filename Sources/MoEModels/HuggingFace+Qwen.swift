import Foundation

extension HuggingFace {
    /// The Qwen / OLMoE shape: SwiGLU experts (`mlp.experts.N.gate_proj|up_proj|down_proj`), router
    /// `mlp.gate`, softmax top-k (renormalized when `norm_topk_prob`), MoE every `decoder_sparse_step` layers.
    /// - qwen2_moe: q/k/v biases and a shared expert scaled by sigmoid(`shared_expert_gate`);
    /// - qwen3_moe: RMSNorm of each query and key head before RoPE;
    /// - olmoe: RMSNorm of the whole query and key projections before RoPE;
    /// - flex_olmo: as olmoe, with OLMo 2's norms on the attention and FFN outputs instead of their inputs.
    static func loadQwenLike(_ dir: String, config j: [String: Any], family: String) throws -> MoETransformer<Float> {
        let c = try qwenConfig(j, path: dir + "/config.json", family: family)
        return try buildAndInstall(c, dir: dir, family: family, names: qwenNames(experts: c.moe?.numExperts ?? 0))
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
}
