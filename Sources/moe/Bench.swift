import ArgumentParser
import Foundation
import MoEBenchmarks

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Benchmarks, each reported against this machine's ceilings measured in the same run.",
        subcommands: [BenchMachine.self, BenchCore.self, BenchLayer.self, BenchTrain.self, BenchModel.self, BenchPEER.self])

    /// This executable, asked for sgemm rates: the child process that measures the matching kernel's ceiling.
    static var childCommand: [String]? {
        guard let exe = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") else { return nil }
        return [exe, "bench", "machine", "--sgemm-rates"]
    }

    /// Runs a benchmark with its ceiling's child process wired to this executable, and prints the report.
    static func report(json: Bool, _ run: () -> BenchReport?) {
        Machine.childCommand = childCommand
        guard let report = run() else { return }
        print(json ? report.json() : report.table())
    }
}
