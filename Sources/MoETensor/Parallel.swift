import Dispatch
import Foundation

#if !canImport(Accelerate)
import CMoEBLAS
#endif

/// Splits a range of independent work items across the machine's cores.
///
/// Work below `grain` items runs on the calling thread: spawning costs more than it saves. This is the one thread
/// pool of the process: the BLAS runs single-threaded, and matrix products split across these threads (see
/// `TensorScalar.gemm`). A region inside another runs on its thread alone, as does a product inside a region.
public enum Parallel {
    /// Cores this process may use (the MOE_THREADS environment variable overrides).
    public static let cores: Int = {
        if let s = ProcessInfo.processInfo.environment["MOE_THREADS"], let n = Int(s), n > 0 { return n }
        return Swift.max(1, ProcessInfo.processInfo.activeProcessorCount)
    }()

    /// MOE_POOL=0 runs regions on libdispatch instead of the spinning worker pool (for comparison).
    static let usePool = ProcessInfo.processInfo.environment["MOE_POOL"] != "0"

    /// True on a thread that runs inside one of these parallel regions.
    @inline(__always)
    public static var isNested: Bool {
        #if canImport(Accelerate)
        return false
        #else
        return moe_parallel_depth() > 0
        #endif
    }

    @inline(__always)
    static func inRegion(_ body: () -> Void) {
        #if canImport(Accelerate)
        body()
        #else
        moe_parallel_enter()
        body()
        moe_parallel_leave()
        #endif
    }

    /// Runs `body(i)` for i in 0..<count on the worker pool (CMoEBLAS/pool.c: workers spin briefly between
    /// regions instead of sleeping, since waking one costs 10-15 us here), or on libdispatch when the pool is busy
    /// with another thread's region. Items run inside a region (isNested is true in them).
    @inline(__always)
    static func concurrent(_ count: Int, _ body: (Int) -> Void) {
        #if !canImport(Accelerate)
        let ran = usePool && withoutActuallyEscaping(body) { body -> Bool in
            var b = body
            return withUnsafeMutablePointer(to: &b) { p in
                moe_pool_run(Int32(cores), count, { ctx, i in ctx!.assumingMemoryBound(to: ((Int) -> Void).self).pointee(Int(i)) }, p) != 0
            }
        }
        if ran { return }
        #endif
        withoutActuallyEscaping(body) { body in
            let box = UnsafeSendable(body)
            DispatchQueue.concurrentPerform(iterations: count) { i in inRegion { box.value(i) } }
        }
    }

    /// Calls `body` on disjoint sub-ranges covering `0..<count`, in parallel when `count >= grain`.
    @inline(__always)
    public static func forRange(_ count: Int, grain: Int, _ body: (Range<Int>) -> Void) {
        let chunks = min(cores, count / Swift.max(grain, 1))
        if chunks <= 1 || isNested {
            if count > 0 { body(0..<count) }
            return
        }
        concurrent(chunks) { c in body((count * c / chunks)..<(count * (c + 1) / chunks)) }
    }

    /// Calls `body` on `parts` consecutive pieces of `0..<count` whose inner boundaries are multiples of `align`
    /// (a BLAS kernel's row block), in parallel. Requires `count >= parts * align`.
    @inline(__always)
    public static func forAligned(_ count: Int, parts: Int, align: Int, _ body: (Range<Int>) -> Void) {
        let blocks = (count + align - 1) / align
        concurrent(parts) { c in
            let lo = Swift.min(count, blocks * c / parts * align)
            let hi = c == parts - 1 ? count : Swift.min(count, blocks * (c + 1) / parts * align)
            if hi > lo { body(lo..<hi) }
        }
    }

    /// Calls `body(i)` for each `i` in `0..<count`, one item at a time to whichever core is free (dynamic
    /// scheduling, for items of uneven cost such as experts with different loads).
    @inline(__always)
    public static func forEachDynamic(_ count: Int, _ body: (Int) -> Void) {
        if count <= 1 || cores == 1 || isNested {
            for i in 0..<count { body(i) }
            return
        }
        concurrent(count, body)
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
