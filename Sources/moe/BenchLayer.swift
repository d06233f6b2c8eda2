import ArgumentParser
import MoEBenchmarks

struct BenchLayer: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "layer",
        abstract: "MoE block: shapes L1 (Mixtral-style) and L2 (fine-grained + shared), forward and forward+backward.")

    @Option(help: "Which shape: L1, L2, T1-layer (the default training model's MoE layer) or all.") var shape = "all"
    @Option(help: "Timed runs per figure (at least 5), after one warm-up.") var runs = 5
    @Flag(help: "Print one JSON object instead of the table.") var json = false

    func run() throws {
        guard runs >= 5 && runs <= 1000 else { throw UsageError("invalid --runs \(runs): use between 5 and 1000 runs") }
        let shapes: [LayerBenchmark.ShapeID]
        if shape == "all" {
            shapes = LayerBenchmark.ShapeID.allCases
        } else if let s = LayerBenchmark.ShapeID(rawValue: shape) {
            shapes = [s]
        } else {
            throw UsageError("invalid --shape \(shape): use L1, L2, T1-layer or all")
        }
        Bench.report(json: json) { LayerBenchmark.run(shapes: shapes, runs: runs) }
    }
}
