import Foundation
import MoEAnalysis

/// The machine a benchmark runs on, and the ceilings it is judged against (BENCHMARKS.md): the CPU and its
/// vector ISA, the BLAS and the kernel it runs, the vector FMA peak measured without any BLAS, and the sgemm
/// ceiling measured with the OpenBLAS kernel that matches the ISA, whatever kernel this process runs.
public enum Machine {
    /// How the sgemm ceiling is measured: OpenBLAS's own threads with the matching kernel in a child process,
    /// and the tensor API in this process when it runs that kernel too.
    public struct CeilingPlan: Sendable {
        /// e.g. "OpenBLAS Cooperlake".
        public let kernel: String
        /// The child's environment (nil where no OpenBLAS core matches, e.g. not x86-64: then this process only).
        public let childEnvironment: [String: String]?
        /// This process runs the matching kernel, so its tensor-API rate is a second way to the ceiling.
        public let inProcessMatches: Bool
    }

    public static let ceilingPlan: CeilingPlan = {
        let info = BLAS.info
        let cores = BLAS.openBLASCores(knownCores: info.library == "OpenBLAS" ? info.knownCores : [])
        guard let match = cores.first else {
            return CeilingPlan(kernel: "\(info.library) \(info.kernel)", childEnvironment: nil, inProcessMatches: true)
        }
        var env = ProcessInfo.processInfo.environment
        env["OPENBLAS_CORETYPE"] = match
        env["MOE_BLAS_OWN_THREADS"] = "1"
        env["MOE_BLAS_LIBRARY"] = nil
        env["OPENBLAS_NUM_THREADS"] = "\(Parallel.cores)"
        let matches = info.library == "OpenBLAS" && info.kernel.caseInsensitiveCompare(match) == .orderedSame
        return CeilingPlan(kernel: "OpenBLAS \(match)", childEnvironment: env, inProcessMatches: matches)
    }()

    /// The command that prints sgemm rates as JSON (`moe bench machine --sgemm-rates N`), set by the CLI; without
    /// it the ceiling is measured in this process and the report says so.
    nonisolated(unsafe) public static var childCommand: [String]?

    nonisolated(unsafe) private static var childFailures: [String] = []
    static func noteChildFailure(_ s: String) { childFailures.append(s) }

    /// What a child process reports: the kernel it ran and its sgemm rates.
    public struct ChildRates: Codable, Sendable {
        public let kernel: String
        public let rates: [Double]
        public init(kernel: String, rates: [Double]) {
            self.kernel = kernel
            self.rates = rates
        }
    }

    struct ChildError: Error, CustomStringConvertible { let description: String }

