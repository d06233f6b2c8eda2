import CMoEBLAS
import Foundation
import MoETestSupport
import Testing

/// The CPU read from CPUID, the OpenBLAS kernel chosen from it, and the one-row products sent to gemv.
@Suite("CPU and BLAS")
struct BLASTests {
    /// A C string buffer as text.
    static func text(_ buf: [CChar]) -> String {
        String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// The kernel's view of the CPU (/proc/cpuinfo flags) and CPUID agree on the vector ISA.
    @Test func cpuidAgreesWithProcCpuinfo() throws {
        let text = try String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)
        let flagsLine = try #require(text.split(separator: "\n").first { $0.hasPrefix("flags") })
        let flags = Set(flagsLine.split(separator: ":")[1].split(separator: " ").map(String.init))
        let cpu = CPUInfo.current
        let avx512 = ["avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"].allSatisfy(flags.contains)
        let expected = avx512 ? "AVX-512" : flags.contains("avx2") && flags.contains("fma") ? "AVX2+FMA" : flags.contains("avx") ? "AVX" : nil
        if let expected { #expect(cpu.isa == expected) }
        #expect(cpu.features.contains("avx512_bf16") == (avx512 && flags.contains("avx512_bf16")))
        #expect(cpu.features.contains("avx2") == flags.contains("avx2"))
        #expect(!cpu.model.isEmpty && !cpu.vendor.isEmpty)
    }

    static func cpu(vendor: String = "GenuineIntel", isa: Int32, bf16: Bool = false, ssse3: Bool = true) -> moe_cpu_t {
        var c = moe_cpu_t()
        withUnsafeMutableBytes(of: &c.vendor) { raw in
            for (i, b) in vendor.utf8.enumerated() { raw[i] = b }
        }
        c.isa = isa
        c.ssse3 = ssse3 ? 1 : 0
        c.avx512bf16 = bf16 ? 1 : 0
        return c
    }

    static func cores(_ c: moe_cpu_t) -> [String] {
        var c = c
        var out = [UnsafePointer<CChar>?](repeating: nil, count: 8)
        let n = Int(moe_openblas_cores_for(&c, &out, 8))
        return out.prefix(n).map { String(cString: $0!) }
    }

    /// The best core for each ISA, whatever the CPU model: the fix for a BLAS that does not know a new CPU.
    @Test func coreChoiceFollowsFeaturesNotModels() {
        #expect(Self.cores(Self.cpu(isa: 4, bf16: true)) == ["Cooperlake", "SkylakeX", "Haswell", "Sandybridge", "Nehalem", "Core2", "Prescott"])
        #expect(Self.cores(Self.cpu(isa: 4)) == ["SkylakeX", "Haswell", "Sandybridge", "Nehalem", "Core2", "Prescott"])
        #expect(Self.cores(Self.cpu(vendor: "AuthenticAMD", isa: 4, bf16: true)).prefix(4) == ["Cooperlake", "SkylakeX", "Zen", "Haswell"])
        #expect(Self.cores(Self.cpu(vendor: "AuthenticAMD", isa: 3)).prefix(2) == ["Zen", "Haswell"])
        #expect(Self.cores(Self.cpu(isa: 3)).first == "Haswell")
        #expect(Self.cores(Self.cpu(isa: 2)).first == "Sandybridge")
        #expect(Self.cores(Self.cpu(isa: 1)).first == "Nehalem")
        #expect(Self.cores(Self.cpu(isa: 0, ssse3: false)) == ["Prescott"])
        #expect(Self.cores(Self.cpu(isa: -1)).isEmpty)
    }

    /// The cores an OpenBLAS file was built with, read from its symbol table without loading it.
    @Test func knownCoresAreReadFromTheLibraryFile() throws {
        let info = BLAS.info
        try #require(info.library == "OpenBLAS")
        var buf = [CChar](repeating: 0, count: 512)
        let n = moe_openblas_known_cores(info.path, &buf, buf.count)
        let list = Self.text(buf).split(separator: ",").map(String.init)
        #expect(n == list.count)
        if n > 0 {  // a DYNAMIC_ARCH build (Debian's): the baseline core is always in, and so is the one running
            #expect(list.contains("PRESCOTT"))
            #expect(list.contains(info.kernel.uppercased()))
            #expect(info.knownCores == list)
        }
        let notELF = TestSupport.temporaryDirectory().appendingPathComponent("x.so").path
        try Data(String(repeating: "not a library ", count: 20).utf8).write(to: URL(fileURLWithPath: notELF))
        #expect(moe_openblas_known_cores(notELF, &buf, buf.count) == -1)
        #expect(Self.text(buf) == "\(notELF) is not a 64-bit ELF shared library")
        try Data("tiny".utf8).write(to: URL(fileURLWithPath: notELF))
        #expect(moe_openblas_known_cores(notELF, &buf, buf.count) == -1)
        #expect(Self.text(buf) == "\(notELF) is too small to be a shared library")
        #expect(moe_openblas_known_cores("/nonexistent/lib.so", &buf, buf.count) == -1)
        #expect(Self.text(buf).hasPrefix("cannot open /nonexistent/lib.so"))
    }

    /// With OPENBLAS_CORETYPE unset, the process runs the core that matches the ISA; a user's own is respected.
    @Test func theLoadedKernelMatchesTheCPU() throws {
        let info = BLAS.info
        try #require(info.library == "OpenBLAS")
        if let user = ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"], !user.isEmpty {
            #expect(info.coreChosenBy == "user" && info.requestedCore == user)
        } else if !info.knownCores.isEmpty {
            #expect(info.coreChosenBy == "cpuid")
            #expect(info.kernel == info.matchingCore)
            #expect(info.requestedCore == info.matchingCore)
            #expect(info.warning == nil)
            #expect(ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"] == nil)  // not leaked to children
        }
    }

