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
        try GoldenFixture.readJSON(root.appendingPathComponent(family + "/expected.json"))
    }
}

@Suite("Hugging Face checkpoints, shared fixtures")
struct HuggingFaceFixtureTests {
    static let families = [
        "mixtral", "qwen2_moe_normtopk", "qwen2_moe_nonormtopk", "qwen3_moe_normtopk", "qwen3_moe_nonormtopk",
        "olmoe_normtopk", "olmoe_nonormtopk", "deepseek_v2", "deepseek_v2_grouplimited", "deepseek_v3_normtopk",
        "deepseek_v3_nonormtopk", "phimoe", "granitemoe", "granitemoeshared", "dbrx",
        "glm4_moe", "glm4_moe_lite", "dots1", "solar_open", "minimax_m2", "flex_olmo", "ernie4_5_moe", "hunyuan_v1_moe", "exaone_moe", "gpt_oss",
    ]

    @Test(.enabled(if: families.allSatisfy(SharedFixtures.exists)), arguments: families)
    func matchesTransformers(_ family: String) throws {
        let dir = SharedFixtures.root.appendingPathComponent(family)
        try GoldenFixture.check(model: try HuggingFace.load(dir.path), expected: try SharedFixtures.expected(family))
    }

    @Test func unknownModelTypeListsTheSupportedOnes() throws {
        let dir = TestSupport.temporaryDirectory()
        try #"{"model_type": "gpt_neo"}"#.write(to: dir.appendingPathComponent("config.json"), atomically: true, encoding: .utf8)
        do {
            _ = try HuggingFace.load(dir.path)
            Issue.record("loaded an unknown model_type")
        } catch {
            #expect("\(error)".hasSuffix("unknown model_type \"gpt_neo\"; supported: \(HuggingFace.supported.joined(separator: ", "))"))
            #expect(HuggingFace.supported.contains("mixtral") && !HuggingFace.supported.contains("gpt_neo"))
        }
    }
}
