import Foundation
import MoETestSupport
import Testing

/// The language-model commands end to end on a tiny model: train, then generate, eval and inspect.
@Suite("moe train / generate / eval / inspect", .serialized)
struct LanguageModelCLITests {
    static let run = TestSupport.temporaryDirectory().appendingPathComponent("run").path
    static let tiny = ["--dim", "16", "--layers", "2", "--experts", "4", "--expert-hidden", "16", "--batch", "2", "--sequence", "32"]

    static func train(_ extra: [String]) throws -> (status: Int32, out: String, err: String) {
        try TestSupport.runMoE(["train", "--steps", "20", "--log-every", "10", "--eval-every", "10", "--checkpoint-every", "10",
                                "--samples", "2", "--arithmetic-problems", "4", "--out", run] + tiny + extra)
    }

    @Test func trainPrintsTheWholeReport() throws {
        let r = try Self.train([])
        #expect(r.status == 0, "\(r.err)")
        let lines = r.out.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        #expect(lines[0].hasPrefix("model: MoE (4 experts, top-2, softmax_topk), 2 layers, D 16; "))
        #expect(lines[0].hasSuffix(" active per token"))
        #expect(lines[1].hasPrefix("data: built-in synthetic corpus (seed 1, 60000 documents"))
        #expect(lines[2] == "training: 20 steps of 2 x 32 tokens")
        #expect(lines[3].hasPrefix("step 10/20 | loss ") && lines[3].contains(" tok/s | ETA ") && lines[3].contains(" | val "))
        #expect(lines[4].hasPrefix("step 20/20 | loss ") && lines[4].contains("bits/byte)"))
        #expect(lines[5] == "")
        #expect(lines[6] == "samples (temperature 0.7, seed 1):")
        #expect(lines[7].hasPrefix("  the ") && lines[8].hasPrefix("  47+5="))
        #expect(lines[9] == "")
        #expect(lines[10].hasPrefix("evaluation: validation loss ") && lines[10].hasSuffix("on 4 held-out problems"))
        #expect(lines[11].hasPrefix("validation loss by domain: prose "))
        #expect(lines[13] == "expert specialization (share of each expert's first-choice tokens by domain, validation documents):")
        #expect(lines[14].split(separator: " ", omittingEmptySubsequences: true) == ["layer", "0", "expert", "load", "prose", "arithmetic", "code", "records", "sequences", "main", "domain"])
        #expect(lines.contains { $0.hasPrefix("mean top-domain share ") })
        #expect(lines.last { !$0.isEmpty } == "wrote \(Self.run)/train_log.jsonl, \(Self.run)/loss.svg, \(Self.run)/expert_load.svg, checkpoints in \(Self.run)/checkpoints")
        let log = try String(contentsOfFile: Self.run + "/train_log.jsonl", encoding: .utf8).split(separator: "\n")
        #expect(log.count == 2)
        #expect(try String(contentsOfFile: Self.run + "/loss.svg", encoding: .utf8).contains("<polyline"))
        #expect(try String(contentsOfFile: Self.run + "/expert_load.svg", encoding: .utf8).contains("layer 1"))
        #expect(TrainCheckpoint.list(Self.run + "/checkpoints").map { ($0 as NSString).lastPathComponent } == ["step-0000010", "step-0000020"])

        // The other commands on the same run.
        let g = try TestSupport.runMoE(["generate", "--checkpoint", Self.run, "--prompt", "12+", "--temperature", "0", "--max-new-tokens", "8"])
        #expect(g.status == 0, "\(g.err)")
        #expect(g.out.hasPrefix("12+") && g.out.hasSuffix("\n"))
        let e = try TestSupport.runMoE(["eval", "--checkpoint", Self.run, "--problems", "3"])
        let el = e.out.split(separator: "\n").map(String.init)
        #expect(el.count == 11)
        #expect(el[0] == "checkpoint: \(Self.run)/checkpoints/step-0000020")
        #expect(el[2].hasPrefix("validation loss: ") && el[3].hasPrefix("bits per byte:   "))
        #expect(el[4] == "validation loss by domain:" && el[5].hasPrefix("  prose ") && el[9].hasPrefix("  sequences "))
        #expect(el[10].hasSuffix("on 3 held-out problems"))
        let i = try TestSupport.runMoE(["inspect", "--checkpoint", Self.run])
        #expect(i.out.contains("layer  feed-forward"))
        #expect(i.out.contains("    1  MoE: 4 experts x swiglu 16, top-2, router softmax_topk"))

        // Export as a Hugging Face checkpoint: the same logits through the mixtral loader.
        let hf = TestSupport.temporaryDirectory().appendingPathComponent("hf").path
        let x = try TestSupport.runMoE(["export", "--checkpoint", Self.run, "--to", "hf", hf])
        #expect(x.status == 0, "\(x.err)")
        #expect(x.out.hasPrefix("wrote \(hf) (mixtral, "))
        // The mixtral loader's reference model gives the same logits bit for bit; the inference engine, which runs
        // mixtral files by default, sums in another order (within 1e-5).
        let ours = try TestSupport.runMoE(["logits", "--model", Self.run, "--ids", "104,105,32,116"])
        let theirs = try TestSupport.runMoE(["logits", "--model", hf, "--ids", "104,105,32,116", "--reference"])
        #expect(ours.status == 0 && !ours.out.isEmpty && ours.out == theirs.out)
        let engine = try TestSupport.runMoE(["logits", "--model", hf, "--ids", "104,105,32,116"])
        func values(_ s: String) throws -> [Double] {
            let o = try JSONSerialization.jsonObject(with: Data(s.utf8)) as? [String: Any]
            return ((o?["logits"] as? [[[Double]]]) ?? []).flatMap { $0.flatMap { $0 } }
        }
        let (a, b) = (try values(ours.out), try values(engine.out))
        #expect(!a.isEmpty && a.count == b.count && zip(a, b).allSatisfy { abs($0 - $1) < 1e-5 })
        let to = try TestSupport.runMoE(["export", "--checkpoint", Self.run, "--to", "gguf", hf])
        #expect(to.err.trimmingCharacters(in: .newlines) == "Error: invalid --to gguf: the one format is hf")
        let again = try TestSupport.runMoE(["export", "--checkpoint", hf, hf + "2"])
        #expect(again.err.trimmingCharacters(in: .newlines) == "Error: \(hf) is already a mixtral checkpoint; export writes swift-moe checkpoints")

        // Resume: options that disagree with the checkpoint are refused; a longer --steps continues.
        let bad = try Self.train(["--resume", Self.run + "/checkpoints/step-0000010", "--experts", "8"])
        #expect(bad.status != 0)
        #expect(bad.err.trimmingCharacters(in: .newlines) == "Error: the options do not match the checkpoint \(Self.run)/checkpoints/step-0000010: --experts 8 (checkpoint: 4); drop them or start a new run")
        let scope = try Self.train(["--resume", Self.run + "/checkpoints/step-0000010", "--aux-loss-scope", "pooled"])
        #expect(scope.err.contains("--aux-loss-scope pooled (checkpoint: per_layer)"), "\(scope.err)")
        let badScope = try Self.train(["--aux-loss-scope", "layers"])
        #expect(badScope.status != 0 && badScope.err.trimmingCharacters(in: .newlines) == "Error: invalid --aux-loss-scope layers: use per_layer or pooled")
        let ok = try TestSupport.runMoE(["train", "--resume", Self.run + "/checkpoints/step-0000020", "--steps", "30", "--log-every", "10",
                                         "--samples", "0", "--arithmetic-problems", "1", "--out", Self.run])
        #expect(ok.status == 0, "\(ok.err)")
        #expect(ok.out.contains("resuming at step 20"))
        #expect(ok.out.contains("step 30/30 | loss "))
        #expect(try String(contentsOfFile: Self.run + "/train_log.jsonl", encoding: .utf8).split(separator: "\n").count == 3)
    }

