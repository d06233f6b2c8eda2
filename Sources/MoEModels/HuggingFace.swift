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
        let path = dir + "/config.json"
        let json = try readConfig(dir)
        let type = json["model_type"] as? String ?? "(none)"
        switch type {
        case "swift_moe": return try ModelFiles.load(dir, as: Float.self)
        case "mixtral", "phimoe": return try loadMixtral(dir, config: json, family: type)
        case "granitemoe", "granitemoeshared": return try loadGranite(dir, config: json, family: type)
        case "dbrx": return try loadDBRX(dir, config: json)
        case "gpt_oss": return try loadGptOss(dir, config: json)
        case "ernie4_5_moe": return try loadErnie(dir, config: json)
        case "hunyuan_v1_moe": return try loadHunYuan(dir, config: json)
        case "qwen2_moe", "qwen3_moe", "olmoe", "flex_olmo": return try loadQwenLike(dir, config: json, family: type)
        case "deepseek_v2", "deepseek_v3", "glm4_moe", "glm4_moe_lite", "dots1", "solar_open", "minimax_m2", "exaone_moe":
            return try loadDeepSeek(dir, config: json, family: type)
        default:
            throw LoadError(description: "\(path): unknown model_type \"\(type)\"; supported: \(supported.joined(separator: ", "))")
        }
    }

    /// `dir/config.json` as a JSON object.
    public static func readConfig(_ dir: String) throws -> [String: Any] {
        let path = dir + "/config.json"
        guard let data = FileManager.default.contents(atPath: path) else {
            throw LoadError(description: "\(path): not found; point at a model directory with config.json")
        }
        guard let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw LoadError(description: "\(path): not valid JSON; fix or re-download the file")
        }
        return json
    }

    /// The families whose config maps to a `TransformerConfig` without building the model (the inference
    /// engine's families).
    public static let configOnlyFamilies = ["gpt_oss", "mixtral", "olmoe", "qwen2_moe", "qwen3_moe"]

    /// The `TransformerConfig` of a checkpoint of one of `configOnlyFamilies`, without building the model.
    public static func config(_ dir: String) throws -> TransformerConfig {
        let path = dir + "/config.json"
        let j = try readConfig(dir)
        let type = j["model_type"] as? String ?? "(none)"
        switch type {
        case "mixtral": return try mixtralConfig(j, path: path, family: type)
        case "olmoe", "qwen2_moe", "qwen3_moe": return try qwenConfig(j, path: path, family: type)
        case "gpt_oss": return try gptOssConfig(j, path: path)
        default:
            throw LoadError(description: "\(path): model_type \"\(type)\" is not supported by the inference engine yet; supported: \(configOnlyFamilies.joined(separator: ", "))")
        }
    }

    static func int(_ j: [String: Any], _ k: String, _ path: String) throws -> Int {
        guard let v = j[k] as? Int else { throw LoadError(description: "\(path): missing or non-integer \"\(k)\"; the config is incomplete") }
        return v
    }

    /// The attention and norm part of a Llama-family config.
    static func baseConfig(_ j: [String: Any], path: String, modelType: String, intermediate: Int, moe: MoEConfig?) throws -> TransformerConfig {
        let d = try int(j, "hidden_size", path), heads = try int(j, "num_attention_heads", path)
        var c = TransformerConfig(
            vocabSize: try int(j, "vocab_size", path), hiddenSize: d, numLayers: try int(j, "num_hidden_layers", path),
            numHeads: heads, numKVHeads: j["num_key_value_heads"] as? Int ?? heads,
            headDim: j["head_dim"] as? Int ?? d / heads, intermediateSize: intermediate, moe: moe)
        c.modelType = modelType
        c.ropeTheta = plainRopeTheta(j)
        c.ropeScaling = try ropeScaling(j, path: path)
        c.rmsNormEps = j["rms_norm_eps"] as? Double ?? 1e-5
        c.tieWordEmbeddings = j["tie_word_embeddings"] as? Bool ?? false
        return c
    }

    /// The pipeline's end for a family whose config maps without the model: build it, open the weights, install
    /// them strictly through the family's name table.
    static func buildAndInstall(
        _ c: TransformerConfig, dir: String, family: String, names: (String) -> ModelFiles.TensorSource
    ) throws -> MoETransformer<Float> {
        let model = try build(c, path: dir + "/config.json")
        try ModelFiles.install(model.parameters, from: try SafetensorsCheckpoint(directory: dir), family: family, source: names)
        return model
    }

    static func build(_ c: TransformerConfig, path: String) throws -> MoETransformer<Float> {
        do { return try MoETransformer<Float>(c, seed: 0) } catch { throw LoadError(description: "\(path): \(error)") }
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
    static func ropeTheta(_ j: [String: Any], path: String) throws -> Double {
        if let y = try ropeScaling(j, path: path) {
            throw LoadError(description: "\(path): rope_type \"yarn\" (factor \(y.factor)) is not supported for this family yet; only default RoPE is")
        }
        return plainRopeTheta(j)
    }

    static func plainRopeTheta(_ j: [String: Any]) -> Double {
        number((j["rope_parameters"] as? [String: Any])?["rope_theta"] ?? j["rope_theta"]) ?? 10000
    }

    /// The YaRN parameters of `rope_parameters` (transformers 5) or `rope_scaling` (4.x), nil for default RoPE;
    /// other rope types are refused by name.
    static func ropeScaling(_ j: [String: Any], path: String) throws -> RopeScaling? {
        let dicts = [("rope_parameters", j["rope_parameters"] as? [String: Any]), ("rope_scaling", j["rope_scaling"] as? [String: Any])]
        for (key, d) in dicts {
            guard let d, let type = (d["rope_type"] ?? d["type"]) as? String, type != "default" else { continue }
            guard type == "yarn" else {
                throw LoadError(description: "\(path): \(key) type \"\(type)\" is not supported yet; only default RoPE and yarn are")
            }
            let maxPositions = j["max_position_embeddings"] as? Int
            guard let original = d["original_max_position_embeddings"] as? Int ?? maxPositions else {
                throw LoadError(description: "\(path): \(key) yarn needs original_max_position_embeddings; add it (the context the model was trained at)")
            }
            guard let factor = number(d["factor"]) ?? maxPositions.map({ Double($0) / Double(original) }) else {
                throw LoadError(description: "\(path): \(key) yarn needs a factor; add it")
            }
            var y = RopeScaling(factor: factor, originalMaxPositions: original)
            y.betaFast = number(d["beta_fast"]) ?? y.betaFast
            y.betaSlow = number(d["beta_slow"]) ?? y.betaSlow
            y.truncate = d["truncate"] as? Bool ?? true
            y.attentionFactor = number(d["attention_factor"])
            y.mscale = number(d["mscale"])
            y.mscaleAllDim = number(d["mscale_all_dim"])
            return y
        }
        return nil
    }

    /// `layer_types` with "sliding_attention" entries: those layers attend over the last `sliding_window` keys.
    /// With `nopeOnFullLayers` (EXAONE), the other layers use no rotary embedding when there is a window.
    static func slidingLayers(_ j: [String: Any], path: String, into c: inout TransformerConfig, nopeOnFullLayers: Bool) throws {
        guard let types = j["layer_types"] as? [String] else { return }
        guard types.count == c.numLayers else {
            throw LoadError(description: "\(path): layer_types has \(types.count) entries for \(c.numLayers) layers; give one per layer")
        }
        if let bad = types.first(where: { $0 != "sliding_attention" && $0 != "full_attention" }) {
            throw LoadError(description: "\(path): layer type \"\(bad)\" is not supported yet; only sliding_attention and full_attention are")
        }
        guard let window = j["sliding_window"] as? Int, types.contains("sliding_attention") else { return }
        c.slidingWindow = window
        c.slidingLayers = types.indices.filter { types[$0] == "sliding_attention" }
        if nopeOnFullLayers { c.nopeLayers = types.indices.filter { types[$0] == "full_attention" } }
    }

    /// `mlp_layer_types` (["dense", ..., "sparse", ...]) as a count of leading dense layers; other patterns
    /// are refused.
    static func denseLayerPrefix(_ j: [String: Any], path: String) throws -> Int? {
        guard let types = j["mlp_layer_types"] as? [String] else { return nil }
        let k = types.prefix { $0 == "dense" }.count
        guard types.dropFirst(k).allSatisfy({ $0 == "sparse" }) else {
            throw LoadError(description: "\(path): mlp_layer_types \(types) is not supported yet; only dense layers first, then sparse ones")
        }
        return k
    }

    /// A JSON number as Double (JSONSerialization gives Int for integral literals).
    static func number(_ v: Any?) -> Double? { (v as? Double) ?? (v as? Int).map(Double.init) }

    static func double(_ j: [String: Any], _ k: String, default d: Double) -> Double { number(j[k]) ?? d }
}
