import ArgumentParser
import Foundation
import MoEAnalysis
import MoEInference

/// Parses the value `s` of `option` ("1,2,3") into integers, or explains what is wrong; `what` names them with an
/// example ("token ids such as 1,2,3").
func parseIntegers(_ s: String, option: String, what: String) throws -> [Int] {
    let parts = s.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
    guard !parts.isEmpty, parts.allSatisfy({ !$0.isEmpty }) else {
        throw UsageError("invalid \(option) \"\(s)\": give comma-separated \(what)")
    }
    return try parts.map { p in
        guard let v = Int(p) else { throw UsageError("invalid \(option) \"\(s)\": \"\(p)\" is not an integer") }
        return v
    }
}

/// Parses "1,2,3" into token ids, or explains what is wrong.
func parseIDs(_ s: String, vocabulary: Int) throws -> [Int] {
    try parseIntegers(s, option: "--ids", what: "token ids such as 1,2,3").map { v in
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
