import Foundation

/// Hugging Face checkpoints, loaded as a visible pipeline: read config.json -> map it to a
/// `TransformerConfig` -> read the safetensors -> rename and stack the tensors -> install, strictly (every
/// file tensor used, every parameter filled, every shape checked).
public enum HuggingFace {
    /// The `model_type`s this loader understands.
    public static let supported = [
        "dbrx", "deepseek_v2", "deepseek_v3", "dots1", "ernie4_5_moe", "exaone_moe", "flex_olmo", "glm4_moe", "glm4_moe_lite", "gpt_oss", "granitemoe", "granitemoeshared",
        "hunyuan_v1_moe", "minimax_m2", "mixtral", "olmoe", "phimoe", "qwen2_moe", "qwen3_moe", "solar_open", "swift_moe",
    ]

    public struct LoadError: Error, CustomStringConvertible {
        public let description: String
        public init(description: String) { self.description = description }
    }

    /// Loads any supported checkpoint directory.
    public static func load(_ dir: String) throws -> MoETransformer<Float> {
        try load(dir, config: readConfig(dir))
    }

    /// Loads the weights of `dir` as the config `j` describes (read from `dir/config.json` by `load(_:)`).
    public static func load(_ dir: String, config j: ConfigReader) throws -> MoETransformer<Float> {
        let path = j.path
        let type = try j.string("model_type") ?? "(none)"
        switch type {
        case "swift_moe": return try ModelFiles.load(dir, as: Float.self)
        case "mixtral", "phimoe": return try loadMixtral(dir, config: j, family: type)
        case "granitemoe", "granitemoeshared": return try loadGranite(dir, config: j, family: type)
        case "dbrx": return try loadDBRX(dir, config: j)
        case "gpt_oss": return try loadGptOss(dir, config: j)
        case "ernie4_5_moe": return try loadErnie(dir, config: j)
        case "hunyuan_v1_moe": return try loadHunYuan(dir, config: j)
        case "qwen2_moe", "qwen3_moe", "olmoe", "flex_olmo": return try loadQwenLike(dir, config: j, family: type)
        case "deepseek_v2", "deepseek_v3", "glm4_moe", "glm4_moe_lite", "dots1", "solar_open", "minimax_m2", "exaone_moe":
            return try loadDeepSeek(dir, config: j, family: type)
        default:
            throw LoadError(description: "\(path): unknown model_type \"\(type)\"; supported: \(supported.joined(separator: ", "))")
        }
    }

    /// `dir/config.json` as a strict reader of its top-level object.
    public static func readConfig(_ dir: String) throws -> ConfigReader {
        let path = dir + "/config.json"
        guard let data = FileManager.default.contents(atPath: path) else {
            throw LoadError(description: "\(path): not found; point at a model directory with config.json")
        }
        return try parseConfig(data, path: path)
    }

