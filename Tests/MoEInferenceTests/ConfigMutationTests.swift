import Foundation
import MoEInference
import MoETestSupport
import Testing

/// Corrupted or hand-edited config.json files: each single-key mutation of every family's fixture config is
/// either refused with one line naming the key, or accepted; what is accepted either computes exactly what
/// the untouched config computes (a key inference does not read) or is a valid value of that key, listed below.
/// Nothing may crash or hang (a crash here kills the test run).
@Suite("Config mutations")
struct ConfigMutationTests {
    static let families = [
        "mixtral", "qwen2_moe", "qwen3_moe", "olmoe", "deepseek_v2", "deepseek_v3", "glm4_moe_lite", "phimoe", "granitemoe",
        "granitemoeshared", "dbrx", "glm4_moe", "dots1", "solar_open", "minimax_m2", "flex_olmo", "ernie4_5_moe", "hunyuan_v1_moe", "exaone_moe",
        "gpt_oss", "gpt_oss_mxfp4",
    ]
    static func fixture(_ family: String) -> URL { EngineFixtureTests.testsRoot.appendingPathComponent("Fixtures/hf/" + family) }

    /// The values each key is set to: too large for any product, too large to allocate, negative, zero, a boolean,
    /// a string, null, a fraction.
    nonisolated(unsafe) static let values: [(String, Any)] = [
        ("9223372036854775807", Int.max), ("1000000000", 1_000_000_000), ("-1", -1), ("0", 0), ("true", true), ("\"x\"", "x"),
        ("null", NSNull()), ("1.5", 1.5),
    ]

    /// Keys whose mutations may be accepted and change the logits, because the new value is a valid setting of
    /// that key (reviewed from the sweep's list): a positive RoPE base or YaRN parameter, a routing scale or
    /// margin, Granite's multipliers, gpt-oss's SwiGLU constants, a flipped flag, and null where the family
    /// documents it (DBRX's weight normalization off, EXAONE's window off).
    static let valueKeys: Set<String> = [
        "rope_theta", "beta_fast", "beta_slow", "factor", "original_max_position_embeddings", "truncate", "routed_scaling_factor",
        "router_jitter_noise", "attention_multiplier", "embedding_multiplier", "logits_scaling", "residual_multiplier", "swiglu_alpha",
        "swiglu_limit", "norm_topk_prob", "moe_normalize_expert_weights", "sliding_window",
    ]

    /// What `parameterShapes()` plans is exactly what the model holds, for every family.
    @Test(arguments: families)
    func shapePlanIsTheBuiltModel(_ family: String) throws {
        let model = try HuggingFace.load(Self.fixture(family).path)
        let built = (model.parameters + model.buffers).map { "\($0.path) \($0.shape)" }.sorted()
        let planned = model.config.parameterShapes().map { "\($0.path) \($0.shape)" }.sorted()
        #expect(built == planned)
        #expect(try model.config.parameterCount() == (model.parameters + model.buffers).reduce(0) { $0 + $1.value.count })
    }