    @Test(arguments: [
        (["train", "--data", "/nonexistent/corpus.txt", "--steps", "1"], "Error: /nonexistent/corpus.txt: file not found; pass a UTF-8 text file or a JSONL file with a \"text\" field"),
        (["train", "--steps", "0"], "Error: invalid steps = 0: use between 1 and 10000000 steps"),
        (["train", "--router", "expert_choice"], "Error: invalid --router expert_choice: a causal language model needs a token-choice router"),
        (["train", "--experts", "2", "--top-k", "3", "--steps", "1"], "Error: invalid --top-k 3: use 1...2 (at most --experts)"),
        (["generate", "--checkpoint", "/nonexistent", "--prompt", "a"], "Error: /nonexistent: not found; pass a checkpoint directory (runs/default/checkpoints/step-0001200) or a run directory (runs/default)"),
        (["train", "--resume", "/nonexistent"], "Error: --resume /nonexistent: not found; pass a run directory (a run's --out) or a checkpoint such as runs/default/checkpoints/step-0000400"),
        (["generate", "--checkpoint", "/tmp", "--prompt", "a", "--top-p", "0"], "Error: invalid top-p = 0.0: use a value in (0, 1]"),
    ])
    func badInputGivesOneLineErrors(_ args: [String], _ message: String) throws {
        let r = try TestSupport.runMoE(args)
        #expect(r.status != 0)
        #expect(r.err.trimmingCharacters(in: .newlines) == message)
    }

