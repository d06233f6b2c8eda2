import Foundation
import MoEAnalysis

#if canImport(Accelerate)
import Accelerate
#else
import CBLAS
#endif

/// Timing and the machine's ceilings, measured in the same run as the figures they scale
/// (see BENCHMARKS.md: median of at least 5 runs after a warm-up, with min and max).
public enum Measure {
    public struct Stats: Codable, Sendable {
        public let median: Double
        public let min: Double
        public let max: Double
        public let runs: Int
    }

    public static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
    }

    /// Seconds per call of `body`: `warmup` untimed calls, then `runs` timed ones.
    public static func time(runs: Int = 5, warmup: Int = 1, _ body: () -> Void) -> Stats {
        for _ in 0..<warmup { body() }
        var t: [Double] = []
        for _ in 0..<runs {
            let s = now()
            body()
            t.append(now() - s)
        }
        t.sort()
        return Stats(median: t[t.count / 2], min: t[0], max: t[t.count - 1], runs: runs)
    }

    /// Times two variants in alternation (a, b, a, b, ...), so that machine noise hits both alike.
    public static func timePair(runs: Int = 5, warmup: Int = 1, _ a: () -> Void, _ b: () -> Void) -> (Stats, Stats) {
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
        func stats(_ t: [Double]) -> Stats {
            let t = t.sorted()
            return Stats(median: t[t.count / 2], min: t[0], max: t[t.count - 1], runs: t.count)
        }
        return (stats(ta), stats(tb))
    }

    /// A rate (work / seconds) from time statistics: the median time gives the median rate.
    public static func rate(_ work: Double, _ s: Stats) -> Stats {
        Stats(median: work / s.median, min: work / s.max, max: work / s.min, runs: s.runs)
    }

    /// Single-precision matrix-product rate of the BLAS in use: 2048^3 sgemm on all cores, GFLOP/s.
    public static func sgemmCeiling(runs: Int = 5) -> Stats {
        let n = 2048
        var rng = RandomGenerator(seed: 1)
        let a = Tensor<Float>.normal([n, n], rng: &rng), b = Tensor<Float>.normal([n, n], rng: &rng)
        var c = Tensor<Float>.zeros([n, n])
        let s = time(runs: runs) {
            a.withUnsafePointer { pa in
                b.withUnsafePointer { pb in
                    c.withUnsafeMutablePointer { pc in
                        Float.gemm(transA: false, transB: false, m: n, n: n, k: n, alpha: 1, a: pa, lda: n, b: pb, ldb: n, beta: 0, c: pc, ldc: n)
                    }
                }
            }
        }
        return rate(2 * Double(n * n * n) / 1e9, s)
    }

    /// Streaming copy bandwidth on all cores, bytes read + written, GB/s (256 MiB buffers).
    public static func copyBandwidth(runs: Int = 5) -> Stats {
        let count = 64 << 20  // floats
        let src = UnsafeMutablePointer<Float>.allocate(capacity: count)
        let dst = UnsafeMutablePointer<Float>.allocate(capacity: count)
        defer {
            src.deallocate()
            dst.deallocate()
        }
        src.initialize(repeating: 1, count: count)
        dst.initialize(repeating: 0, count: count)
        let s = time(runs: runs) {
            Parallel.forRange(count, grain: 1 << 20) { r in
                (dst + r.lowerBound).update(from: src + r.lowerBound, count: r.count)
            }
        }
        return rate(2 * Double(count * 4) / 1e9, s)
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
    public let benchmark: String
    public let threads: Int
    public let blasThreads: Int
    public let build: String
    public let ceilings: [String: Measure.Stats]
    public let figures: [Figure]

    public func table() -> String {
        var out = ["\(benchmark) benchmark: \(threads) threads, BLAS \(blasThreads) threads, \(build) build; median of \(figures.first?.value.runs ?? 0) runs after a warm-up",
                   ""]
        out.append("ceilings (this run):")
        for (k, v) in ceilings.sorted(by: { $0.key < $1.key }) {
            out.append(String(format: "  %-28@ %9.2f  (min %.2f, max %.2f)", k as NSString, v.median, v.min, v.max))
        }
        out.append("")
        func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s : s + String(repeating: " ", count: n - s.count) }
        out.append(pad("figure", 34) + pad("shape", 26) + pad("median", 11) + pad("min-max", 19) + pad("unit", 9) + "ratio")
        for f in figures {
            let ratio = f.ratio.map { String(format: "%.3f x %@", $0, f.ceiling ?? "") } ?? "-"
            out.append(pad(f.name, 34) + pad(f.shape, 26) + pad(String(format: "%.2f", f.value.median), 11)
                       + pad(String(format: "%.2f-%.2f", f.value.min, f.value.max), 19) + pad(f.unit, 9) + ratio)
            if let note = f.note { out.append("    " + note) }
        }
        return out.joined(separator: "\n")
    }

    public func json() -> String {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        return (try? String(decoding: enc.encode(self), as: UTF8.self)) ?? "{}"
    }
}
