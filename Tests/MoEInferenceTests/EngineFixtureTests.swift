import Foundation
import MoEIO
import MoEInference
import MoEModels
import MoETestSupport
import Testing

/// The inference engine against transformers' golden outputs (the shared fixtures and the project's own) and
/// against the reference model on the same weights stored as bf16.
@Suite("Inference engine, Hugging Face fixtures")
struct EngineFixtureTests {
    static let testsRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    static let shared = testsRoot.deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("shared/fixtures/hf")
    static let sharedFamilies = [
        "mixtral", "qwen2_moe_normtopk", "qwen2_moe_nonormtopk", "qwen3_moe_normtopk", "qwen3_moe_nonormtopk",
        "olmoe_normtopk", "olmoe_nonormtopk", "gpt_oss",
    ]
    static let ownFamilies = ["mixtral", "qwen2_moe", "qwen3_moe", "olmoe", "gpt_oss", "gpt_oss_mxfp4"]
    static var fixtures: [String] {
        sharedFamilies.map { shared.appendingPathComponent($0).path } + ownFamilies.map { testsRoot.appendingPathComponent("Fixtures/hf/" + $0).path }
    }

    static func expected(_ dir: String) throws -> [String: Any] {
        let text = try String(contentsOfFile: dir + "/expected.json", encoding: .utf8)
            .replacingOccurrences(of: "-Infinity", with: "null").replacingOccurrences(of: "Infinity", with: "null")
            .replacingOccurrences(of: "NaN", with: "null")
        return try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
    }

    @Test(.enabled(if: FileManager.default.fileExists(atPath: shared.path)), arguments: fixtures)
    func logitsAndGreedyGenerationMatchTransformers(_ dir: String) throws {
        let e = try Self.expected(dir)
        let model = try InferenceModel(directory: dir)
        let ids = try #require(e["input_ids"] as? [[Int]])
        let logits = try #require(e["logits"] as? [[[Double]]])
        for (s, seq) in ids.enumerated() {
            // Prefill all positions at once, and the same sequence one token at a time (the decode path).
            let prefill = InferenceSession(model: model, capacity: seq.count).forward(seq, allLogits: true)
            let stepper = InferenceSession(model: model, capacity: seq.count)
            var worst = 0.0, worstDecode = 0.0
            for (p, id) in seq.enumerated() {
                let step = stepper.forward([id])
                for (v, want) in logits[s][p].enumerated() {
                    worst = max(worst, abs(Double(prefill[p, v]) - want))
                    worstDecode = max(worstDecode, abs(Double(step[0, v]) - want))
                }
            }
            // MXFP4 experts multiply 8-bit activations (as llama.cpp's do) whenever an expert has one token, so
            // against transformers' dequantized f32 products they agree to the activations' rounding, not to f32's.
            let tolerance = dir.hasSuffix("mxfp4") ? 2e-2 : 1e-4
            #expect(worst < tolerance, "\(dir) sequence \(s): prefill logits differ by \(worst)")
            #expect(worstDecode < tolerance, "\(dir) sequence \(s): decode logits differ by \(worstDecode)")
        }
        if let g = e["generation"] as? [String: Any], let want = g["new_tokens"] as? [Int] {
            let eos = Set(((e["config"] as? [String: Any])?["eos_token_id"]).map { ($0 as? [Int]) ?? [$0 as? Int ?? -1] } ?? [])
            let session = InferenceSession(model: model, capacity: ids[0].count + want.count)
            var next = ids[0], got: [Int] = []
            for _ in want {
                let row = session.forward(next).scalars
                var best = -1
                for (i, v) in row.enumerated() where !eos.contains(i) && (best < 0 || v > row[best]) { best = i }
                got.append(best)
                next = [best]
            }
            #expect(got == want, "\(dir): greedy \(got) vs \(want)")
        }
    }
}
