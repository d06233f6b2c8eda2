import Foundation

extension HuggingFace {
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
