import ArgumentParser
import MoEBenchmarks

struct BenchTrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train", abstract: "Training step T1 (the default moe train model and batch): throughput, FLOP utilization, memory.")

    @Option(help: "Timed runs (at least 5), after one warm-up.") var runs = 5
    @Option(help: "Optimizer steps per timed run.") var stepsPerRun = 5
    @Flag(help: "Print one JSON object instead of the table.") var json = false

    func run() throws {
        guard runs >= 5 && runs <= 1000 else { throw UsageError("invalid --runs \(runs): use between 5 and 1000 runs") }
        guard stepsPerRun >= 1 && stepsPerRun <= 10_000 else { throw UsageError("invalid --steps-per-run \(stepsPerRun): use between 1 and 10000") }
        Bench.report(json: json) { TrainBenchmark.run(runs: runs, stepsPerRun: stepsPerRun) }
    }
}
