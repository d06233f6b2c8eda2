import Foundation
import MoETestSupport
import Testing

/// The CLI contract on the shared mixtral fixture (../shared/fixtures/hf/mixtral beside the checkout).
@Suite("moe logits / generate --model on Hugging Face checkpoints")
struct HuggingFaceCLITests {
    static let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("shared/fixtures/hf/mixtral").path
    static var present: Bool { FileManager.default.fileExists(atPath: dir + "/expected.json") }

    static func expected() throws -> [String: Any] {
        let text = try String(contentsOfFile: dir + "/expected.json", encoding: .utf8).replacingOccurrences(of: "-Infinity", with: "null")
        return try JSONSerialization.jsonObject(with: Data(text.utf8)) as! [String: Any]
    }

    @Test(.enabled(if: present))
    func logitsAndGreedyGenerationMatchTransformers() throws {
        let e = try Self.expected()
        let ids = e["input_ids"] as! [[Int]]
        let r = try TestSupport.runMoE(["logits", "--model", Self.dir] + ids.flatMap { ["--ids", $0.map(String.init).joined(separator: ",")] })
        #expect(r.status == 0, "\(r.err)")
        let got = (try JSONSerialization.jsonObject(with: Data(r.out.utf8)) as! [String: Any])["logits"] as! [[[Double]]]
        let want = e["logits"] as! [[[Double]]]
        #expect(got.count == 2 && got[0].count == 16 && got[0][0].count == 512)
        var worst = 0.0
        for s in 0..<2 { for t in 0..<16 { for v in 0..<512 { worst = max(worst, abs(got[s][t][v] - want[s][t][v])) } } }
        #expect(worst < 1e-4)
        let gen = e["generation"] as! [String: Any]
        for cache in [true, false] {
            let g = try TestSupport.runMoE(["generate", "--model", Self.dir, "--ids", ids[0].map(String.init).joined(separator: ","),
                                            "--max-new-tokens", "12", "--temperature", "0", "--format", "json"] + (cache ? [] : ["--no-cache"]))
            #expect(g.status == 0, "\(g.err)")
            let obj = try JSONSerialization.jsonObject(with: Data(g.out.utf8)) as! [String: Any]
            #expect(obj["ids"] as? [Int] == gen["new_tokens"] as? [Int])
            #expect(obj["text"] == nil)  // no tokenizer for this model yet
        }
        let i = try TestSupport.runMoE(["inspect", "--model", Self.dir])
        #expect(i.out.contains("model_type: mixtral"))
        #expect(i.out.contains("    0  MoE: 8 experts x swiglu 32, top-2, router softmax_topk"))
    }

    @Test(.enabled(if: present), arguments: [
        (["logits", "--ids", "1,x"], "Error: invalid --ids \"1,x\": \"x\" is not an integer"),
        (["logits", "--ids", "1,512"], "Error: invalid --ids \"1,512\": 512 is outside the vocabulary of 512"),
        (["logits"], "Error: missing --ids: give at least one sequence such as --ids 1,2,3"),
        (["generate", "--prompt", "hi"], "Error: this model's tokenizer is not supported yet; pass the prompt as --ids"),
    ])
    func badInput(_ args: [String], _ message: String) throws {
        let r = try TestSupport.runMoE([args[0], "--model", Self.dir] + args.dropFirst())
        #expect(r.status != 0)
        #expect(r.err.trimmingCharacters(in: .newlines) == message)
    }
}
