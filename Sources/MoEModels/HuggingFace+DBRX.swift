import Foundation

extension HuggingFace {
    /// DBRX (`DbrxForCausalLM`): its own config layout (`d_model`, `n_heads`, `attn_config`, `ffn_config`),
    /// LayerNorm without shift, one fused `Wqkv` clamped to +-`clip_qkv`, experts stored as [E F, D] slabs
    /// (`w1` gate, `v1` up, `w2` down transposed), softmax top-k weights divided by their p-norm
    /// (`moe_normalize_expert_weights`; p = 1 supported).
    static func loadDBRX(_ dir: String, config j: ConfigReader) throws -> MoETransformer<Float> {
        let path = j.path
        let attn = try j.object("attn_config") ?? ConfigReader([:], path: path, prefix: "attn_config.")
        let ffn = try j.object("ffn_config") ?? ConfigReader([:], path: path, prefix: "ffn_config.")
        let d = try j.int("d_model"), heads = try j.int("n_heads")
        let f = try ffn.int("ffn_hidden_size"), e = try ffn.int("moe_num_experts")
        var moe = MoEConfig(hiddenSize: d, expertHiddenSize: f, numExperts: e, expertsPerToken: try ffn.int("moe_top_k"))
        let p = try ffn.optionalDouble("moe_normalize_expert_weights", nullable: true)
        guard p == nil || p == 1 else {
            throw LoadError(description: "\(path): moe_normalize_expert_weights \(p!) is not supported yet; only 1 (sum) or null is")
        }
        moe.normalizeTopK = p == 1
        if let act = try ffn.object("ffn_act_fn")?.string("name"), act != "silu" {
            throw LoadError(description: "\(path): ffn_act_fn \"\(act)\" is not supported; DBRX experts here are SwiGLU (silu)")
        }
        let kvHeads = try attn.int("kv_n_heads", default: heads)
        var c = TransformerConfig(
            vocabSize: try j.int("vocab_size"), hiddenSize: d, numLayers: try j.int("n_layers"), numHeads: heads,
            numKVHeads: kvHeads, headDim: d / heads, intermediateSize: f, moe: moe)
        c.modelType = "dbrx"
        // transformers builds the rotary table from the top-level rope_parameters when present (attn_config's
        // rope_theta is then unused), so the same precedence here.
        c.ropeTheta = j["rope_parameters"] != nil ? try ropeTheta(j) : try attn.double("rope_theta", default: 10000)
        c.clipQKV = try attn.optionalDouble("clip_qkv", nullable: true)
        c.normKind = .layerNoBias
        c.rmsNormEps = 1e-5
        c.tieWordEmbeddings = try j.bool("tie_word_embeddings", default: false)
        c.maxPositions = try j.int("max_seq_len", default: c.maxPositions)
        let qRows = heads * (d / heads), kvRows = kvHeads * (d / heads)
        let file = try SafetensorsCheckpoint(directory: dir)
        // The fused and slab tensors are cut by the config's sizes: a stored shape other than that is refused by name.
        func stored(_ n: String, _ needed: [Int], _ source: ModelFiles.TensorSource) -> ModelFiles.TensorSource {
            file.logicalShape(n).map { $0 == needed } ?? true ? source : .misshapen(n, needed: needed)
        }
        return try buildAndInstall(c, dir: dir, family: "dbrx", file: file) { name in
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
                let wqkv = block + "norm_attn_norm.attn.Wqkv.weight"
                return stored(wqkv, [qRows + 2 * kvRows, d], .derived([wqkv]) { t in t[0].split(sizes: [qRows, kvRows, kvRows], axis: 0)[which] })
            case "mlp.gate.weight": return .tensor(block + "ffn.router.layer.weight")
            case "mlp.experts.gate_up_proj":
                let (w1, v1) = (block + "ffn.experts.mlp.w1", block + "ffn.experts.mlp.v1")
                return stored(w1, [e * f, d], stored(v1, [e * f, d], .derived([w1, v1]) { t in
                    Tensor.concat([t[0].reshaped([e, f, d]), t[1].reshaped([e, f, d])], axis: 1)
                }))
            case "mlp.experts.down_proj":
                let w2 = block + "ffn.experts.mlp.w2"
                return stored(w2, [e * f, d], .derived([w2]) { t in t[0].reshaped([e, f, d]).transposed(1, 2).copy() })
            default: return .tensor(block + parts[2])
            }
        }
    }
}
