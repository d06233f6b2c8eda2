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
    ])
    func badInput(_ args: [String], _ message: String) throws {
        let r = try TestSupport.runMoE([args[0], "--model", Self.dir] + args.dropFirst())
        #expect(r.status != 0)
        #expect(r.err.trimmingCharacters(in: .newlines) == message)
    }

    @Test(.enabled(if: present))
    func promptWithoutTokenizerAsksForIDs() throws {
        let r = try TestSupport.runMoE(["generate", "--model", Self.dir, "--prompt", "hi"])
        #expect(r.status != 0)
        #expect(r.err.trimmingCharacters(in: .newlines) == "Error: \(Self.dir) has no tokenizer.json; pass the prompt as --ids")
    }

    /// `generate --prompt` end to end: the shared mixtral checkpoint with the project's qwen2-style
    /// tokenizer.json beside it, against transformers' greedy generation from the same prompt
    /// (Tests/Fixtures/tokenizers/generate_mixtral.json, written by scripts/make_tokenizer_fixtures.py). The first
    /// prompt ends at the end-of-sequence id of generation_config.json, the second runs all 12 tokens.
    @Test(.enabled(if: present))
    func promptTextMatchesTransformers() throws {
        let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/tokenizers")
        let dir = TestSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        for name in ["config.json", "generation_config.json", "model.safetensors"] {
            try FileManager.default.copyItem(atPath: Self.dir + "/" + name, toPath: dir.appendingPathComponent(name).path)
        }
        try FileManager.default.copyItem(at: fixtures.appendingPathComponent("qwen2/tokenizer.json"), to: dir.appendingPathComponent("tokenizer.json"))
        let cases = try JSONSerialization.jsonObject(with: Data(contentsOf: fixtures.appendingPathComponent("generate_mixtral.json"))) as! [[String: Any]]
        #expect(cases.count == 2)
        for c in cases {
            let prompt = c["prompt"] as! String
            for cache in [true, false] {
                let r = try TestSupport.runMoE(["generate", "--model", dir.path, "--prompt", prompt, "--max-new-tokens", "12",
                                                "--temperature", "0", "--format", "json"] + (cache ? [] : ["--no-cache"]))
                #expect(r.status == 0, "\(r.err)")
                let obj = try JSONSerialization.jsonObject(with: Data(r.out.utf8)) as! [String: Any]
                #expect(obj["ids"] as? [Int] == c["new_ids"] as? [Int])
                #expect((obj["text"] as? String).map { Array($0.unicodeScalars) } == (c["text"] as? String).map { Array($0.unicodeScalars) })
            }
            // Streamed text: the prompt, then the same text as the JSON form.
            let t = try TestSupport.runMoE(["generate", "--model", dir.path, "--prompt", prompt, "--max-new-tokens", "12", "--temperature", "0"])
            #expect(t.status == 0, "\(t.err)")
            #expect(Array(t.out.unicodeScalars) == Array((prompt + (c["text"] as! String) + "\n").unicodeScalars))
        }
        // --ignore-eos runs past the end-of-sequence token.
        let r = try TestSupport.runMoE(["generate", "--model", dir.path, "--prompt", "Hello world", "--max-new-tokens", "5",
                                        "--temperature", "0", "--format", "json", "--ignore-eos"])
        let ids = (try JSONSerialization.jsonObject(with: Data(r.out.utf8)) as! [String: Any])["ids"] as! [Int]
        #expect(ids.count == 5 && Array(ids.prefix(3)) == cases[0]["new_ids"] as! [Int])
    }
}

/// `generate` and `logits` run the inference engine for the families it supports; `--reference` runs the
/// reference model; both give the same tokens and (to rounding) the same logits.
@Suite struct EngineCLITests {
    static let mixtral = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("shared/fixtures/hf/mixtral").path

    @Test(.enabled(if: FileManager.default.fileExists(atPath: mixtral)))
    func engineAndReferenceAgree() throws {
        let args = ["generate", "--model", Self.mixtral, "--ids", "3,14,15,92,65", "--max-new-tokens", "10", "--temperature", "0", "--format", "json", "--ignore-eos"]
        let engine = try TestSupport.runMoE(args)
        let reference = try TestSupport.runMoE(args + ["--reference"])
        #expect(engine.status == 0 && reference.status == 0)
        #expect(engine.out == reference.out && engine.out.hasPrefix("{\"ids\":["), "\(engine.out) vs \(reference.out)")
        func logits(_ extra: [String]) throws -> [Double] {
            let r = try TestSupport.runMoE(["logits", "--model", Self.mixtral, "--ids", "1,2,3,4"] + extra)
            let o = try JSONSerialization.jsonObject(with: Data(r.out.utf8)) as? [String: Any]
            return ((o?["logits"] as? [[[Double]]]) ?? []).flatMap { $0.flatMap { $0 } }
        }
        let a = try logits([]), b = try logits(["--reference"])
        #expect(a.count == 4 * 512 && a.count == b.count)
        #expect(zip(a, b).allSatisfy { abs($0 - $1) < 1e-4 })
    }

