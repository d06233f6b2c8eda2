import CMoEBLAS
import Dispatch
import Foundation
import MoEAnalysis

/// Timing and the machine's ceilings, measured in the same run as the figures they scale
/// (see BENCHMARKS.md: median of at least 5 runs after a warm-up, with min and max).
public enum Measure {
    public struct Stats: Codable, Sendable {
        public let median: Double
        public let min: Double
        public let max: Double
        public let runs: Int

        /// Statistics of raw samples.
        public init(_ samples: [Double]) {
            let t = samples.sorted()
            median = t.isEmpty ? 0 : (t.count % 2 == 1 ? t[t.count / 2] : (t[t.count / 2 - 1] + t[t.count / 2]) / 2)
            min = t.first ?? 0
            max = t.last ?? 0
            runs = t.count
        }

        init(median: Double, min: Double, max: Double, runs: Int) {
            self.median = median
            self.min = min
            self.max = max
            self.runs = runs
        }
    }

    /// A ceiling measured at the start and again at the end of a benchmark, as one set of samples: the
    /// machine is shared, and a figure is compared with the ceiling of the same stretch of time.
    public final class Ceiling {
        let measure: () -> [Double]
        var samples: [Double] = []
        public init(_ measure: @escaping () -> [Double]) { self.measure = measure }
        public func sample() { samples += measure() }
        public var stats: Stats { Stats(samples) }
    }

    /// The sgemm ceiling of BENCHMARKS.md and the tensor API's own rate, sampled together at the start and at the
    /// end of a benchmark. `matching` is OpenBLAS's own threads with the kernel that matches the CPU's vector ISA,
    /// in a child process started with OPENBLAS_CORETYPE set to it and MOE_BLAS_OWN_THREADS=1 (OpenBLAS reads
    /// both once, when it loads); nil where no child can measure. `inProcess` is 2048^3 through the tensor API in
    /// this process, kept on its own to show a slow BLAS in use.
    public final class SgemmCeiling {
        public let matching: Ceiling?
        public let inProcess: Ceiling
        /// This process runs the matching kernel, so its rate is a second way to the ceiling.
        let inProcessMatches: Bool

        init(matching: Ceiling?, inProcess: Ceiling, inProcessMatches: Bool) {
            self.matching = matching
            self.inProcess = inProcess
            self.inProcessMatches = inProcessMatches
        }

        public func sample() {
            matching?.sample()
            inProcess.sample()
        }

        /// The ceiling: the better of the two ways when this process runs the matching kernel, the child's
        /// otherwise, and this process's when no child measured anything.
        public var stats: Stats {
            let here = inProcess.stats
            guard let m = matching, !m.samples.isEmpty else { return here }
            let child = m.stats
            return inProcessMatches && here.median > child.median ? here : child
        }
    }

