import Foundation
import MoEBenchmarks
import MoETestSupport
import Testing

/// A BLAS that cannot be loaded or identified is one line and exit 1; a slow one is named loudly by the benchmarks.
@Suite("moe and the BLAS")
struct MachineCLITests {
    @Test func aMissingLibraryIsOneLine() throws {
        let r = try TestSupport.runMoE(["inspect", "--help"], environment: ["MOE_BLAS_LIBRARY": "/nonexistent/libblas.so"])
        #expect(r.status == 1)
        #expect(r.out.isEmpty)
        let lines = r.err.split(separator: "\n")
        #expect(lines.count == 1)
        #expect(r.err.hasPrefix("Error: cannot load the BLAS library MOE_BLAS_LIBRARY=/nonexistent/libblas.so ("))
        #expect(r.err.hasSuffix("point MOE_BLAS_LIBRARY at an OpenBLAS or BLIS shared library, or unset it to use OpenBLAS\n"))
    }

    @Test func aLibraryWithoutCBLASIsOneLine() throws {
        let libm = try #require(["/lib/x86_64-linux-gnu/libm.so.6", "/usr/lib/x86_64-linux-gnu/libm.so.6", "/lib64/libm.so.6"]
            .first { FileManager.default.fileExists(atPath: $0) })
        let r = try TestSupport.runMoE(["bench", "machine"], environment: ["MOE_BLAS_LIBRARY": libm])
        #expect(r.status == 1)
        #expect(r.err == "Error: the BLAS library \(libm) has no CBLAS interface (cblas_sgemm, cblas_dgemm, cblas_sgemv, cblas_dgemv); use OpenBLAS or BLIS built with CBLAS\n")
    }

    /// A CBLAS library that does not say which kernel it runs (built here from a stub) is refused by name.
    @Test func aLibraryThatHidesItsKernelIsOneLine() throws {
        let cc = try #require(["/usr/bin/cc", "/usr/bin/gcc", "/usr/bin/clang"].first { FileManager.default.isExecutableFile(atPath: $0) })
        let dir = TestSupport.temporaryDirectory()
        let src = dir.appendingPathComponent("stub.c"), lib = dir.appendingPathComponent("libstub.so")
        try Data("void cblas_sgemm(void){} void cblas_dgemm(void){} void cblas_sgemv(void){} void cblas_dgemv(void){}\n".utf8).write(to: src)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: cc)
        p.arguments = ["-shared", "-fPIC", "-o", lib.path, src.path]
        try p.run()
        p.waitUntilExit()
        try #require(p.terminationStatus == 0)
        let r = try TestSupport.runMoE(["bench", "core"], environment: ["MOE_BLAS_LIBRARY": lib.path])
        #expect(r.status == 1)
        #expect(r.err == "Error: cannot tell which kernel the BLAS library \(lib.path) runs (it is neither OpenBLAS, with openblas_get_corename, nor BLIS, with bli_arch_string); use OpenBLAS or BLIS, or unset MOE_BLAS_LIBRARY\n")
    }

    /// The child process of a ceiling measurement reports the kernel it ran, here the one that matches the ISA.
    @Test func theCeilingChildReportsItsKernel() throws {
        let r = try TestSupport.runMoE(["bench", "machine", "--sgemm-rates", "1"], environment: ["OPENBLAS_CORETYPE": nil])
        #expect(r.status == 0, "\(r.err)")
        let child = try JSONDecoder().decode(Machine.ChildRates.self, from: Data(r.out.utf8))
        #expect(child.rates.count == 1 && child.rates[0] > 0)
        if let match = BLAS.info.matchingCore { #expect(child.kernel == match) }
    }

    /// Forcing OpenBLAS's SSE3 kernels on a CPU with AVX2 cannot hide: the ceiling comes from the matching
    /// kernel in a child process, and the benchmark warns in its table, its JSON and on stderr.
    @Test func aSlowKernelIsNamedLoudly() throws {
        let info = BLAS.info
        guard CPUInfo.current.hasAVX2, info.library == "OpenBLAS", let match = info.matchingCore, match != "Prescott" else { return }
        let r = try TestSupport.runMoE(["bench", "machine", "--json"], environment: ["OPENBLAS_CORETYPE": "Prescott"])
        #expect(r.status == 0, "\(r.err)")
        #expect(r.err.contains("WARNING: the BLAS in use (OpenBLAS Prescott) runs sgemm at "))
        #expect(r.err.contains("Unset OPENBLAS_CORETYPE"))
        let report = try JSONDecoder().decode(BenchReport.self, from: Data(r.out.utf8))
        #expect(report.machine.blas.kernel == "Prescott")
        #expect(report.machine.blas.coreChosenBy == "user")
        #expect(report.machine.ceilingKernel == "OpenBLAS \(match)")
        #expect(report.machine.ceilingMeasuredIn == "a child process with OpenBLAS's own threads (OPENBLAS_CORETYPE=\(match))")
        #expect(report.machine.warnings.contains { $0.hasPrefix("the BLAS in use (OpenBLAS Prescott)") })
        let inUse = try #require(report.ceilings["sgemm, tensor API, BLAS in use (GFLOP/s)"])
        let ceiling = try #require(report.ceilings["sgemm (GFLOP/s)"])
        #expect(inUse.median < ceiling.median)
        #expect(report.ceilings["sgemm, OpenBLAS \(match), its own threads (GFLOP/s)"]?.median == ceiling.median)
    }

    @Test func anInvalidISACapIsOneLine() throws {
        let r = try TestSupport.runMoE(["bench", "machine"], environment: ["MOE_MAX_ISA": "avx3"])
        #expect(r.status == 1)
        #expect(r.err == "Error: invalid MOE_MAX_ISA=avx3: use sse2, sse4, avx, avx2 or avx512, or unset it\n")
    }

    /// A machine without AVX2, as MOE_MAX_ISA=sse2 makes this one: OpenBLAS's baseline kernels, the portable row
    /// kernels, and a benchmark that says so.
    @Test func withoutAVX2TheBenchmarkSaysSo() throws {
        let r = try TestSupport.runMoE(["bench", "machine", "--json"], environment: ["MOE_MAX_ISA": "sse2", "OPENBLAS_CORETYPE": nil])
        #expect(r.status == 0, "\(r.err)")
        let report = try JSONDecoder().decode(BenchReport.self, from: Data(r.out.utf8))
        #expect(report.machine.cpu.isa == "SSE2" && report.machine.cpu.cappedAt == "SSE2")
        #expect(!report.machine.cpu.features.contains("avx2"))
        if BLAS.info.library == "OpenBLAS" && !BLAS.info.knownCores.isEmpty {
            #expect(report.machine.blas.kernel == "Prescott")
            #expect(report.machine.ceilingKernel == "OpenBLAS Prescott")
        }
        #expect(report.machine.warnings.contains { $0.hasPrefix("no AVX2/FMA (SSE2): the BLAS runs its portable kernels") })
        #expect(report.machine.warnings.contains { $0.hasPrefix("MOE_MAX_ISA caps this process at SSE2") })
        #expect(r.err.contains("WARNING: no AVX2/FMA"))
    }

    /// Training on the portable kernels follows the same losses as on the native ones (the kernels differ only in
    /// summation order and BLAS blocking).
    @Test func trainingOnThePortableKernelsMatches() throws {
        func losses(_ env: [String: String?]) throws -> [Double] {
            let out = TestSupport.temporaryDirectory().appendingPathComponent("run").path
            let r = try TestSupport.runMoE(
                ["train", "--steps", "6", "--log-every", "2", "--eval-every", "100", "--samples", "0", "--arithmetic-problems", "2",
                 "--dim", "16", "--layers", "1", "--experts", "4", "--expert-hidden", "16", "--batch", "2", "--sequence", "32", "--out", out],
                environment: env)
            #expect(r.status == 0, "\(r.err)")
            return r.out.split(separator: "\n").filter { $0.hasPrefix("step ") }.compactMap { line in
                line.split(separator: "|")[1].split(separator: " ").last.flatMap { Double($0) }
            }
        }
        let native = try losses([:]), portable = try losses(["MOE_MAX_ISA": "sse2"])
        #expect(native.count == 3 && portable.count == 3)
        for (a, b) in zip(native, portable) { #expect(abs(a - b) < 1e-3, "\(native) vs \(portable)") }
    }
}
