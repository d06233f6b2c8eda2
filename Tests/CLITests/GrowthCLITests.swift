import Foundation
import MoETestSupport
import Testing

@Suite("moe train --add-experts")
struct GrowthCLITests {
    /// Train on the built-in corpus, grow by 4 frozen-old experts for a file of new text, resume the grown run
    /// later, and refuse the bad requests in one line each.
    @Test func growThenResume() throws {
        let dir = TestSupport.temporaryDirectory().path
        let shape = ["--dim", "32", "--layers", "2", "--batch", "4", "--sequence", "32", "--samples", "0", "--arithmetic-problems", "5", "--log-every", "10", "--eval-every", "20"]
        let small = shape + ["--experts", "4"]
        let first = try TestSupport.runMoE(["train", "--steps", "10", "--checkpoint-every", "10", "--out", dir + "/run"] + small)
        #expect(first.status == 0, "\(first.err)")
        let text = (0..<400).map { "new domain line \($0): the value is \($0 * 7 % 101)." }.joined(separator: "\n")
        try text.write(toFile: dir + "/new.txt", atomically: true, encoding: .utf8)
        let ckpt = dir + "/run/checkpoints/step-0000010"
        let grow = try TestSupport.runMoE(["train", "--resume", ckpt, "--add-experts", "4", "--freeze-old", "--distill", "0.5", "--data", dir + "/new.txt", "--steps", "20", "--checkpoint-every", "5", "--out", dir + "/grown", "--samples", "0"])
        #expect(grow.status == 0, "\(grow.err)")
        #expect(grow.out.contains("grew every MoE layer from 4 to 8 experts at step 10, the first 4 and their router rows frozen, distilling from the model before the growth (coefficient 0.5)"))
        #expect(FileManager.default.fileExists(atPath: dir + "/grown/checkpoints/step-0000020/teacher/config.json"))
        #expect(grow.out.contains("model: MoE (8 experts, top-2, softmax_topk)") && grow.out.contains("data: \(dir)/new.txt"))
        let state = try String(contentsOfFile: dir + "/grown/checkpoints/step-0000020/trainer_state.json", encoding: .utf8)
        #expect(state.contains("\"first_new\" : 4") && state.contains("\"froze_old\" : true"))
        let config = try String(contentsOfFile: dir + "/grown/checkpoints/step-0000020/config.json", encoding: .utf8)
        #expect(config.contains("\"frozen_experts\" : 4"))
        let more = try TestSupport.runMoE(["train", "--resume", dir + "/grown/checkpoints/step-0000015", "--steps", "20", "--out", dir + "/again", "--samples", "0"])
        #expect(more.status == 0, "\(more.err)")
        let dense = try TestSupport.runMoE(["train", "--dense", "--steps", "2", "--checkpoint-every", "2", "--out", dir + "/dense"] + shape)
        #expect(dense.status == 0, "\(dense.err)")
        try Data().write(to: URL(fileURLWithPath: dir + "/empty.txt"))
        for (args, message) in [
            (["--freeze-old", "--resume", ckpt], "--freeze-old freezes the experts that exist before new ones are added: add --add-experts M"),
            (["--add-experts", "4"], "--add-experts and --freeze-old grow a trained run: add --resume RUN"),
            (["--resume", ckpt, "--distill", "1", "--steps", "20"], "--distill regularizes a grown run toward the model before the growth: add --add-experts M"),
            (["--resume", ckpt, "--add-experts", "4", "--distill=-1", "--steps", "20"], "invalid distillation coefficient -1.0"),
            (["--resume", dir + "/dense/checkpoints/step-0000002", "--add-experts", "4", "--steps", "4"], "adding experts needs an MoE run; this one is dense"),
            (["--resume", ckpt, "--add-experts", "4", "--data", dir, "--steps", "20"], "is a directory; pass a UTF-8 text or JSONL file"),
            (["--resume", ckpt, "--add-experts", "4", "--data", dir + "/missing.txt", "--steps", "20"], "missing.txt: file not found"),
            (["--resume", ckpt, "--add-experts", "4", "--data", dir + "/empty.txt", "--steps", "20"], "empty.txt: only 0 bytes"),
        ] {
            let r = try TestSupport.runMoE(["train"] + args + ["--out", dir + "/bad"])
            #expect(r.status != 0 && r.err.contains(message) && r.err.split(separator: "\n").count == 1, "\(args): \(r.err)")
        }
    }
}
