import ArgumentParser
import Foundation
import MoETensor

@main
struct MoECommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "moe",
        abstract: "swift-moe: mixture-of-experts models, from the 1991 mixture of local experts on.",
        subcommands: [Train.self, Generate.self, Eval.self, Inspect.self, Logits.self, Export.self, Quantize.self, PerplexityCommand.self, Classic.self, Upcycle.self, ExperimentCommand.self, Analyze.self, Bench.self],
        defaultSubcommand: Train.self)

    /// Loads the BLAS before anything else, so that a missing or unidentifiable library is one line and exit 1.
    static func main() {
        // A file-size limit (ulimit -f) makes a write fail with EFBIG, reported like a full disk, instead of
        // killing the process mid-write.
        signal(SIGXFSZ, SIG_IGN)
        do { try BLAS.load() } catch {
            warn("Error: \(error)")
            Foundation.exit(1)
        }
        main(nil)
    }
}

/// A problem with the user's input: printed as one line ("Error: ...") with a non-zero exit.
struct UsageError: Error, CustomStringConvertible {
    let description: String
    init(_ message: String) { description = message }
}
