import ArgumentParser
import MoEBenchmarks

struct BenchPEER: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "peer",
        abstract: "One PEER layer at N = 128², 512² and 1024² experts: forward and forward+backward tok/s, peak memory.")

    @Option(help: "Expert counts, comma-separated; each a square n² (default 16384,262144,1048576).") var sizes: String?
    @Option(help: "Model dimension D.") var dim = 256
    @Option(help: "Heads H.") var heads = 8
    @Option(name: .customLong("top-k"), help: "Experts per head K.") var topK = 16
    @Option(help: "Key width per half.") var keyDim = 128
    @Option(help: "Tokens per batch.") var tokens = 2048
    @Option(help: "Timed runs per figure (at least 5), after one warm-up.") var runs = 5
    @Flag(help: "Print one JSON object instead of the table.") var json = false

    func run() throws {
        guard runs >= 5 && runs <= 1000 else { throw UsageError("invalid --runs \(runs): use between 5 and 1000 runs") }
        guard tokens >= 1 && tokens <= 65536 else { throw UsageError("invalid --tokens \(tokens): use between 1 and 65536") }
        var o = PEERBenchmark.Options()
        if let sizes {
            o.sizes = try parseIntegers(sizes, option: "--sizes", what: "expert counts such as 16384,262144")
        }
        (o.dim, o.heads, o.expertsPerHead, o.keyDim, o.tokens, o.runs) = (dim, heads, topK, keyDim, tokens, runs)
        do { _ = try PEERBenchmark.configs(o) } catch { throw UsageError("\(error)") }
        Bench.report(json: json) { try? PEERBenchmark.run(o) }
    }
}
