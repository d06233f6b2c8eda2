import Foundation

extension HuggingFace {
    /// Mixtral (`MixtralForCausalLM`): Llama attention, SwiGLU experts (`w1` gate, `w3` up, `w2` down) under
    /// `block_sparse_moe`, softmax top-k routing with renormalized weights.
    /// PhiMoE (`PhimoeForCausalLM`): the same layout with LayerNorm (weight and bias) in place of RMSNorm,
    /// optional biases on q/k/v/o and the head, and SparseMixer routing (top-2, margin `router_jitter_noise`).
    static func loadMixtral(_ dir: String, config j: ConfigReader, family: String) throws -> MoETransformer<Float> {
        let c = try mixtralConfig(j, family: family)
        return try buildAndInstall(c, dir: dir, family: family, names: mixtralNames(experts: c.moe?.numExperts ?? 0))
    }

    static func mixtralConfig(_ j: ConfigReader, family: String) throws -> TransformerConfig {
        let f = try j.int("intermediate_size")
        var moe = MoEConfig(
            hiddenSize: try j.int("hidden_size"), expertHiddenSize: f, numExperts: try j.int("num_local_experts"),
            expertsPerToken: try j.int("num_experts_per_tok"))
        moe.normalizeTopK = true
        moe.auxLossCoef = try j.double("router_aux_loss_coef", default: 0)
        var c = try baseConfig(j, modelType: family, intermediate: f, moe: moe)
        if family == "phimoe" {
            moe.router = .sparseMixer
            moe.sparseMixerEps = try j.double("router_jitter_noise", default: 0.01)
            moe.jitterEps = try j.double("input_jitter_noise", default: 0)
            c.moe = moe
            c.normKind = .layer
            c.attentionBias = try j.bool("attention_bias", default: false)
            c.attentionOutputBias = c.attentionBias
            c.lmHeadBias = try j.bool("lm_head_bias", default: false)
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
