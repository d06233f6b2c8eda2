import Foundation

#if canImport(Accelerate)
import Accelerate
#else
import CMoEBLAS
#endif

/// What the CPU can execute, read from CPUID once (features count only when the OS saves their registers).
public struct CPUInfo: Codable, Sendable, Equatable {
    public let vendor: String
    public let model: String
    public let family: Int
    public let modelNumber: Int
    public let stepping: Int
    /// The widest vector ISA usable: "AVX-512", "AVX2+FMA", "AVX", "SSE4.2", "SSE2", or "other".
    public let isa: String
    public let vectorBits: Int
    /// Every vector feature present, in CPUID's spelling ("avx512_bf16", ...).
    public let features: [String]
    /// "not advertised", "advertised, refused by the kernel" or "advertised, permitted". swift-moe never
    /// executes AMX; a refusal means tile instructions would trap (SIGILL), as on VMs that do not pass AMX through.
    public let amx: String
    /// The clock /proc/cpuinfo reports, in GHz (nominal on a VM: turbo may run higher), nil where unknown.
    public let clockGHz: Double?
    /// The vector ISA MOE_MAX_ISA capped this process at ("SSE2", ...), nil when not capped.
    public let cappedAt: String?
    /// True when the CPU has AVX2 and FMA: without them the BLAS runs its portable (SSE/AVX) kernels.
    public var hasAVX2: Bool { vectorBits >= 256 && features.contains("avx2") && features.contains("fma") }

    public static let current: CPUInfo = {
        #if canImport(Accelerate)
        return CPUInfo(vendor: "Apple", model: "Apple silicon", family: 0, modelNumber: 0, stepping: 0, isa: "other",
                       vectorBits: 128, features: [], amx: "not advertised", clockGHz: nil, cappedAt: nil)
        #else
        let c = moe_cpu()!.pointee
        var f: [String] = []
        let flags: [(Int32, String)] = [
            (c.sse3, "sse3"), (c.ssse3, "ssse3"), (c.sse41, "sse4_1"), (c.sse42, "sse4_2"), (c.avx, "avx"), (c.fma, "fma"),
            (c.f16c, "f16c"), (c.avx2, "avx2"), (c.avxvnni, "avx_vnni"), (c.avx512f, "avx512f"), (c.avx512cd, "avx512cd"),
            (c.avx512bw, "avx512bw"), (c.avx512dq, "avx512dq"), (c.avx512vl, "avx512vl"), (c.avx512vnni, "avx512_vnni"),
            (c.avx512bf16, "avx512_bf16"), (c.avx512fp16, "avx512_fp16"),
        ]
        for (on, name) in flags where on != 0 { f.append(name) }
        func name(_ level: Int32) -> String {
            switch Int(level) {
            case MOE_ISA_AVX512: return "AVX-512"
            case MOE_ISA_AVX2: return "AVX2+FMA"
            case MOE_ISA_AVX: return "AVX"
            case MOE_ISA_SSE4: return "SSE4.2"
            case MOE_ISA_SSE2: return "SSE2"
            default: return "other"
            }
        }
        let isa = name(c.isa)
        let amx = c.amx_advertised == 0 ? "not advertised"
            : c.amx_permitted != 0 ? "advertised, permitted" : "advertised, refused by the kernel (would trap)"
        return CPUInfo(
            vendor: cString(c.vendor), model: cString(c.brand), family: Int(c.family), modelNumber: Int(c.model),
            stepping: Int(c.stepping), isa: isa, vectorBits: Int(c.vector_bits), features: f, amx: amx,
            clockGHz: c.clock_ghz > 0 ? c.clock_ghz : nil, cappedAt: c.isa_cap >= 0 ? name(c.isa_cap) : nil)
        #endif
    }()

