import Foundation

/// A model directory: `config.json` and `model.safetensors` (weights and buffers keyed by parameter path).
/// Loading is a pipeline with a strict end: read the files -> match names -> install, and any missing,
/// unused or mis-shaped tensor stops it with the file, the tensor and the fix.
public enum ModelFiles {
    public static func saveConfig(_ config: TransformerConfig, to dir: String) throws {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        try AtomicFile.write(try enc.encode(config), to: dir + "/config.json")
    }

    public static func loadConfig(from dir: String) throws -> TransformerConfig {
        let path = dir + "/config.json"
        guard FileManager.default.fileExists(atPath: path) else {
            throw ModelFileError(path, "not found", hint: "point at a directory that holds config.json and model.safetensors")
        }
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        let config: TransformerConfig
        do {
            config = try JSONDecoder().decode(TransformerConfig.self, from: data)
        } catch let DecodingError.keyNotFound(key, _) {
            throw ModelFileError(path, "lacks the key \"\(key.stringValue)\"", hint: "add it, or re-export the model")
        } catch let DecodingError.typeMismatch(_, ctx) {
            throw ModelFileError(path, "has a value of the wrong type at \(ctx.codingPath.map(\.stringValue).joined(separator: "."))", hint: "fix the value")
        } catch let DecodingError.dataCorrupted(ctx) where ctx.codingPath.isEmpty {
            if let key = fractionalSize(data) {
                throw ModelFileError(path, "has a fraction at \(key), which takes a whole number", hint: "fix the value")
            }
            throw ModelFileError(path, "is not valid JSON", hint: "fix or re-export the file")
        } catch {
            throw ModelFileError(path, "cannot be decoded (\(error))", hint: "fix or re-export the file")
        }
        do { try config.validate() } catch { throw ModelFileError(path, "\(error)", hint: "fix the config") }
        return config
    }

    /// The key whose fractional value the decoder could not take as an integer (it names none): the first
    /// one, top level or in `moe`/`mla`/`peer`, whose floor makes the config decode.
    static func fractionalSize(_ data: Data) -> String? {
        guard let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { return nil }
        var paths: [[String]] = json.keys.sorted().map { [$0] }
        for (k, v) in json { if let o = v as? [String: Any] { paths += o.keys.sorted().map { [k, $0] } } }
        for p in paths {
            var copy = json
            let value = p.count == 1 ? copy[p[0]] : (copy[p[0]] as? [String: Any])?[p[1]]
            guard let n = value as? NSNumber, n.doubleValue.isFinite, n.doubleValue != n.doubleValue.rounded() else { continue }
            if p.count == 1 { copy[p[0]] = Int(n.doubleValue.rounded(.down)) } else {
                var inner = copy[p[0]] as! [String: Any]
                inner[p[1]] = Int(n.doubleValue.rounded(.down))
                copy[p[0]] = inner
            }
            if let fixed = try? JSONSerialization.data(withJSONObject: copy), (try? JSONDecoder().decode(TransformerConfig.self, from: fixed)) != nil {
                return p.joined(separator: ".")
            }
        }
        return nil
    }

    public static func saveWeights<T>(_ model: MoETransformer<T>, to path: String) throws {
        let all = model.parameters + model.buffers
        try SafetensorsWriter.write(all.map { p in (p.path, payload(p.value)) }, metadata: ["format": "pt"], to: path)
    }

    static func payload<T: TensorScalar>(_ t: Tensor<T>) -> SafetensorsWriter.Payload {
        if let f = t as? Tensor<Float> { return .float(f) }
        return .double(t as! Tensor<Double>)
    }

    /// Installs every tensor of `path` into the model; throws on missing, unused or mis-shaped tensors.
    public static func loadWeights<T>(_ model: MoETransformer<T>, from path: String) throws {
        try install(model.parameters + model.buffers, from: SafetensorsCheckpoint(file: try SafetensorsFile(path: path)), family: model.config.modelType) { .tensor($0) }
    }