    @Test func trainsOnAUsersJSONLFile() throws {
        let dir = TestSupport.temporaryDirectory()
        let path = dir.appendingPathComponent("docs.jsonl").path
        let lines = (0..<200).map { #"{"text": "document \#($0): the quick brown fox, "# + String(repeating: "ab", count: $0 % 7) + #""}"# }
        try lines.joined(separator: "\n").write(toFile: path, atomically: true, encoding: .utf8)
        let r = try TestSupport.runMoE(["train", "--data", path, "--steps", "3", "--log-every", "3", "--samples", "1", "--out", dir.appendingPathComponent("r").path] + Self.tiny)
        #expect(r.status == 0, "\(r.err)")
        #expect(r.out.contains("data: \(path) ("))
        #expect(r.out.contains("step 3/3 | loss "))
        #expect(!r.out.contains("arithmetic"))
        let bad = dir.appendingPathComponent("bad.jsonl").path
        try "{\"text\": \"ok\"}\n{\"body\": 1}\n".write(toFile: bad, atomically: true, encoding: .utf8)
        let e = try TestSupport.runMoE(["train", "--data", bad, "--steps", "1"])
        #expect(e.err.trimmingCharacters(in: .newlines) == "Error: \(bad):2: not a JSON object with a string \"text\" field; fix the line or pass plain text")
    }

    @Test func truncatedCheckpointIsNamed() throws {
        let dir = TestSupport.temporaryDirectory().appendingPathComponent("r").path
        let r = try TestSupport.runMoE(["train", "--steps", "2", "--log-every", "1", "--samples", "0", "--arithmetic-problems", "1", "--out", dir] + Self.tiny)
        #expect(r.status == 0, "\(r.err)")
        let weights = dir + "/checkpoints/step-0000002/model.safetensors"
        let bytes = try Data(contentsOf: URL(fileURLWithPath: weights))
        try bytes.prefix(100).write(to: URL(fileURLWithPath: weights))
        // Named explicitly, the checkpoint is read and the file named; through the run, its manifest rules it out.
        let g = try TestSupport.runMoE(["generate", "--checkpoint", dir + "/checkpoints/step-0000002", "--prompt", "a"])
        #expect(g.status != 0)
        let line = g.err.trimmingCharacters(in: .newlines)
        #expect(!line.contains("\n"))
        #expect(line.hasPrefix("Error: \(weights): "))
        #expect(line.contains("truncated"))
        let run = try TestSupport.runMoE(["generate", "--checkpoint", dir, "--prompt", "a"])
        #expect(run.status != 0 && run.err == "warning: skipping \(dir)/checkpoints/step-0000002: model.safetensors does not match manifest.json (100 bytes, crc32 1496670c; the manifest says \(bytes.count) bytes, crc32 \(String(format: "%08x", bytes.withUnsafeBytes { CRC32.checksum($0) })))\nError: \(dir): no checkpoint there is intact (see the warnings); pass one explicitly or retrain\n", "\(run.err)")
    }
}