    /// One line: "AMD EPYC (AuthenticAMD family 25 model 17), AVX-512 (avx512_bf16, avx512_vnni), 2.60 GHz".
    public var summary: String {
        let extras = features.filter { ["avx512_vnni", "avx512_bf16", "avx512_fp16", "avx_vnni"].contains($0) }
        let clock = clockGHz.map { String(format: ", %.2f GHz", $0) } ?? ""
        return "\(model) (\(vendor) family \(family) model \(modelNumber)), \(isa)" + (cappedAt != nil ? " (capped by MOE_MAX_ISA)" : "")
            + (extras.isEmpty ? "" : " (\(extras.joined(separator: ", ")))") + clock + ", AMX \(amx)"
    }
}

/// The BLAS swift-moe runs its matrix products on, loaded at first use (see CMoEBLAS/include/moe_blas.h):
/// OpenBLAS with the kernels that match the CPU's vector ISA, chosen from CPUID before the library starts, unless
/// the user set `OPENBLAS_CORETYPE`; or the library named by `MOE_BLAS_LIBRARY` (OpenBLAS or BLIS).
public enum BLAS {
    /// A BLAS that cannot be loaded, or that does not say which kernel it runs.
    public struct LoadError: Error, CustomStringConvertible {
        public let description: String
    }

    /// What was loaded, for benchmarks and `moe --version`-style reports.
    public struct Info: Codable, Sendable {
        /// "OpenBLAS" or "BLIS".
        public let library: String
        public let path: String
        /// The library's own description (OpenBLAS's build configuration, or BLIS's version).
        public let version: String
        /// The kernel family it runs ("Cooperlake", "Haswell", "zen3", ...).
        public let kernel: String
        /// The OpenBLAS core asked for ("" if none), and who chose it: "user" (OPENBLAS_CORETYPE), "cpuid", "library".
        public let requestedCore: String
        public let coreChosenBy: String
        /// The core types the OpenBLAS file was built with.
        public let knownCores: [String]
        /// Non-nil when the kernel running is not the one that matches the CPU.
        public let warning: String?
        /// The OpenBLAS core this CPU should run, whatever is running now (nil for BLIS, which chooses itself).
        public let matchingCore: String?

        /// One line: "OpenBLAS 0.3.21, Cooperlake kernels (chosen from CPUID), /usr/lib/...".
        public var summary: String {
            let who = ["user": "set by OPENBLAS_CORETYPE", "cpuid": "chosen from CPUID", "library": "the library's own choice"][coreChosenBy] ?? coreChosenBy
            return "\(version.split(separator: " ").prefix(2).joined(separator: " ")), \(kernel) kernels (\(who)), \(path)"
        }
    }

    /// Loads the BLAS now (it is otherwise loaded at the first product), so that a failure is a typed error.
    public static func load() throws {
        #if !canImport(Accelerate)
        var buf = [CChar](repeating: 0, count: 1024)
        if moe_blas_load(&buf, buf.count) != 0 { throw LoadError(description: cString(buf)) }
        #endif
    }

    public static var info: Info {
        #if canImport(Accelerate)
        return Info(library: "Accelerate", path: "", version: "Accelerate", kernel: "Accelerate", requestedCore: "",
                    coreChosenBy: "library", knownCores: [], warning: nil, matchingCore: nil)
        #else
        _ = moe_blas()
        let i = moe_blas_info()!.pointee
        let known = cString(i.known_cores).split(separator: ",").map(String.init)
        let source = Int(i.core_source) == MOE_CORE_FROM_USER ? "user"
            : Int(i.core_source) == MOE_CORE_FROM_CPUID ? "cpuid" : "library"
        let warning = cString(i.warning)
        let isOpenBLAS = Int(i.kind) == MOE_BLAS_OPENBLAS
        return Info(
            library: isOpenBLAS ? "OpenBLAS" : "BLIS", path: cString(i.path), version: cString(i.version),
            kernel: cString(i.kernel), requestedCore: cString(i.requested), coreChosenBy: source, knownCores: known,
            warning: warning.isEmpty ? nil : warning,
            matchingCore: isOpenBLAS ? openBLASCores(knownCores: known).first : nil)
        #endif
    }

