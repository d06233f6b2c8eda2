import Foundation

/// Hugging Face checkpoints, loaded as a visible pipeline: read config.json -> map it to a
/// `TransformerConfig` -> read the safetensors -> rename and stack the tensors -> install, strictly (every
/// file tensor used, every parameter filled, every shape checked).
public enum HuggingFace {
    /// The `model_type`s this loader understands.
    public static let supported = ["mixtral", "swift_moe"]

    public struct LoadError: Error, CustomStringConvertible {
        public let description: String
    }

    /// Loads any supported checkpoint directory.
    public static func load(_ dir: String) throws -> MoETransformer<Float> {
        let path = dir + "/config.json"
        guard let data = FileManager.default.contents(atPath: path) else {
            throw LoadError(description: "\(path): not found; point at a model directory with config.json")
        }
        guard let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw LoadError(description: "\(path): not valid JSON; fix or re-download the file")
        }
        let type = json["model_type"] as? String ?? "(none)"
        switch type {
        case "swift_moe": return try ModelFiles.load(dir, as: Float.self)
        case "mixtral": return try loadMixtral(dir, config: json)
        default:
            throw LoadError(description: "\(path): unknown model_type \"\(type)\"; supported: \(supported.joined(separator: ", "))")
        }
    }

    static func int(_ j: [String: Any], _ k: String, _ path: String) throws -> Int {
        guard let v = j[k] as? Int else { throw LoadError(description: "\(path): missing or non-integer \"\(k)\"; the config is incomplete") }
        return v
    }

    /// Mixtral (`MixtralForCausalLM`): Llama attention, 8 SwiGLU experts per layer (`w1` gate, `w3` up, `w2`
    /// down), softmax top-2 routing with renormalized weights.
    static func loadMixtral(_ dir: String, config j: [String: Any]) throws -> MoETransformer<Float> {
        let path = dir + "/config.json"
        let d = try int(j, "hidden_size", path), heads = try int(j, "num_attention_heads", path)
        let f = try int(j, "intermediate_size", path)
        var moe = MoEConfig(
            hiddenSize: d, expertHiddenSize: f, numExperts: try int(j, "num_local_experts", path),
            expertsPerToken: try int(j, "num_experts_per_tok", path))
        moe.normalizeTopK = true
        moe.auxLossCoef = j["router_aux_loss_coef"] as? Double ?? 0
        var c = TransformerConfig(
            vocabSize: try int(j, "vocab_size", path), hiddenSize: d, numLayers: try int(j, "num_hidden_layers", path),
            numHeads: heads, numKVHeads: j["num_key_value_heads"] as? Int ?? heads,
            headDim: j["head_dim"] as? Int ?? d / heads, intermediateSize: f, moe: moe)
        c.modelType = "mixtral"
        let rope = (j["rope_parameters"] as? [String: Any])?["rope_theta"] ?? j["rope_theta"]
        c.ropeTheta = (rope as? Double) ?? (rope as? Int).map(Double.init) ?? 10000
        c.rmsNormEps = j["rms_norm_eps"] as? Double ?? 1e-5
        c.tieWordEmbeddings = j["tie_word_embeddings"] as? Bool ?? false
        let model: MoETransformer<Float>
        do { model = try MoETransformer<Float>(c, seed: 0) } catch { throw LoadError(description: "\(path): \(error)") }
        let file = try SafetensorsFile(path: dir + "/model.safetensors")
        var used = Set<String>()
        func take(_ name: String) throws -> Tensor<Float> {
            used.insert(name)
            return try file.tensor(name, as: Float.self)
        }
        var values: [String: Tensor<Float>] = [:]
        for p in model.parameters {
            let name = p.path
            if let r = name.range(of: ".mlp.experts.gate_up_proj") {
                let layer = "model." + name[..<r.lowerBound] + ".block_sparse_moe.experts."
                values[name] = Tensor.concat(try (0..<moe.numExperts).map { e in
                    Tensor.concat([try take(layer + "\(e).w1.weight"), try take(layer + "\(e).w3.weight")], axis: 0).reshaped([1, 2 * f, d])
                }, axis: 0)
            } else if let r = name.range(of: ".mlp.experts.down_proj") {
                let layer = "model." + name[..<r.lowerBound] + ".block_sparse_moe.experts."
                values[name] = Tensor.concat(try (0..<moe.numExperts).map { e in try take(layer + "\(e).w2.weight").reshaped([1, d, f]) }, axis: 0)
            } else if name == "lm_head.weight" {
                values[name] = try take(name)
            } else {
                values[name] = try take("model." + name.replacingOccurrences(of: ".mlp.gate.", with: ".block_sparse_moe.gate."))
            }
        }
        if let unused = file.names.first(where: { !used.contains($0) }) {
            throw SafetensorsError(file.path, tensor: unused, "is not used by the mixtral model built from config.json", hint: "the weights and the config disagree")
        }
        for p in model.parameters {
            let v = values[p.path]!
            guard v.shape == p.shape else {
                throw SafetensorsError(file.path, tensor: p.path, "has shape \(Shape.describe(v.shape)) but config.json needs \(Shape.describe(p.shape))", hint: "the weights and the config disagree")
            }
            p.value = v
        }
        return model
    }
}
