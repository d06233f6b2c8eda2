import Foundation

extension HuggingFace {
    /// gpt-oss (`GptOssForCausalLM`): Llama attention with biases on q/k/v/o, a learned sink logit per head in
    /// the softmax, YaRN RoPE, sliding-window layers from `layer_types`; a biased router (`mlp.router`) whose top-k
    /// logits are softmaxed; biased experts with the clamped SwiGLU (`swiglu_alpha`, `swiglu_limit`), stored
    /// stacked and transposed for x W: `gate_up_proj` [E, D, 2F] with gate and up interleaved column by column,
    /// `down_proj` [E, F, D]. Released checkpoints store the experts as MXFP4 (`*_blocks` and `*_scales`,
    /// [E, rows, cols / 32, 16] and [E, rows, cols / 32], rows the output features); those are dequantized here
    /// (the inference engine multiplies them as stored).
    static func loadGptOss(_ dir: String, config j: ConfigReader) throws -> MoETransformer<Float> {
        let c = try gptOssConfig(j)
        let file = try SafetensorsCheckpoint(directory: dir)
        return try buildAndInstall(c, dir: dir, family: "gpt_oss", file: file, names: gptOssNames(c, file: file))
    }

    /// gpt-oss's file names for the model's parameters, with the rearrangements its stored layouts need.
    static func gptOssNames(_ c: TransformerConfig, file: SafetensorsCheckpoint) -> (String) -> ModelFiles.TensorSource {
        let (e, f, d) = (c.moe?.numExperts ?? 0, c.moe?.expertHiddenSize ?? 0, c.hiddenSize)
        return { name in
            if name == "lm_head.weight" { return .tensor(name) }
            let full = "model." + name
            if name.hasSuffix(".mlp.gate.weight") || name.hasSuffix(".mlp.gate.bias") {
                return .tensor(full.replacingOccurrences(of: ".mlp.gate.", with: ".mlp.router."))
            }
            let isMXFP4 = file.shard(holding: full)?.mxfp4[full] != nil
            // A stored shape other than the layout's is refused by name (the rearrangements below would trap on it,
            // or, where the sizes happen to agree, silently scramble it).
            let stored = file.shard(holding: full)?.mxfp4[full]?.shape ?? file.info(full)?.shape
            if name.hasSuffix(".mlp.experts.gate_up_proj") {
                let needed = isMXFP4 ? [e, 2 * f, d] : [e, d, 2 * f]
                guard stored == needed else { return .misshapen(full, needed: needed) }
                if isMXFP4 {
                    // Dequantized as stored, [E, 2F, D] with gate and up rows interleaved: the gate rows first.
                    return .derived([full]) { t in t[0].reshaped([e, f, 2, d]).permuted([0, 2, 1, 3]).copy().reshaped([e, 2 * f, d]) }
                }
                // [E, D, 2F] interleaved -> [E, 2F, D] with the gate rows first.
                return .derived([full]) { t in t[0].reshaped([e, d, f, 2]).permuted([0, 3, 2, 1]).copy().reshaped([e, 2 * f, d]) }
            }
            if name.hasSuffix(".mlp.experts.gate_up_proj_bias") {
                guard stored == [e, 2 * f] else { return .misshapen(full, needed: [e, 2 * f]) }
                return .derived([full]) { t in t[0].reshaped([e, f, 2]).transposed(1, 2).copy().reshaped([e, 2 * f]) }
            }
            if name.hasSuffix(".mlp.experts.down_proj") {
                if isMXFP4 { return .tensor(full) }  // [E, D, F] as stored
                guard stored == [e, f, d] else { return .misshapen(full, needed: [e, f, d]) }
                return .derived([full]) { t in t[0].transposed(1, 2).copy() }
            }
            return .tensor(full)
        }
    }

    static func gptOssConfig(_ j: ConfigReader) throws -> TransformerConfig {
        let f = try j.int("intermediate_size")
        var moe = MoEConfig(
            hiddenSize: try j.int("hidden_size"), expertHiddenSize: f, numExperts: try j.int("num_local_experts"),
            expertsPerToken: try j.int("num_experts_per_tok"), router: .topKSoftmax)
        moe.routerBias = true
        moe.expertBias = true
        moe.expertActivation = .clampedSwiglu
        moe.swigluAlpha = try j.double("swiglu_alpha", default: 1.702)
        moe.swigluLimit = try j.double("swiglu_limit", default: 7)
        moe.auxLossCoef = try j.double("router_aux_loss_coef", default: 0)
        var c = try baseConfig(j, modelType: "gpt_oss", intermediate: f, moe: moe)
        c.attentionBias = try j.bool("attention_bias", default: true)
        c.attentionOutputBias = c.attentionBias
        c.attentionSinks = true
        try slidingLayers(j, into: &c, nopeOnFullLayers: false)
        return c
    }
}
