import Foundation
import MoETestSupport
import Testing

/// The project's own golden fixtures (Tests/Fixtures/hf, written by scripts/make_hf_fixtures.py from
/// transformers): every supported family's logits, router logits, chosen experts and weights, hidden states,
/// and greedy generation with and without the cache.
@Suite("Hugging Face checkpoints, project fixtures")
struct ProjectFixtureTests {
    static var root: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures/hf")
    }
    static let families = [
        "mixtral", "qwen2_moe", "qwen3_moe", "olmoe", "deepseek_v2", "deepseek_v3", "glm4_moe_lite", "phimoe", "granitemoe",
        "granitemoeshared", "dbrx", "glm4_moe", "dots1", "solar_open", "minimax_m2", "flex_olmo", "ernie4_5_moe", "hunyuan_v1_moe", "exaone_moe",
        "gpt_oss", "gpt_oss_mxfp4",
    ]

    @Test(arguments: families)
    func matchesTransformers(_ family: String) throws {
        let dir = Self.root.appendingPathComponent(family)
        let expected = try GoldenFixture.readJSON(dir.appendingPathComponent("expected.json"))
        #expect((expected["routing"] as? [Any])?.isEmpty == false, "the fixture records routing")
        try GoldenFixture.check(model: try HuggingFace.load(dir.path), expected: expected)
    }

    /// Every family the loader supports has a fixture of its own.
    @Test func everySupportedFamilyHasAFixture() {
        for family in HuggingFace.supported where family != "swift_moe" {
            #expect(Self.families.contains(family), "no project fixture for \(family)")
        }
    }
}
