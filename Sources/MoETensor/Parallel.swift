import Dispatch
import Foundation

/// Splits a range of independent work items across the machine's cores.
///
/// Work below `grain` items runs on the calling thread: spawning costs more than it saves. Kernels that call
/// BLAS inside a parallel region wrap it in `BLAS.singleThreaded`, so the two thread pools never oversubscribe.
public enum Parallel {
    /// Cores this process may use (the MOE_THREADS environment variable overrides).
    public static let cores: Int = {
        if let s = ProcessInfo.processInfo.environment["MOE_THREADS"], let n = Int(s), n > 0 { return n }
        return Swift.max(1, ProcessInfo.processInfo.activeProcessorCount)
    }()

    /// Calls `body` on disjoint sub-ranges covering `0..<count`, in parallel when `count >= grain`.
    @inline(__always)
    public static func forRange(_ count: Int, grain: Int, _ body: (Range<Int>) -> Void) {
        let chunks = min(cores, count / Swift.max(grain, 1))
        if chunks <= 1 {
            if count > 0 { body(0..<count) }
            return
        }
        withoutActuallyEscaping(body) { body in
            let box = UnsafeSendable(body)
            DispatchQueue.concurrentPerform(iterations: chunks) { c in
                let lo = count * c / chunks
                let hi = count * (c + 1) / chunks
                box.value(lo..<hi)
            }
        }
    }

    /// Calls `body(i)` for each `i` in `0..<count`, one item at a time to whichever core is free (dynamic
    /// scheduling, for items of uneven cost such as experts with different loads).
    @inline(__always)
    public static func forEachDynamic(_ count: Int, _ body: (Int) -> Void) {
        if count <= 1 || cores == 1 {
            for i in 0..<count { body(i) }
            return
        }
        withoutActuallyEscaping(body) { body in
            let box = UnsafeSendable(body)
            DispatchQueue.concurrentPerform(iterations: count) { box.value($0) }
        }
    }

    /// Calls `body(i)` for each `i` in `0..<count`, spread over the cores (for coarse items such as heads).
    @inline(__always)
    public static func forEach(_ count: Int, _ body: (Int) -> Void) {
        forRange(count, grain: 1) { r in for i in r { body(i) } }
    }
}

/// Carries a non-Sendable value into a concurrent region whose items touch disjoint memory.
@usableFromInline
struct UnsafeSendable<V>: @unchecked Sendable {
    @usableFromInline let value: V
    @usableFromInline init(_ value: V) { self.value = value }
}
