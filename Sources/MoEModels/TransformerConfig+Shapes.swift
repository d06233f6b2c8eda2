/// One tensor of the model a config describes: its parameter path, its shape, and the config keys its sizes
/// come from (swift-moe's names; `HuggingFace` translates them to a family's).
public struct ParameterShape: Sendable, Equatable, CustomStringConvertible {
    public let path: String
    public let shape: [Int]
    public let keys: [String]

    public init(_ path: String, _ shape: [Int], keys: [String]) {
        self.path = path
        self.shape = shape
        self.keys = keys
    }

    public var description: String { "\(path) \(Shape.describe(shape))" }
}

extension TransformerConfig {
    /// Every parameter and buffer of `MoETransformer(self)`, without allocating anything: what a loader checks
    /// against a file's header before it builds the model. A test pins it to the built model's tensors for every
    /// family. Meaningful once `validate()`'s size bounds hold.
    ///
    /// Legend: V vocabulary, D model dim, H query heads, G key-value heads, Dh head dim, F FFN width, E experts.
    public func parameterShapes() -> [ParameterShape] {
        let (d, v) = (hiddenSize, vocabSize)
        var out = [ParameterShape("embed_tokens.weight", [v, d], keys: ["vocab_size", "hidden_size"])]
        func add(_ path: String, _ shape: [Int], _ keys: [String]) { out.append(ParameterShape(path, shape, keys: keys)) }
        func norm(_ path: String, _ n: Int, _ keys: [String]) {
            add(path + ".weight", [n], keys)
            if normKind == .layer { add(path + ".bias", [n], keys) }
        }
        func linear(_ path: String, out o: Int, in i: Int, bias: Bool, _ keys: [String], biasKey: String = "attention_bias") {
            add(path + ".weight", [o, i], keys)
            if bias { add(path + ".bias", [o], keys + [biasKey]) }
        }
        for i in 0..<numLayers {
            let p = "layers.\(i)"
            norm(p + (postNorms ? ".post_attention_layernorm" : ".input_layernorm"), d, ["hidden_size", "post_norms", "norm_kind"])
            let a = p + ".self_attn"
            if let m = mla {
                let qk = m.nopeDim + m.ropeDim
                let headKeys = ["num_attention_heads", "qk_nope_head_dim", "qk_rope_head_dim"]
                if let r = m.qLoraRank {
                    linear(a + ".q_a_proj", out: r, in: d, bias: attentionBias, ["q_lora_rank", "hidden_size"])
                    add(a + ".q_a_layernorm.weight", [r], ["q_lora_rank"])
                    linear(a + ".q_b_proj", out: numHeads * qk, in: r, bias: false, headKeys + ["q_lora_rank"])
                } else {
                    linear(a + ".q_proj", out: numHeads * qk, in: d, bias: false, headKeys + ["hidden_size", "q_lora_rank"])
                }
                linear(a + ".kv_a_proj_with_mqa", out: m.kvLoraRank + m.ropeDim, in: d, bias: attentionBias, ["kv_lora_rank", "qk_rope_head_dim", "hidden_size"])
                add(a + ".kv_a_layernorm.weight", [m.kvLoraRank], ["kv_lora_rank"])
                linear(a + ".kv_b_proj", out: numHeads * (m.nopeDim + m.valueDim), in: m.kvLoraRank, bias: false,
                       ["num_attention_heads", "qk_nope_head_dim", "v_head_dim", "kv_lora_rank"])
                linear(a + ".o_proj", out: d, in: numHeads * m.valueDim, bias: attentionBias, ["hidden_size", "num_attention_heads", "v_head_dim"])
            } else {
                let (q, kv) = (numHeads * headDim, numKVHeads * headDim)
                let qKeys = ["num_attention_heads", "head_dim"], kvKeys = ["num_key_value_heads", "head_dim"]
                if qkNorm == "per_head" {
                    add(a + ".q_norm.weight", [headDim], ["head_dim", "qk_norm"])
                    add(a + ".k_norm.weight", [headDim], ["head_dim", "qk_norm"])
                } else if qkNorm == "full" {
                    add(a + ".q_norm.weight", [q], qKeys + ["qk_norm"])
                    add(a + ".k_norm.weight", [kv], kvKeys + ["qk_norm"])
                }
                linear(a + ".q_proj", out: q, in: d, bias: attentionBias, qKeys + ["hidden_size"])
                linear(a + ".k_proj", out: kv, in: d, bias: attentionBias, kvKeys + ["hidden_size"])
                linear(a + ".v_proj", out: kv, in: d, bias: attentionBias, kvKeys + ["hidden_size"])
                linear(a + ".o_proj", out: d, in: q, bias: attentionOutputBias, ["hidden_size"] + qKeys, biasKey: "attention_output_bias")
                if attentionSinks { add(a + ".sinks", [numHeads], ["num_attention_heads", "attention_sinks"]) }
            }
            norm(p + (postNorms ? ".post_feedforward_layernorm" : ".post_attention_layernorm"), d, ["hidden_size", "post_norms", "norm_kind"])
            let mlp = p + ".mlp"
            // Which layers hold experts is the placement keys' doing.
            let placement = ["first_k_dense_replace", "moe_layer_freq"]
            if let peer, isPEER(layer: i) {
                let w = peer.queryWidth
                add(mlp + ".query.weight", [w, d], ["peer.heads", "peer.key_dim", "hidden_size"])
                add(mlp + ".keys", [peer.heads * 2 * peer.subKeys, peer.keyDim], ["peer.heads", "peer.num_experts", "peer.key_dim"])
                add(mlp + ".down_embed", [peer.numExperts, d], ["peer.num_experts", "hidden_size"])
                add(mlp + ".up_embed", [peer.numExperts, d], ["peer.num_experts", "hidden_size"])
                if peer.queryBatchNorm {
                    for name in ["weight", "bias", "running_mean", "running_var"] { add(mlp + ".query_norm." + name, [w], ["peer.heads", "peer.key_dim"]) }
                }
            } else if let moe, isMoE(layer: i) {
                let (e, f) = (moe.numExperts, moe.expertHiddenSize)
                if moe.router != .hash {
                    let rows = moe.router == .soft ? e * moe.slotsPerExpert : e
                    linear(mlp + ".gate", out: rows, in: d, bias: moe.routerBias, ["num_experts", "hidden_size"] + placement, biasKey: "router_bias")
                }
                if moe.router == .noisyTopK { add(mlp + ".noise.weight", [e, d], ["num_experts", "hidden_size"]) }
                if moe.router == .soft { add(mlp + ".slot_scale", [1], []) }
                if moe.selectionBias { add(mlp + ".e_score_correction_bias", [e], ["num_experts"]) }
                let gated = moe.expertActivation == .swiglu || moe.expertActivation == .clampedSwiglu
                let first = gated ? ".experts.gate_up_proj" : ".experts.up_proj", width = gated ? 2 * f : f
                let keys = ["num_experts", "moe_intermediate_size", "hidden_size"] + placement
                add(mlp + first, [e, width, d], keys)
                if moe.expertBias { add(mlp + first + "_bias", [e, width], keys) }
                add(mlp + ".experts.down_proj", [e, d, f], keys)
                if moe.expertBias { add(mlp + ".experts.down_proj_bias", [e, d], keys) }
                let s = moe.sharedExpertHiddenSize
                if s > 0 {
                    let sharedKeys = ["shared_expert_intermediate_size", "hidden_size"] + placement
                    add(mlp + ".shared_expert.gate_up_proj", [1, 2 * s, d], sharedKeys)
                    add(mlp + ".shared_expert.down_proj", [1, d, s], sharedKeys)
                    if moe.sharedExpertGate { add(mlp + ".shared_expert_gate.weight", [1, d], ["hidden_size"]) }
                }
            } else {
                let keys = ["intermediate_size", "hidden_size"] + placement
                add(mlp + ".gate_proj.weight", [intermediateSize, d], keys)
                add(mlp + ".up_proj.weight", [intermediateSize, d], keys)
                add(mlp + ".down_proj.weight", [d, intermediateSize], keys)
            }
        }
        norm("norm", d, ["hidden_size"])
        if !tieWordEmbeddings { linear("lm_head", out: v, in: d, bias: lmHeadBias, ["vocab_size", "hidden_size", "tie_word_embeddings"], biasKey: "lm_head_bias") }
        return out
    }

    /// Elements in `parameterShapes()`, in checked arithmetic: a config whose sizes multiply past Int is refused
    /// instead of trapping.
    public func parameterCount() throws(ConfigError) -> Int {
        var total = 0
        for p in parameterShapes() {
            var n = 1
            for s in p.shape {
                let (m, overflow) = n.multipliedReportingOverflow(by: s)
                if overflow { throw ConfigError(p.path, Shape.describe(p.shape), "its size overflows; check \(p.keys.joined(separator: ", "))") }
                n = m
            }
            let (t, overflow) = total.addingReportingOverflow(n)
            if overflow { throw ConfigError("parameter count", "more than \(Int.max)", "the sizes are impossibly large; check hidden_size, num_hidden_layers and num_experts") }
            total = t
        }
        return total
    }
}