    /// `--kv-cache f16` on the engine gives the same greedy tokens here; an unknown cache type, or the option on a
    /// run of the reference model, is one line and a non-zero exit.
    @Test(.enabled(if: FileManager.default.fileExists(atPath: mixtral)))
    func kvCacheOption() throws {
        let args = ["generate", "--model", Self.mixtral, "--ids", "3,14,15,92,65", "--max-new-tokens", "10", "--temperature", "0", "--format", "json", "--ignore-eos"]
        let f32 = try TestSupport.runMoE(args), f16 = try TestSupport.runMoE(args + ["--kv-cache", "f16"])
        #expect(f32.status == 0 && f16.status == 0, "\(f16.err)")
        #expect(f16.out == f32.out, "\(f16.out) vs \(f32.out)")
        let bad = try TestSupport.runMoE(args + ["--kv-cache", "f8"])
        #expect(bad.status != 0 && bad.err.contains("invalid --kv-cache f8: use f32 or f16"), "\(bad.err)")
        let reference = try TestSupport.runMoE(args + ["--kv-cache", "f16", "--reference"])
        #expect(reference.status != 0 && reference.err.contains("applies to the inference engine only"), "\(reference.err)")
        #expect(reference.err.split(separator: "\n").count == 1, "\(reference.err)")
        let bench = try TestSupport.runMoE(["bench", "model", "--model", Self.mixtral, "--kv-cache", "f8"])
        #expect(bench.status != 0 && bench.err.contains("invalid --kv-cache f8"), "\(bench.err)")
    }

    /// A model against itself agrees everywhere with zero divergence; its cross-entropy is the mean negative log
    /// probability of the next byte, checked against the logits command's output.
    @Test(.enabled(if: FileManager.default.fileExists(atPath: mixtral)))
    func perplexityAgainstItself() throws {
        let dir = TestSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let text = dir.appendingPathComponent("t.txt")
        try "hello, experts".write(to: text, atomically: true, encoding: .utf8)
        let r = try TestSupport.runMoE(["perplexity", "--model", Self.mixtral, "--baseline", Self.mixtral, "--text", text.path, "--bytes", "--json"])
        #expect(r.status == 0, "\(r.err)")
        let o = try #require(try JSONSerialization.jsonObject(with: Data(r.out.utf8)) as? [String: Any])
        #expect(o["tokens"] as? Int == 13 && o["topOneAgreement"] as? Double == 1 && abs(o["meanKL"] as? Double ?? 1) < 1e-12)
        let ids = Array("hello, experts".utf8).map(Int.init)
        let l = try TestSupport.runMoE(["logits", "--model", Self.mixtral, "--ids", ids.map(String.init).joined(separator: ",")])
        let logits = try #require((try JSONSerialization.jsonObject(with: Data(l.out.utf8)) as? [String: Any])?["logits"] as? [[[Double]]])[0]
        var nll = 0.0
        for p in 0..<(ids.count - 1) {
            let row = logits[p], m = row.max()!
            nll -= row[ids[p + 1]] - m - log(row.reduce(0) { $0 + exp($1 - m) })
        }
        #expect(abs((o["crossEntropy"] as? Double ?? 0) - nll / 13) < 1e-4)
        let empty = dir.appendingPathComponent("empty.txt")
        try "".write(to: empty, atomically: true, encoding: .utf8)
        let bad = try TestSupport.runMoE(["perplexity", "--model", Self.mixtral, "--text", empty.path, "--bytes"])
        #expect(bad.status != 0 && bad.err == "Error: --text \(empty.path): missing or empty; give a UTF-8 text file or `builtin`\n")
    }

