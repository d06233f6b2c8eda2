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
            throw ModelFileError(path, "is not valid JSON", hint: "fix or re-export the file")
        } catch {
            throw ModelFileError(path, "cannot be decoded (\(error))", hint: "fix or re-export the file")
        }
        do { try config.validate() } catch { throw ModelFileError(path, "\(error)", hint: "fix the config") }
        return config
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
        let file = try SafetensorsFile(path: path)
        let targets = model.parameters + model.buffers
        let wanted = Set(targets.map(\.path))
        if let unused = file.names.first(where: { !wanted.contains($0) }) {
            throw SafetensorsError(path, tensor: unused, "is not a parameter of this model", hint: "the weights belong to another config; check config.json")
        }
        for p in targets {
            guard let info = file.info(p.path) else {
                throw SafetensorsError(path, tensor: p.path, "is missing", hint: "the weights do not match config.json; re-save the checkpoint")
            }
            guard info.shape == p.shape else {
                throw SafetensorsError(path, tensor: p.path, "has shape \(Shape.describe(info.shape)) but the config needs \(Shape.describe(p.shape))", hint: "the weights do not match config.json")
            }
            p.value = try file.tensor(p.path, as: T.self)
        }
    }

    /// Builds the model described by `dir/config.json` and loads `dir/model.safetensors`.
    public static func load<T>(_ dir: String, as: T.Type = T.self) throws -> MoETransformer<T> {
        let config = try loadConfig(from: dir)
        let model = try MoETransformer<T>(config, seed: 0)
        try loadWeights(model, from: dir + "/model.safetensors")
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