    /// The same for swift-moe's own layer kinds the Hugging Face families do not use.
    @Test func shapePlanCoversTheProjectsLayers() throws {
        var configs: [TransformerConfig] = []
        func moe(_ router: RouterKind, k: Int = 2, _ edit: (inout MoEConfig) -> Void = { _ in }) -> TransformerConfig {
            var m = MoEConfig(hiddenSize: 16, expertHiddenSize: 8, numExperts: 4, expertsPerToken: k, router: router)
            edit(&m)
            return TransformerConfig(vocabSize: 11, hiddenSize: 16, numLayers: 3, numHeads: 2, numKVHeads: 1, headDim: 8, intermediateSize: 12, moe: m)
        }
        configs.append(moe(.noisyTopK))
        configs.append(moe(.hash, k: 1))
        configs.append(moe(.base, k: 1) { $0.auxLossCoef = 0 })
        configs.append(moe(.soft) { $0.slotsPerExpert = 2; $0.allowNonCausalRouting = true })
        configs.append(moe(.softmaxTopK) { $0.expertActivation = .gelu; $0.expertBias = true; $0.routerBias = true })
        configs.append(moe(.grouped) { $0.selectionBias = true; $0.sharedExpertHiddenSize = 6; $0.sharedExpertGate = true })
        var peer = moe(.softmaxTopK)
        var p = PEERConfig(hiddenSize: 16, numExperts: 16)
        p.heads = 2
        p.expertsPerHead = 2
        p.keyDim = 4
        p.queryBatchNorm = true
        peer.peer = p
        peer.peerLayers = [1]
        peer.firstDenseLayers = 1
        configs.append(peer)
        var dense = TransformerConfig(vocabSize: 11, hiddenSize: 16, numLayers: 2, numHeads: 2, numKVHeads: 2, headDim: 8, intermediateSize: 12, moe: nil)
        dense.normKind = .layer
        dense.tieWordEmbeddings = true
        dense.mla = LatentAttentionConfig(qLoraRank: nil, kvLoraRank: 6, nopeDim: 4, ropeDim: 4, valueDim: 8)
        configs.append(dense)
        for c in configs {
            let model = try MoETransformer<Float>(c, seed: 1)
            let built = (model.parameters + model.buffers).map { "\($0.path) \($0.shape)" }.sorted()
            #expect(built == c.parameterShapes().map { "\($0.path) \($0.shape)" }.sorted(), "\(c.moe?.router.rawValue ?? "dense")")
        }
    }

    /// A huge size is refused by `validate()` in checked arithmetic, before anything is allocated.
    @Test func sizesAreBoundedAndTheirProductsChecked() {
        var c = TransformerConfig(vocabSize: 11, hiddenSize: 16, numLayers: 2, numHeads: 2, numKVHeads: 2, headDim: 8, intermediateSize: 12, moe: nil)
        c.numLayers = Int.max
        #expect(throws: ConfigError.self) { try c.validate() }
        c.numLayers = 2
        c.hiddenSize = Int.max
        #expect(throws: ConfigError.self) { try c.validate() }
        c.hiddenSize = 1 << 20
        c.vocabSize = 1 << 24
        c.intermediateSize = 1 << 20
        c.numLayers = 1 << 12
        // Each size within its bound, the total past Int: refused by the checked sum, not trapped.
        c.moe = MoEConfig(hiddenSize: 1 << 20, expertHiddenSize: 1 << 20, numExperts: 1 << 16, expertsPerToken: 1)
        #expect(throws: ConfigError.self) { try c.validate() }
    }

