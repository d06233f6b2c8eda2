import Foundation

extension HuggingFace {
    /// ERNIE 4.5 MoE (`Ernie4_5_MoeForCausalLM`): Llama attention with adjacent-pair RoPE, MoE on layers
    /// `moe_layer_start_index`...`moe_layer_end_index` every `moe_layer_interval`; softmax scores, selection by
    /// scores plus `moe_statics.e_score_correction_bias`, weights renormalized; shared experts always on.
    static func loadErnie(_ dir: String, config j: [String: Any]) throws -> MoETransformer<Float> {
        let path = dir + "/config.json"
        let layers = try int(j, "num_hidden_layers", path)
        let experts = try int(j, "moe_num_experts", path), width = try int(j, "moe_intermediate_size", path)
        var moe = MoEConfig(
            hiddenSize: try int(j, "hidden_size", path), expertHiddenSize: width, numExperts: experts,
            expertsPerToken: try int(j, "moe_k", path), router: .grouped)
        moe.scoreFunction = .softmax
        moe.selectionBias = true
        moe.normalizeTopK = true
        moe.groupScore = .max
        moe.sharedExpertHiddenSize = (j["moe_num_shared_experts"] as? Int ?? 0) * width
        moe.auxLossCoef = j["router_aux_loss_coef"] as? Double ?? 0
        if j["use_bias"] as? Bool == true {
            throw LoadError(description: "\(path): use_bias true is not supported yet; only bias-free ERNIE 4.5 checkpoints are")
        }
        var c = try baseConfig(j, path: path, modelType: "ernie4_5_moe", intermediate: try int(j, "intermediate_size", path), moe: moe)
        c.interleavedRope = true
        let start = j["moe_layer_start_index"] as? Int ?? 0, end = j["moe_layer_end_index"] as? Int ?? layers - 1
        let interval = j["moe_layer_interval"] as? Int ?? 1
        guard interval == 1, end >= layers - 1 || end < 0 else {
            throw LoadError(description: "\(path): MoE layers \(start)...\(end) every \(interval) are not supported yet; only a dense prefix then MoE to the last layer")
        }
        c.firstDenseLayers = start
        let model = try build(c, path: path)
        let file = try SafetensorsCheckpoint(directory: dir)
        try ModelFiles.install(model.parameters + model.buffers, from: file, family: "ernie4_5_moe") { name in
            if name == "lm_head.weight" { return .tensor(name) }
            if let s = stackedExperts(name, count: experts, block: ".mlp.experts") { return s }
            if let s = sharedExpert(name, block: ".mlp.shared_experts") { return s }
            if name.hasSuffix(".mlp.e_score_correction_bias") {
                let file = "model." + name.replacingOccurrences(of: ".mlp.e_score_correction_bias", with: ".mlp.moe_statics.e_score_correction_bias")
                return .derived([file]) { t in t[0].reshaped([experts]) }
            }
            return .tensor("model." + name)
        }
        return model
    }
}
