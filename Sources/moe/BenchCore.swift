import ArgumentParser
import MoEBenchmarks

struct BenchCore: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "core",
        abstract: "Tensor core: matmul API overhead, elementwise and softmax bandwidth, attention forward+backward.")

    @Option(help: "Timed runs per figure (at least 5), after one warm-up.") var runs = 5
    @Flag(help: "Print one JSON object instead of the table.") var json = false

    func run() throws {
        guard runs >= 5 && runs <= 1000 else { throw UsageError("invalid --runs \(runs): use between 5 and 1000 runs") }
        Bench.report(json: json) { CoreBenchmark.run(runs: runs) }
    }
}
