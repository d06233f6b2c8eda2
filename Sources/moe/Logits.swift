import ArgumentParser
import Foundation
import MoEAnalysis
import MoEInference

/// Parses "1,2,3" into token ids, or explains what is wrong.
func parseIDs(_ s: String, vocabulary: Int) throws -> [Int] {
    let parts = s.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
    guard !parts.isEmpty, parts.allSatisfy({ !$0.isEmpty }) else {
        throw UsageError("invalid --ids \"\(s)\": give comma-separated token ids such as 1,2,3")
    }
    return try parts.map { p in
        guard let v = Int(p) else { throw UsageError("invalid --ids \"\(s)\": \"\(p)\" is not an integer") }
        guard v >= 0 && v < vocabulary else { throw UsageError("invalid --ids \"\(s)\": \(v) is outside the vocabulary of \(vocabulary)") }
        return v
    }
}

struct Logits: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the logits of token sequences as JSON: {\"logits\": [sequence][position][vocabulary]}, float32 at full precision.")

    @Option(help: "Model directory (a Hugging Face checkpoint or a swift-moe checkpoint).") var model: String
    @Option(help: "Comma-separated token ids of one sequence (repeatable).") var ids: [String] = []
    @Flag(help: "Run the reference model (weights widened to f32) instead of the inference engine.") var reference = false

    func run() throws {
        guard !ids.isEmpty else { throw UsageError("missing --ids: give at least one sequence such as --ids 1,2,3") }
        let runner = try ModelLocation.runner(try ModelLocation.checkpointDirectory(model), reference: reference)
        let sequences = try ids.map { try parseIDs($0, vocabulary: runner.config.vocabSize) }
        var out = "{\"logits\": ["
        for (s, seq) in sequences.enumerated() {
            let logits: Tensor<Float>  // [T, V]
            switch runner {
            case .reference(let m): logits = m(ids: seq, batch: 1, .inference).logits.value
            case .engine(let m): logits = InferenceSession(model: m, capacity: seq.count).forward(seq, allLogits: true)
            }
            let v = logits.shape[1]
            out += s == 0 ? "[" : ", ["
            logits.withUnsafePointer { p in
                for t in 0..<seq.count {
                    out += t == 0 ? "[" : ", ["
                    out += (0..<v).map { "\(p[t * v + $0])" }.joined(separator: ", ")
                    out += "]"
                }
            }
            out += "]"
        }
        out += "]}"
        say(out)
    }
}
