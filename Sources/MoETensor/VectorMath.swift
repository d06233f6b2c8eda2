#if !canImport(Accelerate)
import CMoEBLAS
#endif

/// Row reductions written with SIMD accumulators. Floating-point reductions do not auto-vectorize (the
/// compiler may not reorder additions), so these split the sum over 16 lanes explicitly.
public enum VectorMath {
    @inlinable @inline(__always)
    static func load<T: TensorScalar>(_ p: UnsafePointer<T>) -> SIMD16<T> {
        UnsafeRawPointer(p).loadUnaligned(as: SIMD16<T>.self)
    }

    @inlinable @inline(__always)
    public static func sum<T: TensorScalar>(_ p: UnsafePointer<T>, _ n: Int) -> T {
        var acc = SIMD16<T>()
        var i = 0
        while i + 16 <= n {
            acc += load(p + i)
            i += 16
        }
        var s = acc.sum()
        while i < n {
            s += p[i]
            i += 1
        }
        return s
    }

    @inlinable @inline(__always)
    public static func dot<T: TensorScalar>(_ a: UnsafePointer<T>, _ b: UnsafePointer<T>, _ n: Int) -> T {
        var acc = SIMD16<T>()
        var i = 0
        while i + 16 <= n {
            acc += load(a + i) * load(b + i)
            i += 16
        }
        var s = acc.sum()
        while i < n {
            s += a[i] * b[i]
            i += 1
        }
        return s
    }

    /// sum over i of a[i] b[i] c[i], in sixteen lanes.
    @inlinable @inline(__always)
    public static func dot3<T: TensorScalar>(_ a: UnsafePointer<T>, _ b: UnsafePointer<T>, _ c: UnsafePointer<T>, _ n: Int) -> T {
        var acc = SIMD16<T>()
        var i = 0
        while i + 16 <= n {
            acc += load(a + i) * load(b + i) * load(c + i)
            i += 16
        }
        var s = acc.sum()
        while i < n {
            s += a[i] * b[i] * c[i]
            i += 1
        }
        return s
    }

    /// Largest element (NaNs are skipped); -infinity for an empty row. Float runs the AVX-512/AVX2 kernel of
    /// CMoEBLAS/vector.c; otherwise four scalar accumulators: SIMD comparisons (`.>`, pointwiseMax) lower lane by
    /// lane here, and a compare-select reduction does not auto-vectorize.
    @inlinable @inline(__always)
    public static func max<T: TensorScalar>(_ p: UnsafePointer<T>, _ n: Int) -> T {
        #if !canImport(Accelerate)
        if T.self == Float.self {  // AVX-512 / AVX2 kernel (CMoEBLAS/vector.c)
            return unsafeBitCast(moe_max_f32(UnsafeRawPointer(p).assumingMemoryBound(to: Float.self), n), to: T.self)
        }
        #endif
        var m0 = -T.infinity, m1 = -T.infinity, m2 = -T.infinity, m3 = -T.infinity
        var i = 0
        while i + 4 <= n {
            if p[i] > m0 { m0 = p[i] }
            if p[i + 1] > m1 { m1 = p[i + 1] }
            if p[i + 2] > m2 { m2 = p[i + 2] }
            if p[i + 3] > m3 { m3 = p[i + 3] }
            i += 4
        }
        while i < n {
            if p[i] > m0 { m0 = p[i] }
            i += 1
        }
        if m1 > m0 { m0 = m1 }
        if m3 > m2 { m2 = m3 }
        return m2 > m0 ? m2 : m0
    }

    /// y[j] = exp(x[j] - shift) for j < n; returns the sum of the y[j].
    @inlinable @inline(__always)
    public static func expShifted<T: TensorScalar>(_ x: UnsafePointer<T>, _ y: UnsafeMutablePointer<T>, _ n: Int, shift: T) -> T {
        #if !canImport(Accelerate)
        if T.self == Float.self {  // vector kernel, each y[j] bit-identical to Float.fastExp (CMoEBLAS/vector.c)
            return unsafeBitCast(
                moe_exp_shifted_f32(
                    UnsafeRawPointer(x).assumingMemoryBound(to: Float.self), UnsafeMutableRawPointer(y).assumingMemoryBound(to: Float.self), n,
                    unsafeBitCast(shift, to: Float.self)),
                to: T.self)
        }
        #endif
        for j in 0..<n { y[j] = T.fastExp(x[j] - shift) }
        return sum(UnsafePointer(y), n)
    }
}