    /// The OpenBLAS core types that suit this CPU, best first, limited to `knownCores` when given.
    public static func openBLASCores(knownCores: [String] = []) -> [String] {
        #if canImport(Accelerate)
        return []
        #else
        var out = [UnsafePointer<CChar>?](repeating: nil, count: 8)
        let n = Int(moe_openblas_cores_for(moe_cpu(), &out, 8))
        let all = out.prefix(n).compactMap { $0.map { String(cString: $0) } }
        if knownCores.isEmpty { return all }
        let known = Set(knownCores.map { $0.uppercased() })
        return all.filter { known.contains($0.uppercased()) }
        #endif
    }

    /// The number of threads BLAS uses for one call.
    public static var threads: Int {
        #if canImport(Accelerate)
        return 1
        #else
        return Int(moe_blas_get_threads())
        #endif
    }

    public static func setThreads(_ n: Int) {
        #if !canImport(Accelerate)
        moe_blas_set_threads(Int32(Swift.max(1, n)))
        #endif
    }

    /// Runs `body` with BLAS single-threaded, then restores the previous count (a no-op unless the library was
    /// loaded with its own threads, MOE_BLAS_OWN_THREADS=1).
    public static func singleThreaded<R>(_ body: () throws -> R) rethrows -> R {
        let before = threads
        if before == 1 { return try body() }
        setThreads(1)
        defer { setThreads(before) }
        return try body()
    }

    /// One sgemm straight to the library, with whatever threading it has (no splitting by swift-moe): for the
    /// ceiling measurement, which compares the library's own threads with the tensor API's split.
    public static func sgemmDirect(
        transA: Bool, transB: Bool, m: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
        c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        #if canImport(Accelerate)
        Float.gemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: 1, a: a, lda: lda, b: b, ldb: ldb, beta: 0, c: c, ldc: ldc)
        #else
        moe_sgemm(transA ? 1 : 0, transB ? 1 : 0, Int32(m), Int32(n), Int32(k), 1, a, Int32(lda), b, Int32(ldb), 0, c, Int32(ldc))
        #endif
    }

    /// True when the library threads its own calls (MOE_BLAS_OWN_THREADS=1); normally it runs single-threaded
    /// and swift-moe splits products across its own threads.
    public static var ownThreads: Bool {
        #if canImport(Accelerate)
        return true
        #else
        _ = moe_blas()
        return moe_blas_info()!.pointee.own_threads != 0
        #endif
    }

    /// The register-only loops that measure what the CPU's vector units can do, without any BLAS or memory.
    public enum Probe: String, Sendable {
        /// f32 FMAs of the widest vector ISA: the ceiling of every f32 product.
        case fma
        /// AVX-512 VNNI's u8 x s8 dot product (vpdpbusd): the ceiling of the integer prompt products.
        case int8
        /// AVX512_BF16's dot product (vdpbf16ps): the ceiling of the BF16 prompt products.
        case bf16
    }

    /// Runs `iterations` rounds of the probe's loop (16 independent instructions each; the FMA loop without
    /// AVX-512 runs 12) on the calling thread and returns the operations done, 2 per multiply-add, or 0 where the
    /// CPU lacks the instruction. Timed over every core, it is a compute ceiling no library choice can hide
    /// (Measure.peakRates).
    public static func probe(_ p: Probe, iterations: Int) -> Double {
        #if canImport(Accelerate)
        return 0
        #else
        switch p {
        case .fma: return moe_fma_probe(iterations)
        case .int8: return moe_int8_probe(iterations)
        case .bf16: return moe_bf16_probe(iterations)
        }
        #endif
    }
}

/// A Swift string from a fixed-size C character array (a tuple, as C arrays import).
func cString<T>(_ tuple: T) -> String {
    withUnsafeBytes(of: tuple) { raw in
        let bytes = raw.prefix(while: { $0 != 0 })
        return String(decoding: bytes, as: UTF8.self)
    }
}

func cString(_ array: [CChar]) -> String {
    array.withUnsafeBufferPointer { b in
        String(decoding: UnsafeRawBufferPointer(b).prefix(while: { $0 != 0 }), as: UTF8.self)
    }
}
