import Foundation
import MoETestSupport
import Testing

/// `moe analyze` end to end: on a Hugging Face fixture and on a checkpoint trained here, the report and the JSON
/// contract; bad input gets one line and a non-zero exit, and leaves no report behind.
@Suite("moe analyze", .serialized)
struct AnalyzeCLITests {
    static let fixture = RobustnessCLITests.repo.appendingPathComponent("Tests/Fixtures/hf/mixtral").path
    static let text = "The quick brown fox jumps over the lazy dog. Experts, routers and tokens."

    @Test func reportsOnAFixtureAndOnATrainedCheckpoint() throws {
        let dir = TestSupport.temporaryDirectory().path
        try Self.text.write(toFile: dir + "/t.txt", atomically: true, encoding: .utf8)
        let r = try TestSupport.runMoE(["analyze", "--model", Self.fixture, "--text", dir + "/t.txt", "--bytes", "--out", dir + "/fixture", "--json"])
        #expect(r.status == 0, "\(r.err)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(r.out.utf8)) as? [String: Any])
        let s = try #require(json["static"] as? [String: Any]), d = try #require(json["dynamic"] as? [String: Any])
        let sims = try #require(s["weight_similarity"] as? [[String: Any]])
        #expect(sims.count == 6)  // 2 layers x gate, up, down
        for item in sims {
            #expect(item["layer"] is Int && ["gate", "up", "down"].contains(item["matrix"] as? String))
            let cosine = try #require(item["cosine"] as? [[Double]])
            #expect(cosine.count == 4 && cosine.allSatisfy { $0.count == 4 })
        }
        for key in ["neuron_similarity", "aligned_similarity", "router_similarity", "router_regression", "pca_experts", "pca_neurons"] {
            #expect((s[key] as? [Any])?.isEmpty == false, "static \(key)")
        }
        for key in ["output_similarity", "rank_counts", "gate_activations", "routing", "expert_removal", "top_k"] {
            #expect((d[key] as? [Any])?.isEmpty == false, "dynamic \(key)")
        }
        #expect((json["summary"] as? [String])?.isEmpty == false)
        let html = try String(contentsOfFile: dir + "/fixture/report.html", encoding: .utf8)
        #expect(html.contains("<svg") && html.contains("</html>") && !html.contains("<script"))
        #expect(FileManager.default.fileExists(atPath: dir + "/fixture/analysis.json"))

        // A family the inference engine does not run (DeepSeek-V3's grouped sigmoid router), on the reference model.
        let ds = try TestSupport.runMoE(["analyze", "--model", RobustnessCLITests.repo.appendingPathComponent("Tests/Fixtures/hf/deepseek_v3").path,
                                         "--text", dir + "/t.txt", "--bytes", "--out", dir + "/deepseek", "--json"])
        #expect(ds.status == 0, "\(ds.err)")
        let dj = try #require(try JSONSerialization.jsonObject(with: Data(ds.out.utf8)) as? [String: Any])
        #expect(dj["family"] as? String == "deepseek_v3" && ((dj["dynamic"] as? [String: Any])?["top_k"] as? [Any])?.isEmpty == false)

        // A checkpoint trained here (a swift-moe run directory), through its export.
        let trained = try TestSupport.runMoE(["train", "--steps", "2", "--checkpoint-every", "2", "--out", dir + "/run"] + RobustnessCLITests.shape)
        #expect(trained.status == 0, "\(trained.err)")
        let a = try TestSupport.runMoE(["analyze", "--model", dir + "/run", "--text", dir + "/t.txt", "--out", dir + "/trained", "--no-removal"])
        #expect(a.status == 0, "\(a.err)")
        #expect(a.out.contains("wrote \(dir)/trained/report.html"))

        // A router without a Hugging Face form (hash routing) runs on the reference model; the experiments that
        // need router weights say why they are missing instead of failing.
        let hash = try TestSupport.runMoE(["train", "--router", "hash", "--steps", "2", "--checkpoint-every", "2", "--out", dir + "/hash"] + RobustnessCLITests.shape)
        #expect(hash.status == 0, "\(hash.err)")
        func exports() -> Set<String> {
            Set(((try? FileManager.default.contentsOfDirectory(atPath: NSTemporaryDirectory())) ?? []).filter { $0.hasPrefix("moe-analyze-") })
        }
        let before = exports()
        let h = try TestSupport.runMoE(["analyze", "--model", dir + "/hash", "--text", dir + "/t.txt", "--out", dir + "/hashed", "--json"])
        #expect(h.status == 0, "\(h.err)")
        let hj = try #require(try JSONSerialization.jsonObject(with: Data(h.out.utf8)) as? [String: Any])
        let topK = try #require((hj["dynamic"] as? [String: Any])?["top_k"] as? [[String: Any]])
        #expect(topK.allSatisfy { ($0["note"] as? String)?.contains("no weights") == true })
        #expect(exports().subtracting(before).isEmpty, "the failed export's temporary directory is left behind")
    }