    public static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
    }

    /// Seconds per call of `body`: `warmup` untimed calls, then `runs` timed ones.
    public static func time(runs: Int = 5, warmup: Int = 1, _ body: () -> Void) -> Stats {
        Stats(samples(runs: runs, warmup: warmup, body))
    }

    public static func samples(runs: Int = 5, warmup: Int = 1, _ body: () -> Void) -> [Double] {
        for _ in 0..<warmup { body() }
        var t: [Double] = []
        for _ in 0..<runs {
            let s = now()
            body()
            t.append(now() - s)
        }
        return t
    }

    /// Times two variants in alternation (a, b, a, b, ...), so that machine noise hits both alike.
    public static func timePair(runs: Int = 5, warmup: Int = 1, _ a: () -> Void, _ b: () -> Void) -> (Stats, Stats) {
        let (ta, tb) = pairSamples(runs: runs, warmup: warmup, a, b)
        return (Stats(ta), Stats(tb))
    }

    /// The seconds of each run of two variants timed in alternation, after `warmup` runs of each.
    static func pairSamples(runs: Int, warmup: Int = 1, _ a: () -> Void, _ b: () -> Void) -> ([Double], [Double]) {
        for _ in 0..<warmup {
            a()
            b()
        }
        var ta: [Double] = [], tb: [Double] = []
        for _ in 0..<runs {
            var s = now()
            a()
            ta.append(now() - s)
            s = now()
            b()
            tb.append(now() - s)
        }
        return (ta, tb)
    }

    /// A rate (work / seconds) from time statistics: the median time gives the median rate.
    public static func rate(_ work: Double, _ s: Stats) -> Stats {
        Stats(median: work / s.median, min: work / s.max, max: work / s.min, runs: s.runs)
    }

    /// The sgemm ceiling of BENCHMARKS.md: 2048^3 on all cores with the OpenBLAS kernel that matches the CPU's
    /// vector ISA (see SgemmCeiling), not yet sampled.
    public static func sgemmCeiling(runs: Int = 5) -> SgemmCeiling {
        let plan = Machine.ceilingPlan
        let inProcess = Ceiling { sgemmRates(runs: runs) }
        var matching: Ceiling?
        if let env = plan.childEnvironment, let command = Machine.childCommand {
            matching = Ceiling {
                do { return try Machine.childSgemmRates(command: command, environment: env, runs: runs) } catch {
                    Machine.noteChildFailure("\(error)")
                    return []
                }
            }
        }
        return SgemmCeiling(matching: matching, inProcess: inProcess, inProcessMatches: plan.inProcessMatches)
    }

    /// 2048^3 sgemm rates, GFLOP/s samples: through the tensor API's product (split over swift-moe's threads), or
    /// `direct` to the library with its own threading.
    public static func sgemmRates(runs: Int, direct: Bool = false) -> [Double] {
        let n = 2048
        var rng = RandomGenerator(seed: 1)
        let a = Tensor<Float>.normal([n, n], rng: &rng), b = Tensor<Float>.normal([n, n], rng: &rng)
        var c = Tensor<Float>.zeros([n, n])
        let t = samples(runs: runs) {
            a.withUnsafePointer { pa in
                b.withUnsafePointer { pb in
                    c.withUnsafeMutablePointer { pc in
                        if direct {
                            BLAS.sgemmDirect(transA: false, transB: false, m: n, n: n, k: n, a: pa, lda: n, b: pb, ldb: n, c: pc, ldc: n)
                        } else {
                            Float.gemm(transA: false, transB: false, m: n, n: n, k: n, alpha: 1, a: pa, lda: n, b: pb, ldb: n, beta: 0, c: pc, ldc: n)
                        }
                    }
                }
            }
        }
        return t.map { 2 * Double(n * n * n) / 1e9 / $0 }
    }

    /// A probe's peak on all cores (BLAS.Probe: f32 FMA, int8 or BF16 dot products), GFLOP/s samples: a
    /// register-only loop of about 0.1 s per sample on every core at once (no BLAS, no memory traffic). Empty
    /// where the CPU lacks the probe's instruction.
    public static func peakRates(_ probe: BLAS.Probe, runs: Int) -> [Double] {
        let iterations = 1 << 18
        let t0 = now()
        guard BLAS.probe(probe, iterations: iterations) > 0 else { return [] }
        let n = max(1 << 16, Int(Double(iterations) * 0.1 / max(now() - t0, 1e-6)))
        let cores = Parallel.cores
        let perCore = BLAS.probe(probe, iterations: n)
        let t = samples(runs: runs) {
            DispatchQueue.concurrentPerform(iterations: cores) { _ in _ = BLAS.probe(probe, iterations: n) }
        }
        return t.map { Double(cores) * perCore / 1e9 / $0 }
    }

    /// Streaming copy bandwidth on all cores, bytes read + written, GB/s samples (256 MiB buffers).
    public static func copyBandwidth(runs: Int = 5) -> Ceiling {
        Ceiling { copyRates(runs: runs) }
    }

    /// Streaming read bandwidth on all cores, GB/s samples (a vectorized max over 4 MB chunks of a 256 MiB buffer
    /// handed to the cores, each chunk read as one stream and as four advanced together; the better of the two
    /// per sample): what a pass that only reads, as a decode step's matrix-vector products do, can at best reach.
    /// It can be below copy bandwidth (read + written) where writes stream past the cache.
    public static func readBandwidth(runs: Int = 5) -> Ceiling {
        Ceiling { readRates(runs: runs) }
    }

    static func readRates(runs: Int) -> [Double] {
        let count = 64 << 20  // floats
        let src = UnsafeMutablePointer<Float>.allocate(capacity: count)
        defer { src.deallocate() }
        src.initialize(repeating: 1, count: count)
        // Each 4 MB chunk read as one stream, and as four advanced together (faster on the Intel Xeon model 207:
        // see peak.c); the better of the two per sample, alternating.
        func pass(_ streams: Int32) {
            Parallel.forRange(count, grain: 1 << 20) { r in
                if moe_read_streams_f32(src + r.lowerBound, r.count, streams) != 1 { fatalError("[bench] read probe: memory changed under it") }
            }
        }
        let (one, four) = pairSamples(runs: runs, { pass(1) }, { pass(4) })
        return zip(one, four).map { Double(count * 4) / 1e9 / Swift.min($0, $1) }
    }

    static func copyRates(runs: Int) -> [Double] {
        let count = 64 << 20  // floats
        let src = UnsafeMutablePointer<Float>.allocate(capacity: count)
        let dst = UnsafeMutablePointer<Float>.allocate(capacity: count)
        defer {
            src.deallocate()
            dst.deallocate()
        }
        src.initialize(repeating: 1, count: count)
        dst.initialize(repeating: 0, count: count)
        let t = samples(runs: runs) {
            Parallel.forRange(count, grain: 1 << 20) { r in
                (dst + r.lowerBound).update(from: src + r.lowerBound, count: r.count)
            }
        }
        return t.map { 2 * Double(count * 4) / 1e9 / $0 }
    }

    public static var buildConfiguration: String {
        #if DEBUG
        return "debug"
        #else
        return "release"
        #endif
    }
}

