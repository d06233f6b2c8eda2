import ArgumentParser
import Foundation
import MoEAnalysis

struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Generate text from a trained checkpoint, streamed to stdout.")

    @Option(help: "Checkpoint directory, or a run directory (its newest checkpoint).") var checkpoint: String
    @Option(help: "The prompt.") var prompt: String
    @Option(help: "0 is greedy decoding.") var temperature = 0.8
    @Option(name: .customLong("top-k"), help: "Keep the k most likely tokens (0 = all).") var topK = 0
    @Option(name: .customLong("top-p"), help: "Nucleus: keep the most likely tokens up to this probability mass.") var topP = 1.0
    @Option(name: .customLong("min-p"), help: "Keep tokens at least this fraction as likely as the best (0 = off).") var minP = 0.0
    @Option(help: "Penalize tokens already in the context (> 1).") var repetitionPenalty = 1.0
    @Option(help: "Sampling seed.") var seed: UInt64 = 0
    @Option(help: "Tokens to generate at most.") var maxNewTokens = 200
    @Option(help: "Stop when the text ends with this string (repeatable). Escapes \\n and \\t are understood.") var stop: [String] = []
    @Flag(help: "Recompute the whole context each step instead of using the KV cache.") var noCache = false

    func run() throws {
        var o = SamplingOptions()
        o.temperature = temperature
        o.topK = topK
        o.topP = topP
        o.minP = minP
        o.repetitionPenalty = repetitionPenalty
        o.seed = seed
        o.maxNewTokens = maxNewTokens
        o.stop = stop.map { $0.replacingOccurrences(of: "\\n", with: "\n").replacingOccurrences(of: "\\t", with: "\t") }
        do { try o.validate() } catch { throw UsageError("\(error)") }
        let (_, model) = try ModelLocation.loadModel(checkpoint)
        let ids = ByteTokenizer().encode(prompt)
        guard !ids.isEmpty else { throw UsageError("invalid --prompt: give at least one character") }
        let out = FileHandle.standardOutput
        out.write(Data(prompt.utf8))
        _ = Generator.generate(model, prompt: ids, options: o, useCache: !noCache) { out.write(Data($0.utf8)) }
        out.write(Data("\n".utf8))
    }
}
