import Foundation

extension HuggingFace {
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
}
