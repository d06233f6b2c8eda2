import ArgumentParser
import Foundation
import MoEAnalysis
import MoEInference

struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Generate text from a trained checkpoint, streamed to stdout.")

    @Option(help: "Checkpoint directory, or a run directory (its newest checkpoint).") var checkpoint: String?
    @Option(help: "Model directory (Hugging Face format or a swift-moe checkpoint); the same as --checkpoint.") var model: String?
    @Option(help: "The prompt text (encoded with the model's tokenizer.json, or as bytes for swift-moe models).") var prompt: String?
    @Option(help: "The prompt as comma-separated token ids.") var ids: String?
    @Option(help: "The prompt text from a UTF-8 file.") var promptFile: String?
    @Option(help: "Output: text (streamed) or json ({\"ids\": [...], \"text\": ...}).") var format = "text"
    @Option(help: "0 is greedy decoding.") var temperature = 0.8
    @Option(name: .customLong("top-k"), help: "Keep the k most likely tokens (0 = all).") var topK = 0
    @Option(name: .customLong("top-p"), help: "Nucleus: keep the most likely tokens up to this probability mass.") var topP = 1.0
    @Option(name: .customLong("min-p"), help: "Keep tokens at least this fraction as likely as the best (0 = off).") var minP = 0.0
    @Option(help: "Penalize tokens already in the context (> 1).") var repetitionPenalty = 1.0
    @Option(help: "Sampling seed.") var seed: UInt64 = 0
    @Option(help: "Tokens to generate at most (default 200, or what the context has room for after the prompt).") var maxNewTokens: Int?
    @Option(help: "Stop when the text ends with this string (repeatable). Escapes \\n and \\t are understood.") var stop: [String] = []
    @Option(help: "The inference engine's KV cache: f32 (exact) or f16 (half the memory and the bytes a deep decode step reads).") var kvCache = "f32"
    @Flag(help: "Recompute the whole context each step instead of using the KV cache (runs the reference model).") var noCache = false
    @Flag(help: "Run the reference model (weights widened to f32) instead of the inference engine, which runs mixtral, qwen2_moe, qwen3_moe, olmoe and gpt_oss checkpoints on their weights as stored.")
    var reference = false
    @Flag(name: .customLong("ignore-eos"), help: "Keep generating past the end-of-sequence tokens of generation_config.json.") var ignoreEOS = false

    func run() throws {
        var o = SamplingOptions()
        o.temperature = temperature
        o.topK = topK
        o.topP = topP
        o.minP = minP
        o.repetitionPenalty = repetitionPenalty
        o.seed = seed
        o.maxNewTokens = maxNewTokens ?? 200
        o.stop = stop.map { $0.replacingOccurrences(of: "\\n", with: "\n").replacingOccurrences(of: "\\t", with: "\t") }
        do { try o.validate() } catch { throw UsageError("\(error)") }
        let kv = try InferenceSession.KVCache.option(kvCache)
        guard format == "text" || format == "json" else { throw UsageError("invalid --format \(format): use text or json") }
        guard let location = checkpoint ?? model else { throw UsageError("missing --model (or --checkpoint): the model directory to generate with") }
        guard [prompt, ids, promptFile].compactMap({ $0 }).count == 1 else { throw UsageError("give exactly one of --prompt, --prompt-file and --ids") }
        let text = try prompt ?? promptFile.map(Self.readPrompt)
        let dir = try ModelLocation.checkpointDirectory(location)
        let runner = try ModelLocation.runner(dir, reference: reference || noCache)
        if kv != .f32, case .reference = runner {
            throw UsageError("--kv-cache \(kvCache) applies to the inference engine only; this run uses the reference model (\(reference || noCache ? "--reference or --no-cache" : "model_type \(runner.config.modelType)")): drop --kv-cache")
        }
        let tokenizer = try ModelLocation.tokenizer(dir, modelType: runner.config.modelType)
        if !ignoreEOS { o.endTokens = try ModelLocation.endTokens(dir) }
        guard text == nil || tokenizer != nil else {
            throw UsageError("\(dir) has no tokenizer.json; pass the prompt as --ids")
        }
        let vocabulary = runner.config.vocabSize
        let promptIDs = try text.map { tokenizer!.encode($0) } ?? parseIDs(ids!, vocabulary: vocabulary)
        guard !promptIDs.isEmpty else { throw UsageError("invalid \(promptFile == nil ? "--prompt" : "--prompt-file \(promptFile!)"): give at least one character") }
        // The model's context bounds prompt plus generation: an explicit --max-new-tokens beyond it is refused,
        // the default shrinks to fit.
        let context = runner.config.maxPositions
        guard promptIDs.count < context else {
            throw UsageError("the prompt's \(promptIDs.count) tokens fill the model's context of \(context) (max_position_embeddings); shorten the prompt")
        }
        if let n = maxNewTokens, promptIDs.count + n > context {
            throw UsageError("--max-new-tokens \(n) after the prompt's \(promptIDs.count) tokens goes beyond the model's context of \(context) (max_position_embeddings); use at most \(context - promptIDs.count)")
        }
        o.maxNewTokens = min(o.maxNewTokens, context - promptIDs.count)
        guard promptIDs.allSatisfy({ $0 < vocabulary }) else {
            throw UsageError("the tokenizer gives ids beyond the model's vocabulary of \(vocabulary); check that tokenizer.json belongs to this model")
        }
        func generate(_ emit: ((String) -> Void)?) -> [Int] {
            switch runner {
            case .reference(let m): return Generator.generate(m, prompt: promptIDs, options: o, useCache: !noCache, tokenizer: tokenizer, emit: emit)
            case .engine(let m):
                let session = InferenceSession(model: m, capacity: promptIDs.count + o.maxNewTokens, kvCache: kv)
                return Generator.generate(prompt: promptIDs, options: o, tokenizer: tokenizer, emit: emit) { input, _ in session.forward(input).scalars }
            }
        }
        let out = FileHandle.standardOutput
        if format == "json" {
            let new = generate(nil)
            var obj: [String: Any] = ["ids": new]
            if let tokenizer { obj["text"] = tokenizer.decode(new) }
            say(String(decoding: try JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys]), as: UTF8.self))
            return
        }
        guard let tokenizer else { throw UsageError("\(dir) has no tokenizer.json to print text with; use --format json for ids") }
        out.write(Data((prompt ?? tokenizer.decode(promptIDs)).utf8))
        _ = generate { out.write(Data($0.utf8)) }
        out.write(Data("\n".utf8))
    }

    /// A prompt file's text: it must exist, be a regular file and hold valid UTF-8.
    static func readPrompt(_ path: String) throws -> String {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else { throw UsageError("--prompt-file \(path): not found") }
        guard !isDir.boolValue, let data = FileManager.default.contents(atPath: path) else {
            throw UsageError("--prompt-file \(path): \(isDir.boolValue ? "is a directory" : "cannot be read"); pass a UTF-8 text file")
        }
        guard let text = String(validating: data, as: UTF8.self) else {
            // The offset of the first byte that starts no valid sequence (one pass).
            var parser = Unicode.UTF8.ForwardParser(), bytes = data.makeIterator(), bad = 0
            scan: while true {
                switch parser.parseScalar(from: &bytes) {
                case .valid(let s): bad += s.count
                case .error: break scan
                case .emptyInput: break scan
                }
            }
            throw UsageError("--prompt-file \(path): not valid UTF-8 (near byte \(bad)); save it as UTF-8")
        }
        return text
    }
}

extension InferenceSession.KVCache {
    /// The `--kv-cache` option of generate and bench model, or a one-line error.
    static func option(_ value: String) throws -> Self {
        guard let kv = Self(rawValue: value) else {
            throw UsageError("invalid --kv-cache \(value): use \(allCases.map(\.rawValue).joined(separator: " or "))")
        }
        return kv
    }
}