/// One reported figure: its rate and, where it has one, its ratio to a ceiling of the same run.
public struct Figure: Codable, Sendable {
    /// A figure before its ratio is known (the ceiling is sampled again at the end of the run).
    public struct Pending {
        let name: String, shape: String, unit: String, value: Measure.Stats, ceiling: String?, note: String?
        public init(name: String, shape: String, unit: String, value: Measure.Stats, ceiling: String? = nil, note: String? = nil) {
            self.name = name
            self.shape = shape
            self.unit = unit
            self.value = value
            self.ceiling = ceiling
            self.note = note
        }
    }

    public let name: String
    public let shape: String
    public let unit: String
    public let value: Measure.Stats
    public let ceiling: String?
    public let ratio: Double?
    public let note: String?

    public init(name: String, shape: String, unit: String, value: Measure.Stats, ceiling: String? = nil, ceilingValue: Double? = nil, note: String? = nil) {
        self.name = name
        self.shape = shape
        self.unit = unit
        self.value = value
        self.ceiling = ceiling
        self.ratio = ceilingValue.map { value.median / $0 }
        self.note = note
    }
}

public struct BenchReport: Codable, Sendable {
    /// A ceiling for work whose operations run on different kernels: each part's share of the operations at
    /// its own ceiling, so the bound is 1 / sum(share_i / rate_i) (a roofline for a mix). The shares sum to 1.
    public struct Mix {
        public let label: String
        public let parts: [(ceiling: String, share: Double)]
        public init(label: String, parts: [(ceiling: String, share: Double)]) {
            self.label = label
            self.parts = parts
        }

        /// The mix's rate when each part runs at `rate(ceiling)`; nil when a part's rate is unknown or not positive.
        public func bound(_ rate: (String) -> Double?) -> Double? {
            var time = 0.0
            for p in parts {
                guard let r = rate(p.ceiling), r > 0 else { return nil }
                time += p.share / r
            }
            return 1 / time
        }
    }

