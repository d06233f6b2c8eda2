import Foundation
import MoETestSupport
import Testing

/// The shared reference fixtures (../shared/fixtures/hf beside the checkout): tiny checkpoints with
/// transformers' own outputs.
enum SharedFixtures {
    static var root: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("shared/fixtures/hf")
    }
    static func exists(_ family: String) -> Bool {
        FileManager.default.fileExists(atPath: root.appendingPathComponent(family + "/expected.json").path)
    }
    static func expected(_ family: String) throws -> [String: Any] {
        // Python's json writes -Infinity for masked logits, which strict JSON parsers reject; those fields are
        // not compared here, so they become null.
        let text = try String(contentsOf: root.appendingPathComponent(family + "/expected.json"), encoding: .utf8)
            .replacingOccurrences(of: "-Infinity", with: "null").replacingOccurrences(of: "Infinity", with: "null")
            .replacingOccurrences(of: "NaN", with: "null")
        return try JSONSerialization.jsonObject(with: Data(text.utf8)) as! [String: Any]
    }
}

@Suite("Hugging Face checkpoints")
struct HuggingFaceFixtureTests {
    static let families = [
        "mixtral", "qwen2_moe_normtopk", "qwen2_moe_nonormtopk", "qwen3_moe_normtopk", "qwen3_moe_nonormtopk",
        "olmoe_normtopk", "olmoe_nonormtopk",
    ]

    @Test(.enabled(if: families.allSatisfy(SharedFixtures.exists)), arguments: families)
    func logitsAndRoutingMatchTransformers(_ family: String) throws {
        let dir = SharedFixtures.root.appendingPathComponent(family).path
        let model = try HuggingFace.load(dir)
        let expected = try SharedFixtures.expected(family)
        let ids = (expected["input_ids"] as! [[Int]])
        let out = model(ids: ids.flatMap { $0 }, batch: ids.count, .inference)
        let logits = expected["logits"] as! [[[Double]]]
        var worst = 0.0
        for b in 0..<ids.count {
            for t in 0..<ids[b].count {
                for v in 0..<logits[b][t].count {
                    worst = max(worst, abs(Double(out.logits.value[b * ids[b].count + t, v]) - logits[b][t][v]))
                }
            }
        }
        #expect(worst < 1e-4, "max abs logit difference \(worst)")
        // The chosen experts are identical, layer by layer.
        let routing = expected["routing"] as! [[String: Any]]
        for (layer, r) in routing.enumerated() {
            let chosen = (r["top_k_index"] as! [[Int]]).map { Set($0) }
            let mine = out.moe[layer].routing.keptIndices.map { Set($0) }
            #expect(mine == chosen, "layer \(layer)")
        }
    }

    @Test func unknownModelTypeListsTheSupportedOnes() throws {
        let dir = TestSupport.temporaryDirectory()
        try #"{"model_type": "gpt_neo"}"#.write(to: dir.appendingPathComponent("config.json"), atomically: true, encoding: .utf8)
        #expect(throws: HuggingFace.LoadError.self) { try HuggingFace.load(dir.path) }
        do { _ = try HuggingFace.load(dir.path) } catch {
            #expect("\(error)".hasSuffix("unknown model_type \"gpt_neo\"; supported: mixtral, olmoe, qwen2_moe, qwen3_moe, swift_moe"))
        }
    }
}