    /// swift-moe's own config.json (decoded strictly, then validated, then checked against the weights): every
    /// key and every key of its `moe` object, set to each of `values`, is refused in one line naming it or
    /// computes the same logits (keys inference does not read), or is a valid setting of a value key.
    @Test func ownConfigMutations() throws {
        let dir = TestSupport.temporaryDirectory()
        var c = TransformerConfig(vocabSize: 11, hiddenSize: 16, numLayers: 2, numHeads: 2, numKVHeads: 1, headDim: 8, intermediateSize: 12,
                                  moe: MoEConfig(hiddenSize: 16, expertHiddenSize: 8, numExperts: 4, expertsPerToken: 2))
        c.maxPositions = 64
        let model = try MoETransformer<Float>(c, seed: 3)
        try ModelFiles.saveConfig(c, to: dir.path)
        try ModelFiles.saveWeights(model, to: dir.path + "/model.safetensors")
        let expected = model(ids: [1, 2, 3], batch: 1, ForwardContext<Float>(tape: nil)).logits.value.scalars
        let original = try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent("config.json"))) as! [String: Any]
        var paths: [[String]] = original.keys.sorted().map { [$0] }
        paths += (original["moe"] as! [String: Any]).keys.sorted().map { ["moe", $0] }
        var tried = 0, refused = 0
        var bad: [String] = []
        for path in paths {
            for (label, value) in Self.values {
                var json = original
                if path.count == 1 { json[path[0]] = value } else {
                    var inner = json[path[0]] as! [String: Any]
                    inner[path[1]] = value
                    json[path[0]] = inner
                }
                try JSONSerialization.data(withJSONObject: json).write(to: dir.appendingPathComponent("config.json"))
                tried += 1
                do {
                    let loaded = try ModelFiles.load(dir.path, as: Float.self)
                    let got = loaded(ids: [1, 2, 3], batch: 1, ForwardContext<Float>(tape: nil)).logits.value.scalars
                    if got != expected && !Self.valueKeys.contains(path.last!) && !["rms_norm_eps", "rope_theta", "attention_scale", "rope_interleave"].contains(path.last!) {
                        bad.append("\(path.joined(separator: "."))=\(label): accepted, different logits")
                    }
                } catch {
                    refused += 1
                    if "\(error)".contains("\n") || !path.contains(where: { "\(error)".contains($0) }) { bad.append("\(path.joined(separator: "."))=\(label): \(error)") }
                }
            }
        }
        print("own config mutations: \(tried) tried, \(refused) refused")
        #expect(bad.isEmpty, "\(bad.count):\n\(bad.prefix(40).joined(separator: "\n"))")
    }

    /// The sweep: every key (and every key one object down) of every family's config, set to each of `values`.
    @Test func everyMutationIsRefusedCleanlyOrHarmless() throws {
        var tried = 0, refused = 0, unchanged = 0
        var changed: [String] = [], badErrors: [String] = [], unexpected: [String] = []
        let ids = [1, 2, 3, 4]
        for family in Self.families {
            let source = Self.fixture(family)
            let dir = TestSupport.temporaryDirectory()
            for name in try FileManager.default.contentsOfDirectory(atPath: source.path) where name != "config.json" {
                try FileManager.default.createSymbolicLink(at: dir.appendingPathComponent(name), withDestinationURL: source.appendingPathComponent(name))
            }
            let original = try JSONSerialization.jsonObject(with: Data(contentsOf: source.appendingPathComponent("config.json"))) as! [String: Any]
            let baseline = try HuggingFace.load(source.path)
            let expected = baseline(ids: ids, batch: 1, ForwardContext<Float>(tape: nil)).logits.value.scalars
            var paths: [[String]] = original.keys.sorted().map { [$0] }
            for (k, v) in original { if let o = v as? [String: Any] { paths += o.keys.sorted().map { [k, $0] } } }
            for path in paths.sorted(by: { $0.joined(separator: ".") < $1.joined(separator: ".") }) {
                for (label, value) in Self.values {
                    var json = original
                    if path.count == 1 {
                        json[path[0]] = value
                    } else {
                        var inner = json[path[0]] as! [String: Any]
                        inner[path[1]] = value
                        json[path[0]] = inner
                    }
                    try JSONSerialization.data(withJSONObject: json).write(to: dir.appendingPathComponent("config.json"))
                    tried += 1
                    let what = "\(family)/\(path.joined(separator: "."))=\(label)"
                    do {
                        let model = try HuggingFace.load(dir.path)
                        if InferenceModel.supports(directory: dir.path) { _ = try InferenceModel(directory: dir.path) }
                        let got = model(ids: ids, batch: 1, ForwardContext<Float>(tape: nil)).logits.value.scalars
                        if got == expected { unchanged += 1 } else { changed.append(what) }
                        if got != expected && !Self.valueKeys.contains(path.last!) { unexpected.append(what) }
                    } catch {
                        refused += 1
                        let message = "\(error)"
                        // One line that names the key (or the object holding it), as the family spells it.
                        if message.contains("\n") || !path.contains(where: { message.contains($0) }) {
                            badErrors.append("\(what): \(message)")
                        }
                    }
                }
            }
        }
        print("config mutations: \(tried) tried, \(refused) refused with one line naming the key, \(unchanged) accepted with unchanged logits, \(changed.count) accepted as valid settings")
        #expect(badErrors.isEmpty, "\(badErrors.count) errors without the key:\n\(badErrors.prefix(40).joined(separator: "\n"))")
        #expect(unexpected.isEmpty, "\(unexpected.count) accepted and computing something else:\n\(unexpected.joined(separator: "\n"))")
    }
}