    /// `moe bench model --json` keeps its documented contract: the top-level keys, consistent with the figures.
    @Test(.enabled(if: FileManager.default.fileExists(atPath: mixtral)))
    func benchModelReportsTheDocumentedKeys() throws {
        let r = try TestSupport.runMoE(["bench", "model", "--model", Self.mixtral, "--prompt-tokens", "16", "--new-tokens", "4", "--json"])
        #expect(r.status == 0, "\(r.err)")
        let o = try #require(try JSONSerialization.jsonObject(with: Data(r.out.utf8)) as? [String: Any])
        for key in ["load_seconds", "peak_rss_bytes", "weight_bytes", "prefill_tokens_per_second", "decode_tokens_per_second", "decode_bytes_per_token"] {
            #expect((o[key] as? Double ?? -1) > 0, "\(key): \(o[key] ?? "missing")")
        }
        // The fixture's weights: every tensor is F32; a decoded token reads less than all of them (2 of 8 experts).
        let attributes = try FileManager.default.attributesOfItem(atPath: Self.mixtral + "/model.safetensors")
        let fileBytes = try #require(attributes[.size] as? Int)
        let weights = try #require(o["weight_bytes"] as? Double), perToken = try #require(o["decode_bytes_per_token"] as? Double)
        #expect(weights < Double(fileBytes) && weights > Double(fileBytes) - 20_000)
        #expect(perToken < weights && perToken > weights / 4)
        let bad = try TestSupport.runMoE(["bench", "model", "--model", "/nonexistent"])
        #expect(bad.status == 1 && bad.err == "Error: /nonexistent/config.json: not found; point at a model directory with config.json\n")
    }

    /// A q8 prompt in integer products is judged against the machine's best kernels: its GFLOP/s also appear against
    /// the prefill bound, the int8 products' share of the FLOPs at the VNNI peak and the rest at sgemm's rate (the
    /// router stays f32). In f32 arithmetic there is no such figure. The report names the int8 and BF16 peaks where
    /// the CPU has the instructions, and only there.
    @Test(.enabled(if: FileManager.default.fileExists(atPath: mixtral)))
    func integerPrefillIsJudgedAgainstTheIntegerPeak() throws {
        let dir = TestSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let q8 = dir.appendingPathComponent("q8").path
        let made = try TestSupport.runMoE(["quantize", "--model", Self.mixtral, "--to", "q8", "--matrices", "all", "--out", q8])
        #expect(made.status == 0, "\(made.err)")
        let features = CPUInfo.current.features
        for arithmetic in ["int8", "f32"] {
            let r = try TestSupport.runMoE(["bench", "model", "--model", q8, "--prompt-tokens", "16", "--new-tokens", "2", "--json"],
                                           environment: ["MOE_PREFILL": arithmetic])
            #expect(r.status == 0, "\(r.err)")
            let o = try #require(try JSONSerialization.jsonObject(with: Data(r.out.utf8)) as? [String: Any])
            let machine = try #require(o["machine"] as? [String: Any]), ceilings = try #require(o["ceilings"] as? [String: [String: Any]])
            #expect((machine["int8Peak"] != nil) == features.contains("avx512_vnni"))
            #expect((machine["bf16Peak"] != nil) == features.contains("avx512_bf16"))
            let figures = try #require(o["figures"] as? [[String: Any]])
            let bounded = figures.filter { $0["ceiling"] as? String == "prefill bound" }
            guard arithmetic == "int8" && features.contains("avx512_vnni") && features.contains("avx512bw") else {
                #expect(bounded.isEmpty)
                continue
            }
            let figure = try #require(bounded.first)
            let label = try #require(ceilings.keys.first { $0.hasPrefix("prefill bound") })
            func median(_ d: [String: Any]?) -> Double { d?["median"] as? Double ?? .nan }
            let bound = median(ceilings[label]), int8 = median(ceilings["int8 dot-product peak (VNNI), no BLAS (GFLOP/s)"])
            let sgemm = median(ceilings["sgemm (GFLOP/s)"]), value = median(figure["value"] as? [String: Any])
            #expect(abs((figure["ratio"] as? Double ?? .nan) - value / bound) < 1e-9 * value / bound)
            // The fixture (D 64, V 512, 4 heads and 2 KV heads of 16, 2 layers, 8 experts of 32, top-2), per token in
            // multiply-adds: head 512 x 64, per layer q, k, v, o 12288, router 8 x 64 and two experts 2 x 3 x 32 x 64;
            // causal attention over 16 tokens (scores and values, 2 layers x 4 heads x 16 dims x 17 / 2 keys on average)
            // 4 x 2 x 4 x 16 x 17 / 2 FLOPs. Only the routers and attention stay f32.
            let perLayer = 12288.0 + 512 + 12288, total = 2 * (512 * 64 + 2 * perLayer) + 4 * 2 * 4 * 16 * 17 / 2
            let share = 2 * (512 * 64 + 2 * (perLayer - 512)) / total
            #expect((figure["note"] as? String)?.contains(String(format: "%.1f%% of the FLOPs", 100 * share)) == true, "\(figure["note"] ?? "")")
            let expected = 1 / (share / int8 + (1 - share) / sgemm)
            #expect(abs(bound - expected) < 1e-9 * bound, "bound \(bound), from the parts \(expected)")
            #expect(bound > sgemm && bound < int8)
        }
    }
}
