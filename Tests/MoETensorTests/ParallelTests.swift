import Foundation
import MoETestSupport
import Testing

/// The worker pool behind Parallel: every item runs exactly once, regions from several threads at once (one
/// gets the pool, the others fall back to libdispatch), nested regions run inline, and workers that parked
/// after a pause come back.
@Suite("parallel regions")
struct ParallelTests {
    final class Counts: @unchecked Sendable {
        var hits: [Int]
        init(_ n: Int) { hits = [Int](repeating: 0, count: n) }
    }

    @Test func everyItemRunsOnceUnderContention() {
        let threads = 4, regions = 3000, items = 37
        let results = (0..<threads).map { _ in Counts(items) }
        let group = DispatchGroup()
        for t in 0..<threads {
            group.enter()
            let thread = Thread {
                let c = results[t]
                c.hits.withUnsafeMutableBufferPointer { buf in
                    let p = buf.baseAddress!
                    for r in 0..<regions {
                        // Uneven items; each writes only its own slot.
                        Parallel.forEachDynamic(items) { i in
                            if (i + r) % 7 == 0 { var x = 0.0; for k in 0..<200 { x += Double(k) }; if x < 0 { p[i] = -1 } }
                            p[i] += 1
                        }
                    }
                }
                group.leave()
            }
            thread.start()
        }
        group.wait()
        for c in results { #expect(c.hits == [Int](repeating: regions, count: items)) }
    }

    @Test func nestedRegionsRunInlineAndRangesCoverEverything() {
        var seen = [Int](repeating: 0, count: 1000)
        seen.withUnsafeMutableBufferPointer { buf in
            let p = buf.baseAddress!
            Parallel.forRange(10, grain: 1) { outer in
                #expect(Parallel.isNested)
                for o in outer {
                    Parallel.forRange(100, grain: 1) { inner in  // runs on this thread, whole
                        #expect(inner == 0..<100)
                        for i in inner { p[o * 100 + i] += 1 }
                    }
                }
            }
        }
        #expect(seen == [Int](repeating: 1, count: 1000))
        #expect(!Parallel.isNested)
        var parts: [Range<Int>] = []
        let lock = NSLock()
        Parallel.forAligned(1000, parts: 3, align: 16) { r in lock.lock(); parts.append(r); lock.unlock() }
        parts.sort { $0.lowerBound < $1.lowerBound }
        #expect(parts.first?.lowerBound == 0 && parts.last?.upperBound == 1000)
        for (a, b) in zip(parts, parts.dropFirst()) { #expect(a.upperBound == b.lowerBound && a.upperBound % 16 == 0) }
    }

    @Test func workersComeBackAfterParking() {
        // Pauses longer than the workers' spin (200 us) park them; each region after must still complete.
        var total = [Int](repeating: 0, count: 8)
        for _ in 0..<20 {
            usleep(1000)
            total.withUnsafeMutableBufferPointer { buf in
                let p = buf.baseAddress!
                Parallel.forEachDynamic(8) { i in p[i] += i }
            }
        }
        #expect(total == (0..<8).map { $0 * 20 })
    }
}
