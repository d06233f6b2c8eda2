import ArgumentParser
import Foundation

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Benchmarks, each reported against this machine's ceilings measured in the same run.",
        subcommands: [BenchMachine.self, BenchCore.self, BenchLayer.self, BenchTrain.self])

    /// This executable, asked for sgemm rates: the child process that measures the matching kernel's ceiling.
    static var childCommand: [String]? {
        guard let exe = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") else { return nil }
        return [exe, "bench", "machine", "--sgemm-rates"]
    }
}