    @Test func badInputGetsOneLine() throws {
        let dir = TestSupport.temporaryDirectory().path
        try Self.text.write(toFile: dir + "/t.txt", atomically: true, encoding: .utf8)
        try Data().write(to: URL(fileURLWithPath: dir + "/empty.txt"))
        func refused(_ args: [String], _ needle: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
            let r = try TestSupport.runMoE(["analyze"] + args)
            let lines = r.err.split(separator: "\n")
            #expect(r.status != 0 && lines.count == 1 && r.err.contains(needle), "\(args): \(r.status) \(r.err)", sourceLocation: sourceLocation)
        }
        try refused(["--model", Self.fixture, "--text", dir + "/none.txt", "--out", dir + "/o"], "--text \(dir)/none.txt: missing or empty")
        try refused(["--model", Self.fixture, "--text", dir + "/empty.txt", "--out", dir + "/o"], "--text \(dir)/empty.txt: missing or empty")
        try refused(["--model", Self.fixture, "--layers", "5", "--out", dir + "/o"], "--layers: layer 5 is out of range; the model has layers 0..<2")
        try refused(["--model", Self.fixture, "--out", dir + "/t.txt/o"], "--out \(dir)/t.txt/o: cannot be created")
        let dense = try TestSupport.runMoE(["train", "--dense", "--steps", "2", "--checkpoint-every", "2", "--out", dir + "/dense"] + RobustnessCLITests.shape)
        #expect(dense.status == 0, "\(dense.err)")
        try refused(["--model", dir + "/dense", "--out", dir + "/o"], "the model has no MoE layers; analyse an MoE model")
        // Upcycled from that dense run: every expert is a copy of its FFN, so with --dense every similarity is 1.
        let up = try TestSupport.runMoE(["upcycle", "--from", dir + "/dense", "--experts", "4", "--out", dir + "/up"])
        #expect(up.status == 0, "\(up.err)")
        let a = try TestSupport.runMoE(["analyze", "--model", dir + "/up", "--dense", dir + "/dense", "--out", dir + "/upa", "--json"])
        #expect(a.status == 0, "\(a.err)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(a.out.utf8)) as? [String: Any])
        let s = try #require(json["static"] as? [String: Any])
        #expect(s["dense_index"] as? Int == 4)
        for item in try #require(s["weight_similarity"] as? [[String: Any]]) {
            let cosine = try #require(item["cosine"] as? [[Double]])
            #expect(cosine.count == 5 && cosine.allSatisfy { row in row.count == 5 && row.allSatisfy { abs($0 - 1) < 1e-6 } }, "\(item["layer"]!) \(item["matrix"]!)")
        }
        let narrow = try TestSupport.runMoE(["train", "--dense", "--steps", "2", "--checkpoint-every", "2", "--out", dir + "/narrow"]
            + RobustnessCLITests.shape.map { $0 == "32" ? "16" : $0 })
        #expect(narrow.status == 0, "\(narrow.err)")
        try refused(["--model", dir + "/up", "--dense", dir + "/narrow", "--out", dir + "/o"], "--dense \(dir)/narrow: layer 0's gate_proj is")
        // Input is checked before the output directory is touched: an earlier report stays as it was.
        let ok = try TestSupport.runMoE(["analyze", "--model", Self.fixture, "--out", dir + "/o"])
        #expect(ok.status == 0 && FileManager.default.fileExists(atPath: dir + "/o/report.html"), "\(ok.err)")
        try refused(["--model", Self.fixture, "--text", dir + "/empty.txt", "--out", dir + "/o"], "missing or empty")
        #expect(FileManager.default.fileExists(atPath: dir + "/o/report.html"))
    }
}
