import Foundation
import MoETestSupport
import Testing

/// Bad input and hostile conditions: each gets one line naming the problem and the fix, and a non-zero exit;
/// a killed, full or read-only run never loses its last good checkpoint.
@Suite("Bad input and interrupted runs", .serialized)
struct RobustnessCLITests {
    static let shape = ["--dim", "32", "--layers", "2", "--experts", "4", "--batch", "4", "--sequence", "32", "--samples", "0",
                        "--arithmetic-problems", "0", "--log-every", "1", "--eval-every", "1000"]
    static var repo: URL { URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent() }

    /// One line on stderr, a non-zero exit, and `needle` in it.
    func refused(_ args: [String], _ needle: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let r = try TestSupport.runMoE(args)
        let lines = r.err.split(separator: "\n")
        #expect(r.status != 0 && lines.count == 1 && r.err.contains(needle), "\(args): \(r.status) \(r.err)", sourceLocation: sourceLocation)
    }

    @Test func cliInputsGetOneLineErrors() throws {
        let dir = TestSupport.temporaryDirectory().path
        let trained = try TestSupport.runMoE(["train", "--steps", "2", "--checkpoint-every", "2", "--out", dir + "/run"] + Self.shape)
        #expect(trained.status == 0, "\(trained.err)")
        let fixture = Self.repo.appendingPathComponent("Tests/Fixtures/hf/mixtral").path
        try refused(["generate", "--checkpoint", dir + "/run", "--ids", "5,300"], "invalid --ids \"5,300\": 300 is outside the vocabulary of 256")
        try refused(["generate", "--checkpoint", dir + "/run", "--ids=-1,2"], "-1 is outside the vocabulary of 256")
        try refused(["logits", "--model", fixture, "--ids", "1,128"], "128 is outside the vocabulary of 128")
        try refused(["generate", "--model", fixture, "--ids", "1,2", "--max-new-tokens", "63"],
                    "--max-new-tokens 63 after the prompt's 2 tokens goes beyond the model's context of 64 (max_position_embeddings); use at most 62")
        try refused(["generate", "--checkpoint", dir + "/run", "--prompt", ""], "invalid --prompt: give at least one character")
        try Data([0x61, 0x62, 0xFF, 0xFE, 0x63]).write(to: URL(fileURLWithPath: dir + "/bad.txt"))
        try refused(["generate", "--checkpoint", dir + "/run", "--prompt-file", dir + "/bad.txt"], "--prompt-file \(dir)/bad.txt: not valid UTF-8 (near byte 2); save it as UTF-8")
        try FileManager.default.createDirectory(atPath: dir + "/folder", withIntermediateDirectories: true)
        try refused(["train", "--data", dir + "/folder", "--out", dir + "/d", "--steps", "2"] + Self.shape, "\(dir)/folder: is a directory; pass a UTF-8 text file or a JSONL file")
        try refused(["eval", "--checkpoint", dir + "/run", "--data", dir + "/folder"], "is a directory")
        try refused(["train", "--out", dir + "/bad.txt/run", "--steps", "2"] + Self.shape, "--out \(dir)/bad.txt/run: cannot be created")
        // Train options: sizes in range before any product of them, and a model that cannot fit refused before allocation.
        try refused(["train", "--out", dir + "/o", "--top-k", "9223372036854775807"], "invalid --top-k 9223372036854775807: use 1...16 (at most --experts)")
        try refused(["train", "--out", dir + "/o", "--dim", "12"], "invalid --dim 12: use a multiple of 8")
        try refused(["train", "--out", dir + "/o", "--dim", "65536", "--layers", "64"], "the model has 837627740160 parameters: training needs about 12481.6 GiB")
    }

