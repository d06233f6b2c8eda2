import ArgumentParser
import Foundation
import MoEBenchmarks
import MoEInference

struct BenchModel: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "model",
        abstract: "A whole checkpoint on the inference engine (M1): load, peak memory, prefill, batch-1 decode at depth 0 and after the prompt.")

    @Option(help: "Model directory (config.json and safetensors: f32, bf16, f16, or from moe quantize).") var model: String
    @Option(help: "Prompt length for prefill and for the deep decode.") var promptTokens = 512
    @Option(help: "Tokens decoded per timed run.") var newTokens = 128
    @Option(help: "Timed runs (at least 5), after one warm-up.") var runs = 5
    @Option(help: "KV cache: f32 (exact) or f16 (as llama.cpp keeps it by default).") var kvCache = "f32"
    @Flag(help: "Print one JSON object instead of the table.") var json = false

    func run() throws {
        guard runs >= 5 && runs <= 1000 else { throw UsageError("invalid --runs \(runs): use between 5 and 1000 runs") }
        guard promptTokens >= 1 && promptTokens <= 1_000_000 else { throw UsageError("invalid --prompt-tokens \(promptTokens): use between 1 and 1000000") }
        guard newTokens >= 1 && newTokens <= 1_000_000 else { throw UsageError("invalid --new-tokens \(newTokens): use between 1 and 1000000") }
        let kv = try InferenceSession.KVCache.option(kvCache)
        var failure: Error?
        Bench.report(json: json) {
            do { return try ModelBenchmark.run(model: model, promptTokens: promptTokens, newTokens: newTokens, runs: runs, kvCache: kv) } catch {
                failure = error
                return nil
            }
        }
        if let failure { throw failure }
    }
}
