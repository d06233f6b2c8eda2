import Foundation
import MoETestSupport
import Testing

/// Broken Hugging Face checkpoints: each gets one line naming the file, the tensor (when there is one) and the fix.
@Suite("Hugging Face checkpoints, bad files")
struct BadCheckpointTests {
    let source = ProjectFixtureTests.root.appendingPathComponent("mixtral")

    /// A copy of the mixtral fixture with its weights rewritten by `edit`.
    func checkpoint(_ edit: (inout [(String, SafetensorsWriter.Payload)]) -> Void) throws -> String {
        let dir = TestSupport.temporaryDirectory()
        try FileManager.default.copyItem(at: source.appendingPathComponent("config.json"), to: dir.appendingPathComponent("config.json"))
        let f = try SafetensorsFile(path: source.appendingPathComponent("model.safetensors").path)
        var tensors: [(String, SafetensorsWriter.Payload)] = try f.names.map { ($0, .float(try f.tensor($0, as: Float.self))) }
        edit(&tensors)
        try SafetensorsWriter.write(tensors, to: dir.appendingPathComponent("model.safetensors").path)
        return dir.path
    }

    func error(_ dir: String) -> String {
        do {
            _ = try HuggingFace.load(dir)
            return "(loaded)"
        } catch { return "\(error)" }
    }

    @Test func missingUnusedMisShapedAndWrongDtype() throws {
        let key = "model.layers.0.self_attn.q_proj.weight"
        let missing = error(try checkpoint { $0.removeAll { $0.0 == key } })
        #expect(missing.hasSuffix("config.json: the config needs the tensor \(key) [32, 32] (from num_attention_heads, head_dim, hidden_size), which the weights do not hold; check those keys against the checkpoint"), "\(missing)")
        let unused = error(try checkpoint { $0.append(("model.layers.0.extra.weight", .float(.zeros([2])))) })
        #expect(unused.contains("model.safetensors: tensor 'model.layers.0.extra.weight' is not used by the mixtral model config.json describes; the weights and the config disagree (check first_k_dense_replace, moe_layer_freq, num_hidden_layers, num_local_experts, shared_expert_intermediate_size)"), "\(unused)")
        let shaped = error(try checkpoint { t in
            let i = t.firstIndex { $0.0 == key }!
            t[i].1 = .float(.zeros([3, 32]))
        })
        #expect(shaped.hasSuffix("config.json: the config sizes \(key) as [32, 32] (from num_attention_heads, head_dim, hidden_size) but the weights hold [3, 32]; fix those keys in config.json"), "\(shaped)")
        let dtype = error(try checkpoint { t in
            let i = t.firstIndex { $0.0 == key }!
            t[i].1 = .int64(Array(repeating: 0, count: 1024), shape: [32, 32])
        })
        #expect(dtype.contains("tensor '\(key)': has dtype I64, not a floating-point type"), "\(dtype)")
        for message in [missing, unused, shaped, dtype] { #expect(!message.contains("\n")) }
    }

    @Test func truncatedWeightsAndBadConfig() throws {
        let dir = try checkpoint { _ in }
        let weights = dir + "/model.safetensors"
        let data = try Data(contentsOf: URL(fileURLWithPath: weights))
        try data.prefix(data.count - 10).write(to: URL(fileURLWithPath: weights))
        let truncated = error(dir)
        #expect(truncated.hasPrefix(weights) && truncated.contains("truncated"), "\(truncated)")
        try "{\"model_type\": \"mixtral\", ".write(toFile: dir + "/config.json", atomically: true, encoding: .utf8)
        let json = error(dir)
        #expect(json == dir + "/config.json: not valid JSON (or not an object); fix or re-download the file", "\(json)")
        try #"{"model_type": "mixtral", "hidden_size": 32}"#.write(toFile: dir + "/config.json", atomically: true, encoding: .utf8)
        #expect(error(dir).hasSuffix("config.json: missing \"intermediate_size\"; the config is incomplete, add it or re-download config.json"))
    }
}
