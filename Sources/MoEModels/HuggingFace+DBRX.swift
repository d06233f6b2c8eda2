import Foundation

extension HuggingFace {
    /// DBRX (`DbrxForCausalLM`): its own config layout (`d_model`, `n_heads`, `attn_config`, `ffn_config`),
    /// LayerNorm without shift, one fused `Wqkv` clamped to +-`clip_qkv`, experts stored as [E F, D] slabs
    /// (`w1` gate, `v1` up, `w2` down transposed), softmax top-k weights divided by their p-norm
    /// (`moe_normalize_expert_weights`; p = 1 supported).
    static func loadDBRX(_ dir: String, config j: [String: Any]) throws -> MoETransformer<Float> {
        let path = dir + "/config.json"
        let attn = j["attn_config"] as? [String: Any] ?? [:], ffn = j["ffn_config"] as? [String: Any] ?? [:]
        let d = try int(j, "d_model", path), heads = try int(j, "n_heads", path)
        let f = try int(ffn, "ffn_hidden_size", path + " ffn_config"), e = try int(ffn, "moe_num_experts", path + " ffn_config")
        var moe = MoEConfig(hiddenSize: d, expertHiddenSize: f, numExperts: e, expertsPerToken: try int(ffn, "moe_top_k", path + " ffn_config"))
        let p = number(ffn["moe_normalize_expert_weights"])
        guard p == nil || p == 1 else {
            throw LoadError(description: "\(path): moe_normalize_expert_weights \(p!) is not supported yet; only 1 (sum) or null is")
        }
        moe.normalizeTopK = p == 1
        if let act = (ffn["ffn_act_fn"] as? [String: Any])?["name"] as? String, act != "silu" {
            throw LoadError(description: "\(path): ffn_act_fn \"\(act)\" is not supported; DBRX experts here are SwiGLU (silu)")
        }
        let kvHeads = attn["kv_n_heads"] as? Int ?? heads
        var c = TransformerConfig(
            vocabSize: try int(j, "vocab_size", path), hiddenSize: d, numLayers: try int(j, "n_layers", path), numHeads: heads,
            numKVHeads: kvHeads, headDim: d / heads, intermediateSize: f, moe: moe)
        c.modelType = "dbrx"
        // transformers builds the rotary table from the top-level rope_parameters when present (attn_config's
        // rope_theta is then unused), so the same precedence here.
        c.ropeTheta = j["rope_parameters"] != nil ? try ropeTheta(j, path: path) : double(attn, "rope_theta", default: 10000)
        c.clipQKV = number(attn["clip_qkv"])
        c.normKind = .layerNoBias
        c.rmsNormEps = 1e-5
        c.tieWordEmbeddings = j["tie_word_embeddings"] as? Bool ?? false
        let model = try build(c, path: path)
        let file = try SafetensorsCheckpoint(directory: dir)
        let qRows = heads * (d / heads), kvRows = kvHeads * (d / heads)
        try ModelFiles.install(model.parameters, from: file, family: "dbrx") { name in
            if name.hasPrefix("lm_head.") { return .tensor(name) }
            if name == "embed_tokens.weight" { return .tensor("transformer.wte.weight") }
            if name == "norm.weight" { return .tensor("transformer.norm_f.weight") }
            let parts = name.split(separator: ".", maxSplits: 2).map(String.init)  // layers, i, rest
            let block = "transformer.blocks.\(parts[1])."
            switch parts[2] {
            case "input_layernorm.weight": return .tensor(block + "norm_attn_norm.norm_1.weight")
            case "post_attention_layernorm.weight": return .tensor(block + "norm_attn_norm.norm_2.weight")
            case "self_attn.o_proj.weight": return .tensor(block + "norm_attn_norm.attn.out_proj.weight")
            case "self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight":
                let which = ["q": 0, "k": 1, "v": 2][String(parts[2].dropFirst(10).prefix(1))]!
                return .derived([block + "norm_attn_norm.attn.Wqkv.weight"]) { t in t[0].split(sizes: [qRows, kvRows, kvRows], axis: 0)[which] }
            case "mlp.gate.weight": return .tensor(block + "ffn.router.layer.weight")
            case "mlp.experts.gate_up_proj":
                return .derived([block + "ffn.experts.mlp.w1", block + "ffn.experts.mlp.v1"]) { t in
                    Tensor.concat([t[0].reshaped([e, f, d]), t[1].reshaped([e, f, d])], axis: 1)
                }
            case "mlp.experts.down_proj":
                return .derived([block + "ffn.experts.mlp.w2"]) { t in t[0].reshaped([e, f, d]).transposed(1, 2).copy() }
            default: return .tensor(block + parts[2])
            }
        }
        return model
    }
}