    /// config.json's bytes as a strict reader of its top-level object.
    public static func parseConfig(_ data: Data, path: String) throws -> ConfigReader {
        guard let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw LoadError(description: "\(path): not valid JSON (or not an object); fix or re-download the file")
        }
        if let key = JSONKeys.firstDuplicateTopLevelKey(data) {
            throw LoadError(description: "\(path): the key \"\(key)\" appears twice; keep one")
        }
        return ConfigReader(json, path: path)
    }

    /// The families whose config maps to a `TransformerConfig` without building the model (the inference
    /// engine's families).
    public static let configOnlyFamilies = ["gpt_oss", "mixtral", "olmoe", "qwen2_moe", "qwen3_moe"]

    /// The `TransformerConfig` of a checkpoint of one of `configOnlyFamilies`, without building the model.
    public static func config(_ dir: String) throws -> TransformerConfig {
        try config(readConfig(dir))
    }

    /// The mapped and validated `TransformerConfig` of a config.json of one of `configOnlyFamilies`.
    public static func config(_ j: ConfigReader) throws -> TransformerConfig {
        let type = try j.string("model_type") ?? "(none)"
        let c: TransformerConfig
        switch type {
        case "mixtral": c = try mixtralConfig(j, family: type)
        case "olmoe", "qwen2_moe", "qwen3_moe": c = try qwenConfig(j, family: type)
        case "gpt_oss": c = try gptOssConfig(j)
        default:
            throw LoadError(description: "\(j.path): model_type \"\(type)\" is not supported by the inference engine yet; supported: \(configOnlyFamilies.joined(separator: ", "))")
        }
        try validate(c, path: j.path)
        return c
    }

    /// The file names of an inference-engine family's tensors (`configOnlyFamilies`), for `checkSizes`.
    public static func names(for c: TransformerConfig, file: SafetensorsCheckpoint) -> (String) -> ModelFiles.TensorSource {
        switch c.modelType {
        case "mixtral": return mixtralNames(experts: c.moe?.numExperts ?? 0)
        case "gpt_oss": return gptOssNames(c, file: file)
        default: return qwenNames(experts: c.moe?.numExperts ?? 0)
        }
    }

    /// `c.validate()` (types, ranges, size bounds, checked arithmetic) with the family's own key names.
    static func validate(_ c: TransformerConfig, path: String) throws {
        do { try c.validate() } catch {
            throw LoadError(description: "\(path): invalid \(familyKey(error.field, c.modelType)) = \(error.value): \(error.hint)")
        }
    }

    /// The attention and norm part of a Llama-family config.
    static func baseConfig(_ j: ConfigReader, modelType: String, intermediate: Int, moe: MoEConfig?) throws -> TransformerConfig {
        let d = try j.int("hidden_size"), heads = try j.int("num_attention_heads")
        // Keys that would change what the model computes into something this loader does not build.
        if let act = try j.string("hidden_act"), act != "silu" {
            throw LoadError(description: "\(j.path): hidden_act \"\(act)\" is not supported; these families' FFNs are SwiGLU with silu")
        }
        if try j.bool("mlp_bias", default: false) {
            throw LoadError(description: "\(j.path): mlp_bias true is not supported yet; only bias-free FFNs are")
        }
        if try j.bool("use_sliding_window", default: false) {
            throw LoadError(description: "\(j.path): use_sliding_window true is not supported for \(modelType) yet; set it to false")
        }
        if ["mixtral", "phimoe"].contains(modelType), let w = try j.optionalInt("sliding_window", min: Int.min, nullable: true) {
            throw LoadError(description: "\(j.path): sliding_window \(w) (a window on every layer) is not supported for \(modelType) yet; only null is")
        }
        var c = TransformerConfig(
            vocabSize: try j.int("vocab_size"), hiddenSize: d, numLayers: try j.int("num_hidden_layers"),
            numHeads: heads, numKVHeads: try j.int("num_key_value_heads", default: heads, nullable: true),
            headDim: try j.int("head_dim", default: d / heads, nullable: true), intermediateSize: intermediate, moe: moe)
        c.modelType = modelType
        c.ropeTheta = try plainRopeTheta(j)
        c.ropeScaling = try ropeScaling(j)
        c.rmsNormEps = try j.double("rms_norm_eps", default: 1e-5)
        c.tieWordEmbeddings = try j.bool("tie_word_embeddings", default: false)
        c.maxPositions = try j.int("max_position_embeddings", default: c.maxPositions)
        return c
    }

    /// The pipeline's end: check every size against the weights' headers, then build the model, then install the
    /// weights strictly through the family's name table.
    static func buildAndInstall(
        _ c: TransformerConfig, dir: String, family: String, file: SafetensorsCheckpoint? = nil, names: (String) -> ModelFiles.TensorSource
    ) throws -> MoETransformer<Float> {
        let path = dir + "/config.json"
        let weights = try file ?? SafetensorsCheckpoint(directory: dir)
        try checkSizes(c, against: weights, path: path, names: names)  // validates c first
        let model: MoETransformer<Float>
        do { model = try MoETransformer<Float>(c, seed: 0) } catch { throw LoadError(description: "\(path): \(error)") }
        try ModelFiles.install(model.parameters + model.buffers, from: weights, family: family, source: names)
        return model
    }

    /// Every size of `c` against the shapes in the weights' headers, before anything is allocated: `c` is
    /// validated (so every size is bounded), each of its tensors, named through `names`, must be in the files
    /// with the shape the config gives it, and every file tensor must be used. Errors name the key, the tensor
    /// and the fix.
    public static func checkSizes(
        _ c: TransformerConfig, against file: SafetensorsCheckpoint, path: String, names: (String) -> ModelFiles.TensorSource
    ) throws {
        try validate(c, path: path)
        let family = c.modelType
        func keys(_ p: ParameterShape) -> String { p.keys.map { familyKey($0, family) }.joined(separator: ", ") }
        // Tensor by tensor in the model's order: a wrong size is met at the embedding or the first layer, so a
        // huge layer or expert count stops at its first absent tensor (validate() has bounded every size).
        var used = Set<String>()
        for p in c.parameterShapes() {
            let source = names(p.path)
            used.formUnion(source.names)
            for n in source.names where file.logicalShape(n) == nil {
                throw LoadError(description: "\(path): the config needs the tensor \(n) \(source.names.count == 1 ? Shape.describe(p.shape) + " " : "")(from \(keys(p))), which the weights do not hold; check those keys against the checkpoint")
            }
            let stored: [Int]?
            switch source {
            case .tensor(let n): stored = file.logicalShape(n)
            case .stacked(let groups):
                // Each group concatenated on its first axis, the groups stacked on a new one.
                let shapes = groups.map { $0.compactMap { file.logicalShape($0) } }
                let rows = shapes.map { $0.reduce(0) { $0 + ($1.first ?? 0) } }
                let tails = Set(shapes.flatMap { $0.map { Array($0.dropFirst()) } })
                stored = Set(rows).count == 1 && tails.count == 1 ? [groups.count, rows[0]] + tails.first! : nil
            case .derived: continue  // each family's table refuses a stored shape its rearrangement cannot take
            case .misshapen(let n, let needed):
                // A fused projection (DBRX's Wqkv) is cut by the key-value heads too.
                let fused = p.path.contains(".self_attn.") ? ", " + familyKey("num_key_value_heads", family) : ""
                throw LoadError(description: "\(path): the config needs \(n) stored as \(Shape.describe(needed)) (from \(keys(p))\(fused)) but the weights hold \(Shape.describe(file.logicalShape(n) ?? [])); fix those keys in config.json")
            }
            guard stored == p.shape else {
                let what = stored.map { "hold \(Shape.describe($0))" } ?? "hold tensors of unequal shapes"
                throw LoadError(description: "\(path): the config sizes \(source.names.count == 1 ? source.names[0] : p.path) as \(Shape.describe(p.shape)) (from \(keys(p))) but the weights \(what); fix those keys in config.json")
            }
        }
        if let unused = file.logicalNames.first(where: { !used.contains($0) }) {
            // The key most likely at fault: the head's tie, the layer count, the expert count or the placement.
            let suspects = unused.hasPrefix("lm_head.") ? ["tie_word_embeddings", "lm_head_bias"]
                : unused.contains(".bias") ? ["attention_bias", "attention_output_bias", "router_bias"]
                : unused.contains("norm") ? ["qk_norm", "num_hidden_layers"]
                : ["num_hidden_layers", "num_experts", "first_k_dense_replace", "moe_layer_freq", "shared_expert_intermediate_size"]
            let keys = Array(Set(suspects.map { familyKey($0, family) })).sorted().joined(separator: ", ")
            throw LoadError(description: "\(file.file(of: unused)): tensor '\(unused)' is not used by the \(family) model config.json describes; the weights and the config disagree (check \(keys))")
        }
    }

    /// A swift-moe config key as a family's config.json spells it (for messages).
    static func familyKey(_ key: String, _ family: String) -> String {
        let mixtralLike = ["mixtral", "phimoe", "gpt_oss", "minimax_m2", "granitemoe", "granitemoeshared"]
        switch key {
        case "num_experts", "moe.num_experts":
            if mixtralLike.contains(family) { return "num_local_experts" }
            if ["deepseek_v2", "deepseek_v3", "glm4_moe", "glm4_moe_lite", "dots1", "solar_open"].contains(family) { return "n_routed_experts" }
            if family == "ernie4_5_moe" { return "moe_num_experts" }
            if family == "dbrx" { return "ffn_config.moe_num_experts" }
            if ["qwen2_moe", "qwen3_moe", "olmoe", "flex_olmo"].contains(family) { return "num_experts (or num_local_experts)" }
            return "num_experts"
        case "moe_intermediate_size", "moe.expert_hidden_size":
            if mixtralLike.contains(family) || ["olmoe", "hunyuan_v1_moe"].contains(family) { return "intermediate_size" }
            if family == "dbrx" { return "ffn_config.ffn_hidden_size" }
            return "moe_intermediate_size"
        case "num_experts_per_tok", "moe.experts_per_token":
            return family == "dbrx" ? "ffn_config.moe_top_k" : family == "ernie4_5_moe" ? "moe_k" : family == "hunyuan_v1_moe" ? "moe_topk" : "num_experts_per_tok"
        case "hidden_size": return family == "dbrx" ? "d_model" : key
        case "num_hidden_layers": return family == "dbrx" ? "n_layers" : key
        case "num_attention_heads": return family == "dbrx" ? "n_heads" : key
        case "num_key_value_heads": return family == "dbrx" ? "attn_config.kv_n_heads" : key
        case "first_k_dense_replace": return family == "ernie4_5_moe" ? "moe_layer_start_index" : ["qwen2_moe", "qwen3_moe", "olmoe"].contains(family) ? "decoder_sparse_step" : key
        case "moe_layer_freq": return ["qwen2_moe", "qwen3_moe", "olmoe"].contains(family) ? "decoder_sparse_step" : key
        case "rope_theta": return "rope_theta (or rope_parameters.rope_theta)"
        case "shared_expert_intermediate_size", "moe.shared_expert_intermediate_size":
            switch family {
            case "deepseek_v2", "deepseek_v3", "glm4_moe", "glm4_moe_lite", "dots1", "solar_open": return "n_shared_experts"
            case "ernie4_5_moe": return "moe_num_shared_experts"
            case "exaone_moe": return "num_shared_experts"
            case "granitemoeshared": return "shared_intermediate_size"
            case "hunyuan_v1_moe": return "intermediate_size"
            default: return key
            }
        case "head_dim" where ["deepseek_v2", "deepseek_v3", "glm4_moe_lite"].contains(family): return "qk_rope_head_dim"
        case "intermediate_size" where family == "dbrx": return "ffn_config.ffn_hidden_size"
        case "intermediate_size" where family == "solar_open": return "intermediate_size (or moe_intermediate_size)"
        case "router_jitter_noise" where family == "phimoe": return "input_jitter_noise"
        case "sparsemixer_eps" where family == "phimoe": return "router_jitter_noise"
        case "attention_scale" where family.hasPrefix("granitemoe"): return "attention_multiplier"
        case "qk_norm": return family == "glm4_moe" ? "use_qk_norm" : "model_type (its q/k norm)"
        case "attention_output_bias": return ["granitemoe", "granitemoeshared", "hunyuan_v1_moe", "gpt_oss"].contains(family) ? "attention_bias" : key
        case "attention_bias": return family == "qwen2_moe" ? "qkv_bias" : key
        default: return key.hasPrefix("moe.") ? String(key.dropFirst(4)) : key
        }
    }

    /// Per-expert file tensors stacked into the model's expert bank: the model path
    /// `<layer>.mlp.experts.gate_up_proj` (or `down_proj`) reads `<prefix><layer><block>.<e>.<part>.weight`
    /// for every expert e, gate and up concatenated. Returns nil for other paths.
    static func stackedExperts(
        _ name: String, count: Int, block: String, gateUp: [String] = ["gate_proj", "up_proj"], down: String = "down_proj"
    ) -> ModelFiles.TensorSource? {
        guard let r = name.range(of: ".mlp.experts.") else { return nil }
        let head = "model." + name[..<r.lowerBound] + block + "."
        let parts = name.hasSuffix("gate_up_proj") ? gateUp : [down]
        return .stacked((0..<count).map { e in parts.map { head + "\(e).\($0).weight" } })
    }

    /// A single shared expert stored as a plain SwiGLU MLP under `<layer><block>.{gate,up,down}_proj`.
    static func sharedExpert(_ name: String, block: String) -> ModelFiles.TensorSource? {
        guard let r = name.range(of: ".mlp.shared_expert.") else { return nil }
        let head = "model." + name[..<r.lowerBound] + block + "."
        let parts = name.hasSuffix("gate_up_proj") ? ["gate_proj", "up_proj"] : ["down_proj"]
        return .stacked([parts.map { head + $0 + ".weight" }])
    }

    /// rope_theta, refusing any rope type but the default (families whose loader does not read YaRN).
    static func ropeTheta(_ j: ConfigReader) throws -> Double {
        if let y = try ropeScaling(j) {
            throw LoadError(description: "\(j.path): rope_type \"yarn\" (factor \(y.factor)) is not supported for this family yet; only default RoPE is")
        }
        return try plainRopeTheta(j)
    }

    /// `rope_parameters.rope_theta` (transformers 5) or `rope_theta` (4.x); 10000 when neither is given.
    static func plainRopeTheta(_ j: ConfigReader) throws -> Double {
        // Required: the families' own defaults differ (10000, 1e6 ...), so a missing base is not guessed.
        if let r = try j.object("rope_parameters"), r["rope_theta"] != nil { return try r.double("rope_theta", default: 10000) }
        guard j["rope_theta"] != nil else {
            throw LoadError(description: "\(j.path): missing \"rope_theta\" (in rope_parameters or at the top level); add the model's RoPE base")
        }
        return try j.double("rope_theta", default: 10000)
    }

    /// The YaRN parameters of `rope_parameters` (transformers 5) or `rope_scaling` (4.x), nil for default RoPE;
    /// other rope types are refused by name.
    static func ropeScaling(_ j: ConfigReader) throws -> RopeScaling? {
        for key in ["rope_parameters", "rope_scaling"] {
            guard let d = try j.object(key) else { continue }
            let type = try d.string("rope_type") ?? d.string("type") ?? "default"
            guard type != "default" else { continue }
            guard type == "yarn" else {
                throw LoadError(description: "\(j.path): \(key) type \"\(type)\" is not supported yet; only default RoPE and yarn are")
            }
            let maxPositions = try j.optionalInt("max_position_embeddings", nullable: true)
            guard let original = try d.optionalInt("original_max_position_embeddings") ?? maxPositions else {
                throw LoadError(description: "\(j.path): \(key) yarn needs original_max_position_embeddings; add it (the context the model was trained at)")
            }
            guard let factor = try d.optionalDouble("factor") ?? maxPositions.map({ Double($0) / Double(original) }) else {
                throw LoadError(description: "\(j.path): \(key) yarn needs a factor; add it")
            }
            var y = RopeScaling(factor: factor, originalMaxPositions: original)
            y.betaFast = try d.double("beta_fast", default: y.betaFast)
            y.betaSlow = try d.double("beta_slow", default: y.betaSlow)
            y.truncate = try d.bool("truncate", default: true)
            y.attentionFactor = try d.optionalDouble("attention_factor")
            y.mscale = try d.optionalDouble("mscale")
            y.mscaleAllDim = try d.optionalDouble("mscale_all_dim")
            return y
        }
        return nil
    }

    /// `layer_types` with "sliding_attention" entries: those layers attend over the last `sliding_window` keys.
    /// With `nopeOnFullLayers` (EXAONE), the other layers use no rotary embedding when there is a window.
    static func slidingLayers(_ j: ConfigReader, into c: inout TransformerConfig, nopeOnFullLayers: Bool) throws {
        guard let types = try j.strings("layer_types") else { return }
        guard types.count == c.numLayers else {
            throw LoadError(description: "\(j.path): layer_types has \(types.count) entries for num_hidden_layers \(c.numLayers); give one per layer")
        }
        if let bad = types.first(where: { $0 != "sliding_attention" && $0 != "full_attention" }) {
            throw LoadError(description: "\(j.path): layer type \"\(bad)\" is not supported yet; only sliding_attention and full_attention are")
        }
        guard let window = try j.optionalInt("sliding_window", nullable: true), types.contains("sliding_attention") else { return }
        c.slidingWindow = window
        c.slidingLayers = types.indices.filter { types[$0] == "sliding_attention" }
        if nopeOnFullLayers { c.nopeLayers = types.indices.filter { types[$0] == "full_attention" } }
    }

    /// `mlp_layer_types` (["dense", ..., "sparse", ...]) as a count of leading dense layers; other patterns
    /// are refused.
    static func denseLayerPrefix(_ j: ConfigReader) throws -> Int? {
        guard let types = try j.strings("mlp_layer_types") else { return nil }
        let k = types.prefix { $0 == "dense" }.count
        guard types.dropFirst(k).allSatisfy({ $0 == "sparse" }) else {
            throw LoadError(description: "\(j.path): mlp_layer_types \(types) is not supported yet; only dense layers first, then sparse ones")
        }
        return k
    }
}
