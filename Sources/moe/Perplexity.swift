import ArgumentParser
import Foundation
import MoEAnalysis
import MoEInference

struct PerplexityCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "perplexity",
        abstract: "Cross-entropy of a model on a text; with --baseline, the top-1 agreement and KL divergence against another model (the cost of quantization).")

    @Option(help: "Model directory the inference engine runs (f32, bf16, f16, or from moe quantize).") var model: String
    @Option(help: "Baseline model on the same tokenizer (the model --model was quantized from).") var baseline: String?
    @Option(help: "A UTF-8 text file, or `builtin` for the validation split of the built-in corpus (seed 1; byte models).") var text: String
    @Option(help: "Tokens per window, each run from an empty cache.") var context = 256
    @Option(help: "Score at most this many tokens.") var maxTokens = 4096
    @Flag(help: "Feed the text's UTF-8 bytes as token ids (swift-moe's byte models exported without a tokenizer.json).") var bytes = false
    @Flag(help: "Print one JSON object.") var json = false

    func run() throws {
        guard context >= 2 && context <= 1_000_000 else { throw UsageError("invalid --context \(context): use between 2 and 1000000") }
        guard maxTokens >= 2 else { throw UsageError("invalid --max-tokens \(maxTokens): use at least 2") }
        let dir = try ModelLocation.checkpointDirectory(model)
        guard InferenceModel.supports(directory: dir) else {
            throw UsageError("\(dir): perplexity runs on the inference engine, which does not run this model; supported: \(HuggingFace.configOnlyFamilies.joined(separator: ", "))")
        }
        InferenceModel.guardMappedFiles()
        let m: InferenceModel
        do { m = try InferenceModel(directory: dir) } catch { throw UsageError("\(error)") }
        var base: InferenceModel? = nil
        if let b = baseline {
            let bdir = try ModelLocation.checkpointDirectory(b)
            let b: InferenceModel
            do { b = try InferenceModel(directory: bdir) } catch { throw UsageError("\(error)") }
            guard b.config.vocabSize == m.config.vocabSize else {
                throw UsageError("--baseline \(bdir) has a vocabulary of \(b.config.vocabSize), --model \(m.config.vocabSize); compare models of one tokenizer")
            }
            base = b
        }
        let ids = try ModelLocation.textTokens(text, dir: dir, config: m.config, bytes: bytes, maxTokens: maxTokens).ids
        let r = Perplexity.run(model: m, baseline: base, tokens: ids, context: Swift.min(context, m.config.maxPositions))
        if json {
            let enc = JSONEncoder()
            enc.outputFormatting = [.sortedKeys]
            say(String(decoding: try enc.encode(r), as: UTF8.self))
            return
        }
        say(String(format: "%d tokens: cross-entropy %.4f nats/token (perplexity %.3f)", r.tokens, r.crossEntropy, r.perplexity))
        if let b = r.baselineCrossEntropy, let a = r.topOneAgreement, let kl = r.meanKL {
            say(String(format: "baseline: %.4f nats/token; difference %+.4f; top-1 agreement %.2f%%; mean KL(baseline || model) %.5f nats",
                       b, r.crossEntropy - b, a * 100, kl))
        }
    }
}
