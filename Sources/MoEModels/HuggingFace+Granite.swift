import Foundation

extension HuggingFace {
    /// Granite MoE (`GraniteMoeForCausalLM`, `GraniteMoeSharedForCausalLM`): Llama attention scaled by
    /// `attention_multiplier`, embeddings times `embedding_multiplier`, block outputs times
    /// `residual_multiplier`, logits divided by `logits_scaling`; experts stored stacked (`input_linear`
    /// [E, 2F, D] gate then up, `output_linear` [E, D, F]); top-k on the logits, softmax over the k.
    /// granitemoeshared adds an always-on `shared_mlp` of width `shared_intermediate_size`.
    static func loadGranite(_ dir: String, config j: ConfigReader, family: String) throws -> MoETransformer<Float> {
        let f = try j.int("intermediate_size")
        var moe = MoEConfig(
            hiddenSize: try j.int("hidden_size"), expertHiddenSize: f, numExperts: try j.int("num_local_experts"),
            expertsPerToken: try j.int("num_experts_per_tok"), router: .topKSoftmax)
        moe.auxLossCoef = try j.double("router_aux_loss_coef", default: 0)
        moe.sharedExpertHiddenSize = family == "granitemoeshared" ? try j.int("shared_intermediate_size", default: 0, min: 0) : 0
        var c = try baseConfig(j, modelType: family, intermediate: f, moe: moe)
        c.attentionBias = try j.bool("attention_bias", default: false)
        c.attentionOutputBias = c.attentionBias
        c.attentionScale = try j.double("attention_multiplier", default: 1)
        c.embeddingMultiplier = try j.double("embedding_multiplier", default: 1)
        c.residualMultiplier = try j.double("residual_multiplier", default: 1)
        c.logitsScaling = try j.double("logits_scaling", default: 1)
        return try buildAndInstall(c, dir: dir, family: family) { name in
            if name.hasPrefix("lm_head.") { return .tensor(name) }
            let m = "model." + name
            if m.hasSuffix(".mlp.experts.gate_up_proj") { return .tensor(m.replacingOccurrences(of: ".mlp.experts.gate_up_proj", with: ".block_sparse_moe.input_linear.weight")) }
            if m.hasSuffix(".mlp.experts.down_proj") { return .tensor(m.replacingOccurrences(of: ".mlp.experts.down_proj", with: ".block_sparse_moe.output_linear.weight")) }
            if m.hasSuffix(".mlp.gate.weight") { return .tensor(m.replacingOccurrences(of: ".mlp.gate.weight", with: ".block_sparse_moe.router.layer.weight")) }
            if m.hasSuffix(".mlp.shared_expert.gate_up_proj") { return .stacked([[m.replacingOccurrences(of: ".mlp.shared_expert.gate_up_proj", with: ".shared_mlp.input_linear.weight")]]) }
            if m.hasSuffix(".mlp.shared_expert.down_proj") { return .stacked([[m.replacingOccurrences(of: ".mlp.shared_expert.down_proj", with: ".shared_mlp.output_linear.weight")]]) }
            return .tensor(m)
        }
    }
}
