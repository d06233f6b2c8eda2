import ArgumentParser

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Benchmarks, each reported against this machine's ceilings measured in the same run.",
        subcommands: [BenchCore.self, BenchLayer.self, BenchTrain.self])
}
