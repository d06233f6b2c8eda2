import ArgumentParser

@main
struct MoECommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "moe",
        abstract: "swift-moe: mixture-of-experts models, from the 1991 mixture of local experts on.",
        subcommands: [Train.self, Generate.self, Eval.self, Inspect.self, Logits.self, Export.self, Classic.self, Bench.self],
        defaultSubcommand: Train.self)
}

/// A problem with the user's input: printed as one line ("Error: ...") with a non-zero exit.
struct UsageError: Error, CustomStringConvertible {
    let description: String
    init(_ message: String) { description = message }
}
