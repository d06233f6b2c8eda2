import Foundation
import MoETestSupport
import Testing

@Suite("moe experiment")
struct ExperimentCLITests {
    /// A short peer run end to end: the table, the verdict lines, and the JSON and SVG written.
    @Test func peerRunsEndToEnd() throws {
        let dir = TestSupport.temporaryDirectory().path
        let r = try TestSupport.runMoE(["experiment", "peer", "--steps", "10", "--seeds", "2", "--peer-sizes", "64,256", "--peer-k", "4", "--out", dir])
        #expect(r.status == 0, "\(r.err)")
        let lines = r.out.split(separator: "\n").map(String.init)
        #expect(lines[0].hasPrefix("moe experiment peer: 2 seeds (1, 2), 10 steps per run, "))
        #expect(lines[1].split(separator: " ", omittingEmptySubsequences: true) == ["arm", "experts", "layer_madds_per_token", "parameters", "val_loss", "val_loss_sd", "tokens_per_s", "peer_expert_usage"])
        #expect(lines[3].hasPrefix("dense ") && lines[4].hasPrefix("moe ") && lines[5].hasPrefix("PEER 8² ") && lines[6].hasPrefix("PEER 16² "))
        #expect(lines.contains { $0.hasPrefix("criterion: PEER's validation loss falls as N grows") })
        #expect(lines.contains("reproduced: yes") || lines.contains("reproduced: no"))
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/peer.json"))) as! [String: Any]
        #expect(json["experiment"] as? String == "peer")
        #expect(json["reproduced"] is Bool)
        let table = try #require(json["table"] as? [[String: Any]])
        #expect(table.count == 4 && table[2]["arm"] as? String == "PEER 8²")
        let usage = try #require(table[3]["peer_expert_usage"] as? Double)
        #expect(usage > 0 && usage <= 1)
        let runs = try #require(json["runs"] as? [String: [[String: Any]]])
        #expect(runs["dense"]?.count == 2 && runs["dense"]?[0]["worst_max_over_mean"] == nil)
        let svg = try String(contentsOfFile: dir + "/peer.svg", encoding: .utf8)
        #expect(svg.contains("moe experiment peer") && svg.components(separatedBy: "<circle").count - 1 == 2 * 4 + 2 * 2)
    }

    /// `--json` prints the same object the file holds, and the same seed gives the same numbers.
    @Test func jsonIsDeterministic() throws {
        let dir = TestSupport.temporaryDirectory().path
        let args = ["experiment", "balancing", "--steps", "10", "--seeds", "1", "--json", "--out", dir]
        let a = try TestSupport.runMoE(args), b = try TestSupport.runMoE(args)
        #expect(a.status == 0, "\(a.err)")
        func losses(_ s: String) throws -> [Double] {
            let o = try JSONSerialization.jsonObject(with: Data(s.utf8)) as! [String: Any]
            return (o["table"] as! [[String: Any]]).map { $0["val_loss"] as! Double }
        }
        #expect(try losses(a.out).count == 6)
        #expect(try losses(a.out) == losses(b.out))
    }

    @Test(arguments: [
        (["bogus"], "unknown experiment bogus: use one of balancing, experts, granularity, peer, upcycling, base, lifelong"),
        (["peer", "--peer-sizes", "1000"], "PEER's product keys need a square n²; use 961 (31²) or 1024 (32²)"),
        (["peer", "--peer-sizes", "256", "--peer-k", "17"], "k must be between 1 and n = √num_experts (16)"),
        (["balancing", "--peer-k", "4"], "--peer-k applies only to the peer experiment; drop it for balancing"),
        (["experts", "--seeds", "0"], "invalid --seeds 0"),
        (["granularity", "--steps", "5"], "invalid --steps 5"),
    ])
    func badInputIsOneLine(_ args: [String], _ message: String) throws {
        let r = try TestSupport.runMoE(["experiment"] + args + ["--out", TestSupport.temporaryDirectory().path])
        #expect(r.status != 0)
        #expect(r.err.contains(message), "\(r.err)")
        #expect(r.err.split(separator: "\n").count == 1, "\(r.err)")
    }
}
