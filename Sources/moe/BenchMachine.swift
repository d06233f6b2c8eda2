import ArgumentParser
import Foundation
import MoEBenchmarks
import MoETensor

struct BenchMachine: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "machine",
        abstract: "The machine and its ceilings: CPU and vector ISA, the BLAS and its kernel, the vector FMA peak, and the sgemm ceiling with the kernel that matches the ISA.")

    @Option(help: "Timed runs per figure (at least 5), after one warm-up.") var runs = 5
    @Flag(help: "Print one JSON object instead of the table.") var json = false
    /// The child process of a ceiling measurement: prints {"kernel", "rates"} for this process's BLAS.
    @Option(help: .hidden) var sgemmRates: Int?

    func run() throws {
        if let n = sgemmRates {
            guard n >= 1 && n <= 1000 else { throw UsageError("invalid --sgemm-rates \(n): use between 1 and 1000 runs") }
            let r = Machine.ChildRates(kernel: BLAS.info.kernel, rates: Measure.sgemmRates(runs: n, direct: true))
            print(String(decoding: try JSONEncoder().encode(r), as: UTF8.self))
            return
        }
        guard runs >= 5 && runs <= 1000 else { throw UsageError("invalid --runs \(runs): use between 5 and 1000 runs") }
        Bench.report(json: json) { MachineBenchmark.run(runs: runs) }
    }
}
