import Foundation

extension HuggingFace {
    /// Mixtral (`MixtralForCausalLM`): Llama attention, SwiGLU experts (`w1` gate, `w3` up, `w2` down) under
    /// `block_sparse_moe`, softmax top-k routing with renormalized weights.
    /// PhiMoE (`PhimoeForCausalLM`): the same layout with LayerNorm (weight and bias) in place of RMSNorm,
    /// optional biases on q/k/v/o and the head, and SparseMixer routing (top-2, margin `router_jitter_noise`).
    static func loadMixtral(_ dir: String, config j: [String: Any], family: String) throws -> MoETransformer<Float> {
        let c = try mixtralConfig(j, path: dir + "/config.json", family: family)
        return try buildAndInstall(c, dir: dir, family: family, names: mixtralNames(experts: c.moe?.numExperts ?? 0))
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
}