    /// Samples the sgemm ceiling and every other ceiling once more, measures the register-only peaks ("fma
    /// peak", and "int8 peak" and "bf16 peak" where the CPU has them), then scales the pending figures by their
    /// ceiling's median. `others` maps a figure's ceiling name ("copy") to its label and measurement; figures
    /// name "sgemm" for the sgemm ceiling, a peak's name, or a name in `mixes` for a mix of those.
    public static func finish(
        _ benchmark: String, pending: [Figure.Pending], sgemm: Measure.SgemmCeiling,
        others: [String: (label: String, ceiling: Measure.Ceiling)] = [:], mixes: [String: Mix] = [:]
    ) -> BenchReport {
        sgemm.sample()
        for (_, c) in others { c.ceiling.sample() }
        let gemm = sgemm.stats
        var stats = others.mapValues { $0.ceiling.stats }
        stats["sgemm"] = gemm
        var table = Dictionary(uniqueKeysWithValues: others.values.map { ($0.label, $0.ceiling.stats) })
        table["sgemm (GFLOP/s)"] = gemm
        if let m = sgemm.matching {
            table["sgemm, \(Machine.ceilingPlan.kernel), its own threads (GFLOP/s)"] = m.stats
        }
        let inUse = sgemm.inProcess.stats
        table["sgemm, tensor API, BLAS in use (GFLOP/s)"] = inUse
        // The vector peaks without any BLAS.
        let runs = max(5, pending.first?.value.runs ?? 5)
        func peak(_ p: BLAS.Probe, _ label: String) -> Measure.Stats? {
            let r = Measure.peakRates(p, runs: runs)
            guard !r.isEmpty else { return nil }
            let s = Measure.Stats(r)
            table[label] = s
            stats["\(p.rawValue) peak"] = s
            return s
        }
        let fma = peak(.fma, "vector FMA peak, no BLAS (GFLOP/s)") ?? Measure.Stats([])
        let int8 = peak(.int8, "int8 dot-product peak (VNNI), no BLAS (GFLOP/s)")
        let bf16 = peak(.bf16, "BF16 dot-product peak, no BLAS (GFLOP/s)")
        for (name, mix) in mixes {
            guard let median = mix.bound({ stats[$0]?.median }), let low = mix.bound({ stats[$0]?.min }),
                  let high = mix.bound({ stats[$0]?.max }) else { continue }
            let s = Measure.Stats(median: median, min: low, max: high, runs: mix.parts.compactMap { stats[$0.ceiling]?.runs }.min() ?? 0)
            stats[name] = s
            table[mix.label] = s
        }
        let figures = pending.map { p in
            Figure(name: p.name, shape: p.shape, unit: p.unit, value: p.value, ceiling: p.ceiling,
                   ceilingValue: p.ceiling.flatMap { stats[$0]?.median }, note: p.note)
        }
        let machine = Machine.report(sgemmCeiling: gemm, sgemmInUse: inUse, fma: fma, int8: int8, bf16: bf16, childMeasured: sgemm.matching != nil)
        for w in machine.warnings { FileHandle.standardError.write(Data("WARNING: \(w)\n".utf8)) }
        return BenchReport(
            benchmark: benchmark, threads: Parallel.cores, blasThreads: BLAS.threads, build: Measure.buildConfiguration,
            machine: machine, ceilings: table, figures: figures)
    }

    public let benchmark: String
    public let threads: Int
    public let blasThreads: Int
    public let build: String
    public let machine: MachineReport
    public let ceilings: [String: Measure.Stats]
    public let figures: [Figure]
    /// Extra top-level numbers of the JSON (a benchmark's documented contract, e.g. `moe bench model`'s
    /// load_seconds); they also appear as figures in the table.
    public var extra: [String: Double] = [:]

    enum CodingKeys: String, CodingKey {
        case benchmark, threads, blasThreads, build, machine, ceilings, figures
    }

    public func table() -> String {
        let blasThreading = blasThreads == 1 ? "BLAS single-threaded inside them" : "BLAS \(blasThreads) threads"
        var out = ["\(benchmark) benchmark: \(threads) threads, \(blasThreading), \(build) build; median of \(figures.first?.value.runs ?? 0) runs after a warm-up",
                   ""]
        out += machine.lines()
        let banner = machine.warnings.map { "!!! WARNING: \($0)" }
        if !banner.isEmpty { out += [""] + banner }
        out.append("")
        out.append("ceilings (this run, sampled before and after the figures):")
        for (k, v) in ceilings.sorted(by: { $0.key < $1.key }) {
            let name = k.count >= 38 ? k : k + String(repeating: " ", count: 38 - k.count)
            out.append("  " + name + String(format: "%9.2f  (min %.2f, max %.2f)", v.median, v.min, v.max))
        }
        out.append("")
        func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s : s + String(repeating: " ", count: n - s.count) }
        out.append(pad("figure", 30) + pad("shape", 44) + pad("median", 11) + pad("min-max", 19) + pad("unit", 9) + "ratio")
        for f in figures {
            let ratio = f.ratio.map { String(format: "%.3f x %@", $0, f.ceiling ?? "") } ?? "-"
            out.append(pad(f.name, 30) + pad(f.shape, 44) + pad(String(format: "%.2f", f.value.median), 11)
                       + pad(String(format: "%.2f-%.2f", f.value.min, f.value.max), 19) + pad(f.unit, 9) + ratio)
            if let note = f.note { out.append("    " + note) }
        }
        if !banner.isEmpty { out += [""] + banner }
        return out.joined(separator: "\n")
    }

    public func json() -> String {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        guard let data = try? enc.encode(self) else { return "{}" }
        guard var object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else { return String(decoding: data, as: UTF8.self) }
        object.removeValue(forKey: "extra")
        for (k, v) in extra { object[k] = v }
        guard let merged = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) else { return String(decoding: data, as: UTF8.self) }
        return String(decoding: merged, as: UTF8.self)
    }
}