    /// Without the fuzzer, moe-fuzz replays inputs once: the fixtures each target's fuzzing starts from, and every
    /// input a fuzzer found (Tests/Fixtures/fuzz/TARGET/), so nothing fixed can come back.
    @Test func fuzzTargetsReplayTheirSeeds() throws {
        guard let moe = TestSupport.moeExecutable() else { Issue.record("moe executable not found"); return }
        let fuzz = moe.deletingLastPathComponent().appendingPathComponent("moe-fuzz")
        let fixtures = Self.repo.appendingPathComponent("Tests/Fixtures")
        func files(_ folder: String, _ name: String) -> [String] {
            let root = fixtures.appendingPathComponent(folder)
            return ((try? FileManager.default.contentsOfDirectory(atPath: root.path)) ?? []).sorted()
                .map { root.appendingPathComponent($0).appendingPathComponent(name).path }
                .filter { FileManager.default.fileExists(atPath: $0) }
        }
        func found(_ target: String) -> [String] {
            let root = fixtures.appendingPathComponent("fuzz/" + target)
            return ((try? FileManager.default.contentsOfDirectory(atPath: root.path)) ?? []).map { root.appendingPathComponent($0).path }
        }
        let inputs: [String: [String]] = [
            "config": files("hf", "config.json"), "generation-config": files("hf", "generation_config.json"),
            "tokenizer": files("tokenizers", "tokenizer.json"), "blocks": files("hf", "model.safetensors").suffix(3).map { $0 },
            "safetensors-header": files("hf", "model.safetensors").prefix(3).map { $0 }, "index": [],
        ]
        for (target, seeds) in inputs.sorted(by: { $0.key < $1.key }) {
            let all = seeds + found(target)
            guard !all.isEmpty else { continue }
            let p = Process()
            p.executableURL = fuzz
            p.arguments = [target] + all
            p.environment = ProcessInfo.processInfo.environment.merging(["MOE_FUZZ_FIXTURES": fixtures.appendingPathComponent("hf").path]) { $1 }
            let out = Pipe()
            p.standardOutput = out
            try p.run()
            let o = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            p.waitUntilExit()
            #expect(p.terminationStatus == 0 && o == "\(target): \(all.count) inputs, no crash\n", "\(target): \(o)")
        }
    }

    /// A checkpoint whose manifest is missing or whose files disagree with it is never read: resuming the run
    /// skips it with a warning and continues from the newest intact one, bit-exact with an uninterrupted run.
    @Test func damagedCheckpointsAreSkipped() throws {
        let dir = TestSupport.temporaryDirectory().path
        let args = ["--steps", "6", "--checkpoint-every", "2", "--keep", "5"] + Self.shape
        let full = try TestSupport.runMoE(["train", "--out", dir + "/full"] + args)
        #expect(full.status == 0, "\(full.err)")
        let cut = try TestSupport.runMoE(["train", "--out", dir + "/cut"] + args)
        #expect(cut.status == 0, "\(cut.err)")
        // Step 6: a flipped byte in the weights. Step 4: no manifest (an unfinished write).
        let weights = dir + "/cut/checkpoints/step-0000006/model.safetensors"
        var bytes = try Data(contentsOf: URL(fileURLWithPath: weights))
        bytes[bytes.count - 3] ^= 0x10
        try bytes.write(to: URL(fileURLWithPath: weights))
        try FileManager.default.removeItem(atPath: dir + "/cut/checkpoints/step-0000004/manifest.json")
        let strict = try TestSupport.runMoE(["train", "--resume", dir + "/cut/checkpoints/step-0000006", "--out", dir + "/cut", "--steps", "8"])
        #expect(strict.status != 0 && strict.err.contains("model.safetensors does not match manifest.json"), "\(strict.err)")
        let resumed = try TestSupport.runMoE(["train", "--resume", dir + "/cut", "--out", dir + "/cut"] + args)
        #expect(resumed.status == 0, "\(resumed.err)")
        #expect(resumed.err.contains("warning: skipping \(dir)/cut/checkpoints/step-0000006: model.safetensors does not match manifest.json"), "\(resumed.err)")
        #expect(resumed.err.contains("warning: skipping \(dir)/cut/checkpoints/step-0000004: manifest.json is missing (the checkpoint was never finished)"))
        #expect(resumed.out.contains("resuming from \(dir)/cut/checkpoints/step-0000002"))
        for f in ["model.safetensors", "optimizer.safetensors"] {
            #expect(FileManager.default.contents(atPath: dir + "/full/checkpoints/step-0000006/" + f) == FileManager.default.contents(atPath: dir + "/cut/checkpoints/step-0000006/" + f), "\(f)")
        }
    }

    /// The kill -9 chaos test, with a smaller count than the full run's 20 (scripts/chaos.sh 20).
    @Test func killNineChaos() throws {
        guard let moe = TestSupport.moeExecutable() else { Issue.record("moe executable not found"); return }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/bash")
        p.arguments = [Self.repo.appendingPathComponent("scripts/chaos.sh").path, "6", "7"]
        p.environment = ProcessInfo.processInfo.environment.merging(["MOE": moe.path]) { $1 }
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let o = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let e = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        #expect(p.terminationStatus == 0 && o.contains("chaos: 6 kills"), "exit \(p.terminationStatus): \(e)\(o)")
        print(o, terminator: "")
    }

