import Foundation
import MoETestSupport
import Testing

@Suite("moe upcycle")
struct UpcycleCLITests {
    /// Train a dense run, upcycle it with granularity 2, check the printed step-0 equality, continue training it,
    /// and refuse the bad requests in one line each.
    @Test func upcycleThenContinue() throws {
        let dir = TestSupport.temporaryDirectory().path
        let small = ["--dim", "32", "--layers", "2", "--batch", "4", "--sequence", "32", "--samples", "0", "--arithmetic-problems", "5", "--log-every", "10", "--eval-every", "20"]
        let dense = try TestSupport.runMoE(["train", "--dense", "--steps", "20", "--checkpoint-every", "20", "--out", dir + "/dense"] + small)
        #expect(dense.status == 0, "\(dense.err)")
        let up = try TestSupport.runMoE(["upcycle", "--from", dir + "/dense", "--experts", "8", "--granularity", "2", "--layers", "every-other", "--out", dir + "/moe"])
        #expect(up.status == 0, "\(up.err)")
        let lines = up.out.split(separator: "\n").map(String.init)
        #expect(lines[0] == "upcycled \(dir)/dense/checkpoints/step-0000020 (step 20): 1 of 2 layers now hold 8 experts of width 64, top-4 (granularity 2)")
        let diff = try #require(lines[2].split(separator: " ").last.flatMap { Double($0) })
        #expect(lines[2].hasPrefix("largest |logit difference| from the dense model on 80 bytes: ") && diff < 1e-5)
        #expect(lines[3].hasPrefix("wrote \(dir)/moe/checkpoints/step-0000020; continue with: moe train --resume"))
        let more = try TestSupport.runMoE(["train", "--resume", dir + "/moe/checkpoints/step-0000020", "--steps", "30", "--out", dir + "/moe", "--samples", "0", "--arithmetic-problems", "5"])
        #expect(more.status == 0, "\(more.err)")
        #expect(more.out.contains("MoE (8 experts, top-4, softmax_topk)") && more.out.contains("resuming at step 20") && more.out.contains("step 30/30"))
        for (args, message) in [
            (["--from", dir + "/moe", "--experts", "8"], "the model is already an MoE (8 experts); upcycle a dense run"),
            (["--from", dir + "/dense", "--experts", "8", "--granularity", "3"], "granularity 3 does not divide the FFN width 128"),
            (["--from", dir + "/dense", "--experts", "8", "--layers", "odd"], "invalid --layers odd: use every or every-other"),
            (["--from", dir + "/nothing", "--experts", "8"], "nothing: not found"),
            (["--from", dir + "/dense", "--experts", "8", "--out", dir + "/moe"], "already holds checkpoints"),
        ] {
            let r = try TestSupport.runMoE(["upcycle"] + args + (args.contains("--out") ? [] : ["--out", dir + "/other"]))
            #expect(r.status != 0 && r.err.contains(message) && r.err.split(separator: "\n").count == 1, "\(r.err)")
        }
    }
}