    /// One output row or column goes to gemv: every transpose combination and a strided output column,
    /// against the naive product in Double.
    @Test func oneRowAndOneColumnProductsMatchTheNaiveProduct() {
        for (m, n) in [(1, 37), (29, 1), (1, 1)] {
            let k = 23
            for ta in [false, true] {
                for tb in [false, true] {
                    let a = TestSupport.randnF(ta ? [k, m] : [m, k], seed: 1), b = TestSupport.randnF(tb ? [n, k] : [k, n], seed: 2)
                    let c = Tensor.matmul(a, b, transposeA: ta, transposeB: tb)
                    let ref = TestSupport.naiveMatmul(Tensor<Double>(shape: a.shape, a.scalars.map(Double.init)),
                                                      Tensor<Double>(shape: b.shape, b.scalars.map(Double.init)), ta: ta, tb: tb)
                    #expect(c.shape == [m, n])
                    for (x, y) in zip(c.scalars, ref.scalars) { #expect(abs(Double(x) - y) < 1e-4) }
                }
            }
        }
        // c[m, 1] written with a row stride of 3 (a column of a wider matrix), accumulating with beta = 1.
        let (m, k) = (7, 5)
        let a = TestSupport.randn([m, k], seed: 3), x = TestSupport.randn([k, 1], seed: 4)
        var c = [Double](repeating: 1, count: m * 3)
        a.withUnsafePointer { pa in
            x.withUnsafePointer { px in
                c.withUnsafeMutableBufferPointer { pc in
                    Double.gemm(transA: false, transB: false, m: m, n: 1, k: k, alpha: 2, a: pa, lda: k, b: px, ldb: 1, beta: 1, c: pc.baseAddress!, ldc: 3)
                }
            }
        }
        let ref = TestSupport.naiveMatmul(a, x)
        for i in 0..<m {
            #expect(abs(c[3 * i] - (1 + 2 * ref[i, 0])) < 1e-12)
            #expect(c[3 * i + 1] == 1 && c[3 * i + 2] == 1)
        }
    }

    /// Products large enough to split across the cores (by rows, or by columns when wide), and one-row products
    /// large enough to split their outputs, equal the naive product, whether called alone or inside a parallel
    /// region (where they run unsplit).
    @Test func splitProductsMatchTheNaiveProduct() {
        func check(_ m: Int, _ n: Int, _ k: Int, ta: Bool, tb: Bool, nested: Bool) {
            let a = TestSupport.randn(ta ? [k, m] : [m, k], seed: UInt64(m + k)), b = TestSupport.randn(tb ? [n, k] : [k, n], seed: UInt64(n + 7))
            var c = Tensor<Double>.zeros([m, n])
            if nested {
                Parallel.forEach(2) { i in
                    if i == 0 { c = Tensor.matmul(a, b, transposeA: ta, transposeB: tb) }
                }
            } else {
                c = Tensor.matmul(a, b, transposeA: ta, transposeB: tb)
            }
            let ref = TestSupport.naiveMatmul(a, b, ta: ta, tb: tb)
            var worst = 0.0
            for (x, y) in zip(c.scalars, ref.scalars) { worst = max(worst, abs(x - y)) }
            #expect(worst < 1e-10, "\(m)x\(n)x\(k) ta \(ta) tb \(tb) nested \(nested): \(worst)")
        }
        for ta in [false, true] {
            for tb in [false, true] {
                check(301, 97, 129, ta: ta, tb: tb, nested: false)  // split by rows, a ragged last part
                check(70, 333, 111, ta: ta, tb: tb, nested: false)  // split by columns
                check(301, 97, 129, ta: ta, tb: tb, nested: true)
            }
        }
        check(1, 1100, 1000, ta: false, tb: true, nested: false)  // gemv over 1.1 M weights: outputs split
        check(1, 1100, 1000, ta: false, tb: false, nested: false)
        check(1030, 1, 1020, ta: true, tb: false, nested: false)
        check(1030, 1, 1020, ta: false, tb: false, nested: false)
    }

    /// The probes do the work they report: per iteration 16 vector FMAs with AVX-512, 12 with AVX2, and 12
    /// multiplies or adds without FMA, of the ISA's width; 16 VNNI (64 multiply-adds each) and 16 BF16 dot
    /// products (32 each) where the CPU has them, and nothing where it does not.
    @Test func probesCountTheirWork() {
        let cpu = CPUInfo.current
        let lanes = Double(cpu.vectorBits / 32)
        let perIteration = cpu.isa == "AVX-512" ? 16 * 2 : cpu.hasAVX2 ? 12 * 2 : 12
        #expect(BLAS.probe(.fma, iterations: 1000) == 1000 * Double(perIteration) * lanes)
        #expect(BLAS.probe(.int8, iterations: 1000) == (cpu.features.contains("avx512_vnni") ? 1000 * 16 * 64 * 2 : 0))
        #expect(BLAS.probe(.bf16, iterations: 1000) == (cpu.features.contains("avx512_bf16") ? 1000 * 16 * 32 * 2 : 0))
    }

    /// The read-bandwidth probe's multi-stream pass finds the maximum wherever it lies: in any stream's part, in the
    /// elements past the last whole step of the parts, with 1 to 8 streams (more are clamped) and lengths that do
    /// not divide.
    @Test func theReadProbeSeesEveryElement() {
        for n in [1, 31, 100, 1017, 4096 + 33] {
            var x = (0..<n).map { Float(($0 * 37) % 101) / 101 - 2 }
            for position in Set([0, n / 3, n / 2, n - 1]) {
                x[position] = 5
                for streams in [1, 2, 3, 4, 8, 9] {
                    #expect(moe_read_streams_f32(x, n, Int32(streams)) == 5, "n \(n), maximum at \(position), \(streams) streams")
                }
                x[position] = -3
            }
        }
    }
}