    /// A full disk (a 3 MiB tmpfs: room for one checkpoint, not two) and a read-only output folder: a clear
    /// error, a non-zero exit, no partial checkpoint left, and the earlier checkpoint intact. Needs mount (root);
    /// without it, only the simulated failed write (a file-size limit) runs, and the test says so.
    @Test func fullDiskAndReadOnlyFolder() throws {
        let dir = TestSupport.temporaryDirectory().path
        let mnt = dir + "/mnt"
        try FileManager.default.createDirectory(atPath: mnt, withIntermediateDirectories: true)
        func sh(_ command: String) -> Int32 {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/bin/sh")
            p.arguments = ["-c", command]
            p.standardError = FileHandle.nullDevice
            guard (try? p.run()) != nil else { return -1 }
            p.waitUntilExit()
            return p.terminationStatus
        }
        guard sh("mount -t tmpfs -o size=3m tmpfs '\(mnt)'") == 0 else {
            // No mount here: a file-size limit makes the same write fail (EFBIG instead of ENOSPC), and the
            // read-only case is left to machines that can mount.
            print("fullDiskAndReadOnlyFolder: mount is not permitted; simulating the failed write with ulimit -f")
            try simulatedFullDisk(dir)
            return
        }
        defer { _ = sh("umount '\(mnt)'") }
        let args = ["--steps", "4", "--checkpoint-every", "2", "--keep", "5", "--dim", "64", "--layers", "2", "--experts", "4", "--batch", "8",
                    "--sequence", "64", "--samples", "0", "--arithmetic-problems", "0", "--log-every", "1", "--eval-every", "1000"]
        let full = try TestSupport.runMoE(["train", "--out", mnt + "/run"] + args)
        #expect(full.status != 0, "\(full.out)")
        #expect(full.err.contains("\(mnt)/run/checkpoints/step-0000004: cannot be written (No space left on device); the earlier checkpoints are untouched; free space or choose another --out"), "\(full.err)")
        let left = try FileManager.default.contentsOfDirectory(atPath: mnt + "/run/checkpoints")
        #expect(left == ["step-0000002"], "\(left)")
        // The earlier checkpoint is intact: a run on a disk with room resumes from it.
        try FileManager.default.copyItem(atPath: mnt + "/run", toPath: dir + "/moved")
        let resumed = try TestSupport.runMoE(["train", "--resume", dir + "/moved", "--out", dir + "/moved"] + args)
        #expect(resumed.status == 0 && resumed.out.contains("resuming at step 2"), "\(resumed.err)")
        // Read-only: refused before any training is spent.
        #expect(sh("mount -o remount,ro '\(mnt)'") == 0)
        let ro = try TestSupport.runMoE(["train", "--resume", mnt + "/run", "--out", mnt + "/run"] + args)
        #expect(ro.status != 0 && ro.err == "Error: --out \(mnt)/run: cannot be written (Read-only file system); choose another --out\n", "\(ro.err)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: mnt + "/run/checkpoints") == ["step-0000002"])
        try simulatedFullDisk(dir)
    }

    /// The failed write without mount: `ulimit -f` caps every file at 1 MiB, which the step-2 checkpoint's
    /// files fit under and the optimizer file of a larger model does not.
    func simulatedFullDisk(_ dir: String) throws {
        guard let moe = TestSupport.moeExecutable() else { Issue.record("moe executable not found"); return }
        let out = dir + "/limited"
        let args = ["train", "--out", out, "--steps", "4", "--checkpoint-every", "2", "--dim", "64", "--layers", "2", "--experts", "4",
                    "--batch", "8", "--sequence", "64", "--samples", "0", "--arithmetic-problems", "0", "--log-every", "1", "--eval-every", "1000"]
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", "ulimit -f 2048; exec \"$0\" \"$@\"", moe.path] + args
        let err = Pipe()
        p.standardError = err
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        let e = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        #expect(p.terminationStatus == 1 && e == "Error: \(out)/checkpoints/step-0000002: cannot be written (File too large); the earlier checkpoints are untouched; free space or choose another --out\n", "\(p.terminationStatus) \(e)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: out + "/checkpoints").isEmpty)
    }
}
