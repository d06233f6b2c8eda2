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

    /// The token ids of --text (a UTF-8 file, or `builtin`: the built-in corpus' validation split for byte models),
    /// at most `maxTokens` of them, with each token's text: through the model's tokenizer.json, or as UTF-8 bytes
    /// with `bytes`. At least 2 tokens, all inside the vocabulary, or one line naming the problem.
    static func textTokens(_ text: String, dir: String, config c: TransformerConfig, bytes: Bool, maxTokens: Int) throws -> (ids: [Int], pieces: [String]) {
        let asBytes = { (ids: [Int]) in ids.map { String(decoding: [UInt8(truncatingIfNeeded: $0)], as: UTF8.self) } }
        var ids: [Int], pieces: [String]
        if text == "builtin" {
            guard c.vocabSize >= 256 else { throw UsageError("--text builtin is the byte corpus; the model's vocabulary is \(c.vocabSize), under 256: give a text file") }
            ids = Array(TextDataset(seed: 1).validation.prefix(maxTokens))
            pieces = asBytes(ids)
        } else {
            guard let data = FileManager.default.contents(atPath: text), !data.isEmpty else {
                throw UsageError("--text \(text): missing or empty; give a UTF-8 text file or `builtin`")
            }
            guard let s = String(data: data, encoding: .utf8) else { throw UsageError("--text \(text): not UTF-8; convert it") }
            if bytes {
                ids = Array(s.utf8.prefix(maxTokens)).map(Int.init)
                pieces = asBytes(ids)
            } else {
                guard let tok = try tokenizer(dir, modelType: c.modelType) else {
                    throw UsageError("\(dir) has no tokenizer.json; pass --bytes for a byte model")
                }
                ids = Array(tok.encode(s).prefix(maxTokens))
                pieces = ids.map { tok.decode([$0]) }
            }
        }
        guard ids.count >= 2 else { throw UsageError("--text \(text): fewer than 2 tokens; give a longer text") }
        if let bad = ids.first(where: { $0 >= c.vocabSize }) {
            throw UsageError("token id \(bad) is beyond the model's vocabulary of \(c.vocabSize); check the tokenizer (or --bytes)")
        }
        return (ids, pieces)
    }

    /// End-of-sequence ids from generation_config.json (`eos_token_id`, one id or a list); none without the file.
    static func endTokens(_ dir: String) throws -> Set<Int> {
        let path = dir + "/generation_config.json"
        guard let data = FileManager.default.contents(atPath: path) else { return [] }
        do { return try HuggingFace.endTokens(data, path: path) } catch { throw UsageError("\(error)") }
    }
}
