import Foundation
import MoETestSupport
import Testing

/// `HuggingFace.export`: a swift-moe model written as a Hugging Face checkpoint loads back through the
/// Hugging Face loader of its family and computes the same logits. (transformers itself was checked on
/// exported checkpoints with scripts/check_hf_export.py; the tests need no Python.)
@Suite struct ExportTests {
    static func config(router: RouterKind = .softmaxTopK, shared: Int = 0, gate: Bool = false) -> TransformerConfig {
        var c = DefaultModel.config(dim: 16, layers: 3, heads: 2, kvHeads: 1, experts: 4, topK: 2, expertHidden: 8,
                                    sharedHidden: shared, router: router, auxLossCoef: 0.01)
        c.moe?.sharedExpertGate = gate
        c.vocabSize = 40
        return c
    }

    /// Multi-head latent attention with the grouped sigmoid router and a dense first layer: deepseek_v3.
    static func latentConfig() -> TransformerConfig {
        var c = config(router: .grouped, shared: 8)
        c.mla = LatentAttentionConfig(qLoraRank: 12, kvLoraRank: 8, nopeDim: 8, ropeDim: 4, valueDim: 8, ropeInterleave: true)
        c.headDim = 4
        c.numKVHeads = c.numHeads
        c.firstDenseLayers = 1
        c.moe?.numGroups = 2
        c.moe?.topKGroups = 1
        c.moe?.routedScalingFactor = 2.5
        return c
    }

    static func roundTrip(_ c: TransformerConfig, perturbBuffers: Bool = false) throws -> (family: String, model: MoETransformer<Float>, back: MoETransformer<Float>) {
        let model = try MoETransformer<Float>(c, seed: 7)
        if perturbBuffers {
            // A trained correction bias, so that it changes which experts are chosen.
            var rng = RandomGenerator(seed: 3)
            for b in model.buffers { b.value = Tensor<Float>.uniform(b.shape, low: -0.5, high: 0.5, rng: &rng) }
        }
        let dir = TestSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let family = try HuggingFace.export(model, to: dir.path)
        return (family, model, try HuggingFace.load(dir.path))
    }

    static func logits(_ m: MoETransformer<Float>) -> [Float] {
        let ids = (0..<24).map { ($0 * 7 + 3) % 40 }
        return m(ids: ids, batch: 2, .inference).logits.value.scalars
    }

    @Test(arguments: [
        ("mixtral", config()),
        ("mixtral", config(router: .topKSoftmax)),
        ("qwen2_moe", config(shared: 12, gate: true)),
        ("glm4_moe", config(router: .grouped, shared: 16)),
        ("glm4_moe", config(router: .grouped)),
        ("deepseek_v3", latentConfig()),
    ])
    func exportedCheckpointComputesTheSameLogits(family: String, config: TransformerConfig) throws {
        let r = try Self.roundTrip(config, perturbBuffers: config.moe?.router == .grouped)
        #expect(r.family == family)
        #expect(r.back.config.modelType == family)
        #expect(r.back.parameterCount == r.model.parameterCount)
        let a = Self.logits(r.model), b = Self.logits(r.back)
        #expect(zip(a, b).map { abs($0 - $1) }.max()! < 1e-6)
    }

    @Test func exportWritesWhatTransformersReads() throws {
        let dir = TestSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        try HuggingFace.export(try MoETransformer<Float>(Self.config(router: .grouped, shared: 8), seed: 1), to: dir.path)
        let text = try String(contentsOf: dir.appendingPathComponent("config.json"), encoding: .utf8)
        // transformers refuses an integer where its config declares a float.
        #expect(text.contains("\"routed_scaling_factor\" : 1.0"))
        #expect(text.contains("\"architectures\" : [\n    \"Glm4MoeForCausalLM\"\n  ]"))
        let file = try SafetensorsCheckpoint(directory: dir.path)
        #expect(file.names.contains("model.layers.2.mlp.experts.3.down_proj.weight"))
        #expect(file.names.contains("model.layers.0.mlp.gate.e_score_correction_bias"))
        #expect(file.names.contains("model.layers.1.mlp.shared_experts.gate_proj.weight"))
    }

    @Test(arguments: [
        (config(router: .noisyTopK), "router noisy_topk (softmax scores) has no Hugging Face family"),
        (config(shared: 8), "qwen2_moe gates its shared expert with a sigmoid"),
        (DefaultModel.config(dense: true, dim: 16, layers: 1, heads: 2, kvHeads: 1), "a dense model has no MoE family"),
    ])
    func whatNoFamilyCanHoldIsRefused(config: TransformerConfig, message: String) throws {
        let dir = TestSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        #expect { try HuggingFace.export(try MoETransformer<Float>(config, seed: 1), to: dir.path) } throws: { "\($0)".contains(message) }
        #expect(!FileManager.default.fileExists(atPath: dir.appendingPathComponent("model.safetensors").path))
    }
}