    static func childSgemmRates(command: [String], environment: [String: String], runs: Int) throws -> [Double] {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: command[0])
        p.arguments = Array(command.dropFirst()) + ["\(runs)"]
        p.environment = environment
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        let errText = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        guard p.terminationStatus == 0 else {
            throw ChildError(description: "the child process exited with status \(p.terminationStatus): \(errText.split(separator: "\n").first ?? "")")
        }
        let r = try JSONDecoder().decode(ChildRates.self, from: data)
        let want = environment["OPENBLAS_CORETYPE"] ?? ""
        guard r.kernel.caseInsensitiveCompare(want) == .orderedSame else {
            throw ChildError(description: "the child process ran OpenBLAS's \(r.kernel) kernels, not \(want)")
        }
        return r.rates
    }

    /// The report of the machine, given the ceilings sampled during a run (`childMeasured`: a child process
    /// measured the matching kernel).
    static func report(sgemmCeiling: Measure.Stats, sgemmInUse: Measure.Stats, fma: Measure.Stats, int8: Measure.Stats?, bf16: Measure.Stats?,
                       childMeasured: Bool) -> MachineReport {
        let cpu = CPUInfo.current, blas = BLAS.info, plan = ceilingPlan
        var warnings: [String] = []
        if let w = blas.warning { warnings.append(w) }
        if let cap = cpu.cappedAt {
            warnings.append("MOE_MAX_ISA caps this process at \(cap): vector features above it are not used, and the figures are those of such a CPU")
        }
        if !cpu.hasAVX2 {
            warnings.append("no AVX2/FMA (\(cpu.isa)): the BLAS runs its portable kernels (\(blas.kernel)), and so do swift-moe's row kernels")
        }
        for f in childFailures {
            warnings.append("the matching kernel (\(plan.kernel)) could not be measured in a child process (\(f)); the ceiling below is the BLAS in use")
        }
        if !childMeasured && !plan.inProcessMatches {
            warnings.append("the ceiling is the BLAS in use: no child process could measure the matching kernel (\(plan.kernel))")
        }
        // Only a different kernel or library is named slow, and best samples are compared: the machine's noise only
        // ever slows a run, while a slow kernel is slow in every sample (two measurements of the same kernel once
        // differed by 1.3x in their medians on a noisy stretch of this VM).
        let used = sgemmInUse
        if !plan.inProcessMatches, used.max < 0.9 * sgemmCeiling.max {
            warnings.append(String(
                format: "the BLAS in use (%@ %@) runs sgemm at %.0f GFLOP/s at best, %.2f of the %.0f GFLOP/s that %@ reaches on this machine: every matrix product runs %.1fx slower than it could. %@",
                blas.library, blas.kernel, used.max, used.max / sgemmCeiling.max, sgemmCeiling.max, plan.kernel,
                sgemmCeiling.max / used.max,
                blas.coreChosenBy == "user" ? "Unset OPENBLAS_CORETYPE (swift-moe then chooses from CPUID)." : "Unset MOE_BLAS_LIBRARY or OPENBLAS_CORETYPE."))
        }
        // The peak is the probe's best sample: noise only ever slows a register-only loop.
        if fma.max > 0 && sgemmCeiling.median < 0.5 * fma.max {
            warnings.append(String(
                format: "even %@ reaches only %.2f of the CPU's measured vector peak (%.0f GFLOP/s): the BLAS build is slow on this CPU",
                plan.kernel, sgemmCeiling.median / fma.max, fma.max))
        }

        // Theoretical peak = cores x FLOPs per cycle x clock. CPUID does not tell how many FMA pipes a core has, so
        // the FLOPs per cycle are the largest power of two not above what the FMA probe reached at the reported
        // clock (its best sample); a core running above that clock (turbo) then shows as probe > theoretical.
        var theoretical: Double?, flopsPerCycle: Int?, note: String?
        if let ghz = cpu.clockGHz, fma.max > 0 {
            let cores = Double(Parallel.cores)
            let measured = fma.max / (cores * ghz)
            var p = 1
            while Double(p * 2) <= measured { p *= 2 }
            flopsPerCycle = p
            theoretical = cores * Double(p) * ghz
            let lanes = cpu.hasAVX2 ? String(format: " (%d FP32 FMA lanes)", p / 2) : " (multiply and add pipes)"
            note = String(format: "%d cores x %d FLOP/cycle%@ x %.2f GHz (/proc/cpuinfo); the probe ran at %.2f GHz-equivalent",
                          Parallel.cores, p, lanes, ghz, fma.max / (cores * Double(p)))
        }
        return MachineReport(
            cpu: cpu, blas: blas, threads: Parallel.cores, blasThreads: BLAS.threads, fmaPeak: fma, int8Peak: int8, bf16Peak: bf16,
            theoreticalPeak: theoretical, flopsPerCycle: flopsPerCycle, theoreticalNote: note,
            ceilingKernel: plan.kernel,
            ceilingMeasuredIn: !childMeasured ? "this process"
                : "a child process with OpenBLAS's own threads (OPENBLAS_CORETYPE=\(plan.kernel.split(separator: " ").last ?? ""))"
                    + (plan.inProcessMatches ? " and this process through the tensor API; the better of the two" : ""),
            warnings: warnings)
    }
}

/// The machine block of every benchmark's table and JSON.
public struct MachineReport: Codable, Sendable {
    public let cpu: CPUInfo
    public let blas: BLAS.Info
    public let threads: Int
    public let blasThreads: Int
    /// GFLOP/s of the register-only FMA probe on all cores (its best sample is the peak).
    public let fmaPeak: Measure.Stats
    /// GFLOP/s (2 per multiply-add) of the register-only AVX-512 VNNI and AVX512_BF16 dot-product probes on all
    /// cores; nil where the CPU lacks the instruction.
    public let int8Peak: Measure.Stats?
    public let bf16Peak: Measure.Stats?
    /// GFLOP/s: cores x FLOPs per cycle x the reported clock (nil where the clock cannot be read).
    public let theoreticalPeak: Double?
    public let flopsPerCycle: Int?
    public let theoreticalNote: String?
    /// The kernel the sgemm ceiling was measured with, and where.
    public let ceilingKernel: String
    public let ceilingMeasuredIn: String
    public let warnings: [String]

    public func lines() -> [String] {
        var out = [
            "CPU:   \(cpu.summary)",
            "BLAS:  \(blas.summary); " + (blasThreads == 1
                ? "single-threaded, products split over swift-moe's \(threads) threads"
                : "\(blasThreads) threads of its own (MOE_BLAS_OWN_THREADS=1), \(threads) for swift-moe's kernels"),
            String(format: "peak:  %.0f GFLOP/s vector FMA, measured without BLAS (best of %d; median %.0f, min %.0f)", fmaPeak.max, fmaPeak.runs, fmaPeak.median, fmaPeak.min),
        ]
        if let t = theoreticalPeak, let n = theoreticalNote {
            out.append(String(format: "       theoretical %.0f GFLOP/s = %@", t, n))
        } else {
            out.append("       theoretical: the clock cannot be read on this machine")
        }
        for (name, p) in [("int8 dot products (AVX-512 VNNI vpdpbusd)", int8Peak), ("BF16 dot products (AVX512_BF16 vdpbf16ps)", bf16Peak)] {
            if let p {
                out.append(String(format: "       %.0f GFLOP/s %@, 2 per multiply-add (best of %d; median %.0f, min %.0f)", p.max, name, p.runs, p.median, p.min))
            }
        }
        out.append("sgemm ceiling: \(ceilingKernel), the kernel that matches \(cpu.isa), measured in \(ceilingMeasuredIn)")
        return out
    }
}
