import Foundation
import MoEAnalysis
import MoEInference

/// What runs a model directory: the inference engine on the weights as stored, or the reference model.
enum Runner {
    case engine(InferenceModel)
    case reference(MoETransformer<Float>)

    var config: TransformerConfig {
        switch self {
        case .engine(let m): return m.config
        case .reference(let m): return m.config
        }
    }
}

/// Resolves --checkpoint: a checkpoint directory, or a run directory whose newest checkpoint is used.
enum ModelLocation {
    static func checkpointDirectory(_ path: String) throws -> String {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue else {
            throw UsageError("\(path): not found; pass a checkpoint directory (runs/default/checkpoints/step-0001200) or a run directory (runs/default)")
        }
        if FileManager.default.fileExists(atPath: path + "/config.json") { return path }
        if !TrainCheckpoint.list(path + "/checkpoints").isEmpty {
            // The newest checkpoint whose manifest holds; unfinished or damaged ones are skipped with a warning.
            guard let newest = TrainCheckpoint.newestIntact(path + "/checkpoints", warn: warn) else {
                throw UsageError("\(path): no checkpoint there is intact (see the warnings); pass one explicitly or retrain")
            }
            return newest
        }
        throw UsageError("\(path): holds neither config.json nor checkpoints/; pass a checkpoint or run directory")
    }

    static func loadModel(_ path: String) throws -> (dir: String, model: MoETransformer<Float>) {
        let dir = try checkpointDirectory(path)
        do { return (dir, try ModelFiles.load(dir, as: Float.self)) } catch { throw UsageError("\(error)") }
    }

    /// A Hugging Face model directory (any supported model_type) or a swift-moe checkpoint or run directory.
    static func loadAny(_ path: String) throws -> MoETransformer<Float> {
        let dir = try checkpointDirectory(path)
        do { return try HuggingFace.load(dir) } catch { throw UsageError("\(error)") }
    }

    /// The engine when it runs this model's family and features (unless `reference`), else the reference model.
    static func runner(_ dir: String, reference: Bool) throws -> Runner {
        if !reference && InferenceModel.supports(directory: dir) {
            InferenceModel.guardMappedFiles()
            do { return .engine(try InferenceModel(directory: dir)) } catch { throw UsageError("\(error)") }
        }
        return .reference(try loadAny(dir))
    }

    static func tokenizer(_ dir: String, model: MoETransformer<Float>) throws -> (any TextTokenizer)? {
        try tokenizer(dir, modelType: model.config.modelType)
    }

    /// The model's tokenizer: tokenizer.json in a Hugging Face directory, bytes for swift-moe's own models,
    /// nil when there is none.
    static func tokenizer(_ dir: String, modelType: String) throws -> (any TextTokenizer)? {
        let path = dir + "/tokenizer.json"
        if FileManager.default.fileExists(atPath: path) {
            do { return try Tokenizer(contentsOf: path) } catch { throw UsageError("\(error)") }
        }
        return modelType == "swift_moe" ? ByteTokenizer() : nil
    }

    /// End-of-sequence ids from generation_config.json (`eos_token_id`, one id or a list); none without the file.
    static func endTokens(_ dir: String) throws -> Set<Int> {
        let path = dir + "/generation_config.json"
        guard let data = FileManager.default.contents(atPath: path) else { return [] }
        do { return try HuggingFace.endTokens(data, path: path) } catch { throw UsageError("\(error)") }
    }
}