    /// Where a parameter's value comes from in a file: one tensor, or per-expert tensors stacked on a new
    /// leading axis (each entry a list concatenated along its first axis, e.g. gate then up).
    public enum TensorSource {
        case tensor(String)
        case stacked([[String]])
        /// Built from the named tensors by a function (a slice of a fused projection, a transpose...).
        case derived([String], ([Tensor<Float>]) -> Tensor<Float>)
        /// A file tensor whose stored shape is not the family's layout (`needed`): refused by name.
        case misshapen(String, needed: [Int])

        var names: [String] {
            switch self {
            case .tensor(let n): return [n]
            case .stacked(let groups): return groups.flatMap { $0 }
            case .derived(let names, _): return names
            case .misshapen(let name, _): return [name]
            }
        }
    }

    /// The strict end of every loading pipeline: each target's value is read through `source`; a file tensor
    /// no target uses, a missing tensor or a wrong shape throws, naming the file and the tensor, and nothing
    /// is installed unless every target passed.
    public static func install<T>(
        _ targets: [Parameter<T>], from file: SafetensorsCheckpoint, family: String, source: (String) -> TensorSource
    ) throws {
        let plan = targets.map { ($0, source($0.path)) }
        let used = Set(plan.flatMap { $0.1.names })
        if let unused = file.logicalNames.first(where: { !used.contains($0) }) {
            throw SafetensorsError(file.file(of: unused), tensor: unused, "is not used by the \(family) model built from config.json", hint: "the weights and the config disagree")
        }
        var values: [Tensor<T>] = []
        for (p, src) in plan {
            let v: Tensor<T>
            switch src {
            case .tensor(let name):
                v = try file.tensor(name, as: T.self)
            case .derived(let names, let build):
                let built = build(try names.map { try file.tensor($0, as: Float.self) })
                v = Tensor<T>(converting: built)
            case .misshapen(let name, let needed):
                let stored = file.shard(holding: name)?.mxfp4[name]?.shape ?? file.info(name)?.shape ?? []
                throw SafetensorsError(file.file(of: name), tensor: name, "has shape \(Shape.describe(stored)) but the \(family) layout stores it as \(Shape.describe(needed))", hint: "the weights and the config disagree")
            case .stacked(let experts):
                v = Tensor.concat(try experts.map { parts in
                    let t = try Tensor.concat(parts.map { try file.tensor($0, as: T.self) }, axis: 0)
                    return t.reshaped([1] + t.shape)
                }, axis: 0)
            }
            guard v.shape == p.shape else {
                throw SafetensorsError(file.file(of: src.names[0]), tensor: src.names.count == 1 ? src.names[0] : p.path, "has shape \(Shape.describe(v.shape)) but config.json needs \(Shape.describe(p.shape))", hint: "the weights and the config disagree")
            }
            values.append(v)
        }
        for ((p, _), v) in zip(plan, values) { p.value = v }
    }

    /// Builds the model described by `dir/config.json` and loads `dir/model.safetensors`.
    public static func load<T>(_ dir: String, as: T.Type = T.self) throws -> MoETransformer<T> {
        let config = try loadConfig(from: dir)
        let file = SafetensorsCheckpoint(file: try SafetensorsFile(path: dir + "/model.safetensors"))
        try HuggingFace.checkSizes(config, against: file, path: dir + "/config.json") { .tensor($0) }
        let model = try MoETransformer<T>(config, seed: 0)
        try install(model.parameters + model.buffers, from: file, family: model.config.modelType) { .tensor($0) }
        return model
    }
}

public struct ModelFileError: Error, CustomStringConvertible {
    public let path: String, problem: String, hint: String
    public init(_ path: String, _ problem: String, hint: String) {
        self.path = path
        self.problem = problem
        self.hint = hint
    }
    public var description: String { "\(path): \(problem); \(hint)" }
}
