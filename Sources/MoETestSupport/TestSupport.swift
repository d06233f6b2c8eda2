@_exported import MoEAnalysis
import Foundation

/// Shared helpers for the test targets: seeded random tensors, naive reference kernels and composed
/// references for the fused primitives.
public enum TestSupport {
    /// A seeded normal tensor in Double.
    public static func randn(_ shape: [Int], seed: UInt64, scale: Double = 1) -> Tensor<Double> {
        var rng = RandomGenerator(seed: seed)
        return Tensor<Double>.normal(shape, std: scale, rng: &rng)
    }

    public static func randnF(_ shape: [Int], seed: UInt64, scale: Float = 1) -> Tensor<Float> {
        var rng = RandomGenerator(seed: seed)
        return Tensor<Float>.normal(shape, std: scale, rng: &rng)
    }

    /// Naive triple-loop matrix product of 2-D tensors with optional transposes.
    public static func naiveMatmul<T: TensorScalar>(_ a: Tensor<T>, _ b: Tensor<T>, ta: Bool = false, tb: Bool = false) -> Tensor<T> {
        let m = ta ? a.shape[1] : a.shape[0], k = ta ? a.shape[0] : a.shape[1]
        let n = tb ? b.shape[0] : b.shape[1]
        var c = Tensor<T>.zeros([m, n])
        for i in 0..<m {
            for j in 0..<n {
                var s = 0.0
                for p in 0..<k { s += Double(ta ? a[p, i] : a[i, p]) * Double(tb ? b[j, p] : b[p, j]) }
                c[i, j] = T(s)
            }
        }
        return c
    }

    /// Attention composed from primitives (no fused kernel): repeat the KV heads, QKᵀ, mask, softmax, PV.
    /// q [B, T, Hq, Dh], k/v [B, S, Hkv, Dh].
    public static func composedAttention<T>(
        q: Variable<T>, k: Variable<T>, v: Variable<T>, causal: Bool, window: Int? = nil
    ) -> Variable<T> {
        let (b, t, hq, dh) = (q.shape[0], q.shape[1], q.shape[2], q.shape[3])
        let (s, hkv) = (k.shape[1], k.shape[2])
        let group = hq / hkv
        // [B, S, Hkv, Dh] -> [Hkv, B, S, Dh] -> select heads h / group -> [Hq, B, S, Dh] -> [B, Hq, S, Dh]
        let headMap = (0..<hq).map { $0 / group }
        let kr = k.permuted([2, 0, 1, 3]).indexSelect(headMap).permuted([1, 0, 2, 3])
        let vr = v.permuted([2, 0, 1, 3]).indexSelect(headMap).permuted([1, 0, 2, 3])
        let qr = q.permuted([0, 2, 1, 3])  // [B, Hq, T, Dh]
        var scores = Variable.matmul(qr, kr, transposeB: true) * (1 / T(dh).squareRoot())  // [B, Hq, T, S]
        if causal {
            var mask = Tensor<T>.zeros([t, s])
            for i in 0..<t {
                for j in 0..<s where j > i + (s - t) || window.map({ j <= i + (s - t) - $0 }) ?? false { mask[i, j] = -T.infinity }
            }
            scores = scores + Variable(mask)
        }
        let out = Variable.matmul(scores.softmax(), vr)  // [B, Hq, T, Dh]
        return out.permuted([0, 2, 1, 3]).reshaped([b, t, hq, dh])
    }

    /// Path of the built `moe` executable next to the test bundle.
    public static func moeExecutable() -> URL? {
        var dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for _ in 0..<4 {
            let candidate = dir.appendingPathComponent("moe")
            if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
            dir = dir.deletingLastPathComponent()
        }
        return nil
    }

    /// Runs the `moe` executable; returns exit status, stdout and stderr.
    /// `environment` entries are added to (or, with nil, removed from) this process's environment.
    public static func runMoE(_ arguments: [String], cwd: URL? = nil, environment: [String: String?] = [:]) throws -> (status: Int32, out: String, err: String) {
        guard let exe = moeExecutable() else {
            throw NSError(domain: "TestSupport", code: 1, userInfo: [NSLocalizedDescriptionKey: "moe executable not found"])
        }
        let p = Process()
        p.executableURL = exe
        p.arguments = arguments
        if let cwd { p.currentDirectoryURL = cwd }
        if !environment.isEmpty {
            var env = ProcessInfo.processInfo.environment
            for (k, v) in environment { env[k] = v }
            p.environment = env
        }
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let o = out.fileHandleForReading.readDataToEndOfFile()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
    }

    /// A fresh directory for one test's files. They all live under one directory per test process, removed when
    /// the process exits, so a test run leaves nothing behind in the system's temporary directory.
    public static func temporaryDirectory() -> URL {
        let url = scratchRoot.appendingPathComponent(UUID().uuidString)
        try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    private static let scratchRoot: URL = {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("moe-test-\(getpid())")
        try? FileManager.default.removeItem(at: root)  // left by an earlier process that had the same id and crashed
        try? FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        atexit { try? FileManager.default.removeItem(at: TestSupport.scratchRoot) }
        return root
    }()
}
