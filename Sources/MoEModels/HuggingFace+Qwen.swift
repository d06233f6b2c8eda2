import Foundation

extension HuggingFace {
    /// The Qwen / OLMoE shape: SwiGLU experts (`mlp.experts.N.gate_proj|up_proj|down_proj`), router
    /// `mlp.gate`, softmax top-k (renormalized when `norm_topk_prob`), MoE every `decoder_sparse_step` layers.
    /// - qwen2_moe: q/k/v biases and a shared expert scaled by sigmoid(`shared_expert_gate`);
    /// - qwen3_moe: RMSNorm of each query and key head before RoPE;
    /// - olmoe: RMSNorm of the whole query and key projections before RoPE;
    /// - flex_olmo: as olmoe, with OLMo 2's norms on the attention and FFN outputs instead of their inputs.
    static func loadQwenLike(_ dir: String, config j: ConfigReader, family: String) throws -> MoETransformer<Float> {
        let c = try qwenConfig(j, family: family)
        return try buildAndInstall(c, dir: dir, family: family, names: qwenNames(experts: c.moe?.numExperts ?? 0))
    }

    static func qwenConfig(_ j: ConfigReader, family: String) throws -> TransformerConfig {
        if let only = try j.ints("mlp_only_layers"), !only.isEmpty {
            throw LoadError(description: "\(j.path): mlp_only_layers \(only) is not supported yet; only decoder_sparse_step placement is")
        }
        var moe = MoEConfig(
            // OLMoE's experts use intermediate_size; Qwen's have their own moe_intermediate_size.
            hiddenSize: try j.int("hidden_size"),
            expertHiddenSize: try j.int(j["moe_intermediate_size"] == nil ? "intermediate_size" : "moe_intermediate_size"),
            numExperts: try j.int(j["num_experts"] == nil ? "num_local_experts" : "num_experts"),
            expertsPerToken: try j.int("num_experts_per_tok"))
        moe.normalizeTopK = try j.bool("norm_topk_prob", default: false)
        moe.auxLossCoef = try j.double("router_aux_loss_coef", default: 0)
        moe.sharedExpertHiddenSize = family == "qwen2_moe" ? try j.int("shared_expert_intermediate_size", default: 0, min: 0) : 0
        moe.sharedExpertGate = moe.sharedExpertHiddenSize > 0
        var c = try baseConfig(j, modelType: family, intermediate: try j.int("intermediate_size"), moe: moe)
        c.attentionBias = family == "qwen2_moe" ? (try j.bool("qkv_bias", default: true)) : (try j.bool("attention_bias", default: false))
        c.qkNorm = family == "qwen3_moe" ? "per_head" : family == "olmoe" || family == "flex_olmo" ? "full" : nil
        c.postNorms = family == "flex_olmo"
        let step = try j.int("decoder_sparse_step", default: 1)
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
