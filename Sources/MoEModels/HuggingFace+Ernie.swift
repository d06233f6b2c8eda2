import Foundation

extension HuggingFace {
    /// ERNIE 4.5 MoE (`Ernie4_5_MoeForCausalLM`): Llama attention with adjacent-pair RoPE, MoE on layers
    /// `moe_layer_start_index`...`moe_layer_end_index` every `moe_layer_interval`; softmax scores, selection by
    /// scores plus `moe_statics.e_score_correction_bias`, weights renormalized; shared experts always on.
    static func loadErnie(_ dir: String, config j: ConfigReader) throws -> MoETransformer<Float> {
        let path = j.path
        let layers = try j.int("num_hidden_layers")
        let experts = try j.int("moe_num_experts"), width = try j.int("moe_intermediate_size")
        var moe = MoEConfig(
            hiddenSize: try j.int("hidden_size"), expertHiddenSize: width, numExperts: experts,
            expertsPerToken: try j.int("moe_k"), router: .grouped)
        moe.scoreFunction = .softmax
        moe.selectionBias = true
        moe.normalizeTopK = true
        moe.groupScore = .max
        moe.sharedExpertHiddenSize = try j.int("moe_num_shared_experts", default: 0, min: 0, nullable: true) * min(width, MoEConfig.maxDimension)
        moe.auxLossCoef = try j.double("router_aux_loss_coef", default: 0)
        if try j.bool("use_bias", default: false) {
            throw LoadError(description: "\(path): use_bias true is not supported yet; only bias-free ERNIE 4.5 checkpoints are")
        }
        var c = try baseConfig(j, modelType: "ernie4_5_moe", intermediate: try j.int("intermediate_size"), moe: moe)
        c.interleavedRope = true
        let start = try j.int("moe_layer_start_index", default: 0, min: 0), end = try j.int("moe_layer_end_index", default: layers - 1, min: Int.min)
        let interval = try j.int("moe_layer_interval", default: 1)
        guard interval == 1, end >= layers - 1 || end < 0 else {
            throw LoadError(description: "\(path): moe_layer_start_index \(start), moe_layer_end_index \(end), moe_layer_interval \(interval) with num_hidden_layers \(layers) are not supported yet; only a dense prefix then MoE to the last layer (interval 1)")
        }
        c.firstDenseLayers = start
        let file = try SafetensorsCheckpoint(directory: dir)
        return try buildAndInstall(c, dir: dir, family: "ernie4_5_moe", file: file) { name in
            if name == "lm_head.weight" { return .tensor(name) }
            if let s = stackedExperts(name, count: experts, block: ".mlp.experts") { return s }
            if let s = sharedExpert(name, block: ".mlp.shared_experts") { return s }
            if name.hasSuffix(".mlp.e_score_correction_bias") {
                let stored = "model." + name.replacingOccurrences(of: ".mlp.e_score_correction_bias", with: ".mlp.moe_statics.e_score_correction_bias")
                guard let shape = file.logicalShape(stored), shape.reduce(1, *) == experts else { return .misshapen(stored, needed: [1, experts]) }
                return .derived([stored]) { t in t[0].reshaped([experts]) }
            }
            return .tensor("model." + name)
        }
    }
}
