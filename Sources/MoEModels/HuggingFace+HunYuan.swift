import Foundation

extension HuggingFace {
    /// HunYuan MoE v1 (`HunYuanMoEV1ForCausalLM`): Llama attention with per-head q/k RMSNorm applied after
    /// RoPE (`query_layernorm`, `key_layernorm`), Mixtral routing (softmax top-`moe_topk`, renormalized) under
    /// `mlp.gate.wg`, and an ungated shared MLP of the experts' width beside them.
    static func loadHunYuan(_ dir: String, config j: ConfigReader) throws -> MoETransformer<Float> {
        let path = j.path
        guard j["moe_topk"] is NSNumber else {
            throw LoadError(description: "\(path): moe_topk must be one integer; per-layer lists are not supported yet")
        }
        let k = try j.int("moe_topk")
        if let shared = try j.optionalInt("num_shared_expert", min: 0), shared != 1 {
            throw LoadError(description: "\(path): num_shared_expert \(shared) is not supported yet; only 1")
        }
        let width = try j.int("intermediate_size"), experts = try j.int("num_experts")
        var moe = MoEConfig(hiddenSize: try j.int("hidden_size"), expertHiddenSize: width, numExperts: experts, expertsPerToken: k)
        moe.normalizeTopK = true
        moe.sharedExpertHiddenSize = width
        moe.auxLossCoef = try j.double("router_aux_loss_coef", default: 0)
        var c = try baseConfig(j, modelType: "hunyuan_v1_moe", intermediate: width, moe: moe)
        c.attentionBias = try j.bool("attention_bias", default: false)
        c.attentionOutputBias = c.attentionBias
        c.qkNorm = "per_head"
        c.qkNormAfterRope = true
        return try buildAndInstall(c, dir: dir, family: "hunyuan_v1_moe") { name in
            if name == "lm_head.weight" { return .tensor(name) }
            if let s = stackedExperts(name, count: experts, block: ".mlp.experts") { return s }
            if let s = sharedExpert(name, block: ".mlp.shared_mlp") { return s }
            return .tensor("model." + name.replacingOccurrences(of: ".mlp.gate.weight", with: ".mlp.gate.wg.weight")
                .replacingOccurrences(of: ".self_attn.q_norm.", with: ".self_attn.query_layernorm.")
                .replacingOccurrences(of: ".self_attn.k_norm.", with: ".self_attn.key_layernorm."))
        }
    }
}
