import Numerics

#if canImport(Accelerate)
import Accelerate
#else
import CMoEBLAS
#endif

/// The element types a tensor can hold: `Float` for training and inference, `Double` for gradient checks.
///
/// Each scalar type knows its own BLAS matrix product, so that generic code reaches `sgemm` or `dgemm`
/// without a type switch.
public protocol TensorScalar: BinaryFloatingPoint, Real, SIMDScalar, Sendable, Codable, CustomStringConvertible
where RawSignificand: FixedWidthInteger {
    /// Row-major `C = alpha * op(A) * op(B) + beta * C` with `op(A)` of shape [m, k] and `op(B)` [k, n].
    static func gemm(
        transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Self,
        a: UnsafePointer<Self>, lda: Int, b: UnsafePointer<Self>, ldb: Int,
        beta: Self, c: UnsafeMutablePointer<Self>, ldc: Int)
    /// The safetensors-style name of the type ("F32", "F64").
    static var dtypeName: String { get }
    /// e^x for the hot loops (softmax, sigmoid, attention). Float uses a branch-free polynomial that
    /// vectorizes (within 2 ulp of expf); Double uses the C library's exp, for gradient checks.
    static func fastExp(_ x: Self) -> Self
}

#if canImport(Accelerate)
@inline(__always) private func trans(_ t: Bool) -> CBLAS_TRANSPOSE { t ? CblasTrans : CblasNoTrans }
#endif

/// With MOE_BLAS_OWN_THREADS=1 the library threads its calls itself, and products are not split on top of that.
let blasThreadsItsOwnCalls: Bool = BLAS.ownThreads

/// A scalar type's single-threaded BLAS entry points (row-major; transpose flags as Bools).
struct RawBLAS<T>: Sendable {
    let gemm: @Sendable (_ ta: Bool, _ tb: Bool, _ m: Int, _ n: Int, _ k: Int, _ alpha: T, _ a: UnsafePointer<T>, _ lda: Int,
               _ b: UnsafePointer<T>, _ ldb: Int, _ beta: T, _ c: UnsafeMutablePointer<T>, _ ldc: Int) -> Void
    /// y = alpha op(A) x + beta y with A stored [rows, cols].
    let gemv: @Sendable (_ trans: Bool, _ rows: Int, _ cols: Int, _ alpha: T, _ a: UnsafePointer<T>, _ lda: Int,
               _ x: UnsafePointer<T>, _ incx: Int, _ beta: T, _ y: UnsafeMutablePointer<T>, _ incy: Int) -> Void
}

/// Every matrix product of the tensor API. The BLAS itself runs single-threaded (see moe_blas.h); here a product
/// large enough to pay for the hand-off is split across `Parallel`'s threads, by rows of the output (columns when
/// it is wide and short), at multiples of 16 rows so the BLAS kernel's blocks stay whole. Inside a parallel
/// region a product runs on its thread alone.
///
/// A product with one output row or column is a matrix-vector product and goes to gemv: OpenBLAS 0.3.21's
/// sgemm takes 3-10x longer for `m = 1` than its sgemv on the same operands (token-by-token decoding is all
/// such products).
@inline(__always)
func blasProduct<T>(
    _ raw: RawBLAS<T>, transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: T,
    a: UnsafePointer<T>, lda: Int, b: UnsafePointer<T>, ldb: Int, beta: T, c: UnsafeMutablePointer<T>, ldc: Int
) {
    let split = Parallel.cores > 1 && !Parallel.isNested && !blasThreadsItsOwnCalls
    let parts = Parallel.cores, align = 16
    if k > 0 && (m == 1 || n == 1) {
        // y = op(A) x with A stored [rows, cols]; split over the outputs when the matrix is large (>= 4 MB).
        func gemv(_ t: Bool, _ rows: Int, _ cols: Int, _ pa: UnsafePointer<T>, _ ld: Int, _ x: UnsafePointer<T>, _ incx: Int,
                  _ y: UnsafeMutablePointer<T>, _ incy: Int) {
            let outputs = t ? cols : rows
            guard split && rows * cols >= 1 << 20 && outputs >= parts * align else {
                raw.gemv(t, rows, cols, alpha, pa, ld, x, incx, beta, y, incy)
                return
            }
            Parallel.forAligned(outputs, parts: parts, align: align) { r in
                if t { raw.gemv(true, rows, r.count, alpha, pa + r.lowerBound, ld, x, incx, beta, y + r.lowerBound * incy, incy) }
                else { raw.gemv(false, r.count, cols, alpha, pa + r.lowerBound * ld, ld, x, incx, beta, y + r.lowerBound * incy, incy) }
            }
        }
        if m == 1 {
            // c[1, n] = op(a)[1, k] op(b)[k, n], i.e. c = op(b)ᵀ x with x the one row of op(a).
            let incx = transA ? lda : 1
            if transB { gemv(false, n, k, b, ldb, a, incx, c, 1) }  // b stored [n, k]
            else { gemv(true, k, n, b, ldb, a, incx, c, 1) }       // b stored [k, n]
        } else {
            // c[m, 1] = op(a)[m, k] x with x the one column of op(b); c's column has stride ldc.
            let incx = transB ? 1 : ldb
            if transA { gemv(true, k, m, a, lda, b, incx, c, ldc) }  // a stored [k, m]
            else { gemv(false, m, k, a, lda, b, incx, c, ldc) }      // a stored [m, k]
        }
        return
    }
    // Below about 4 MFLOP (40 µs on one core) a split saves too little: a hand-off costs 0.2 µs while the pool's
    // worker spins, but 10-15 µs after it has gone to sleep.
    guard split && m * n * k >= 1 << 21 && max(m, n) >= parts * align else {
        raw.gemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
        return
    }
    if m >= n {
        Parallel.forAligned(m, parts: parts, align: align) { r in
            raw.gemm(transA, transB, r.count, n, k, alpha, transA ? a + r.lowerBound : a + r.lowerBound * lda, lda,
                     b, ldb, beta, c + r.lowerBound * ldc, ldc)
        }
    } else {
        Parallel.forAligned(n, parts: parts, align: align) { r in
            raw.gemm(transA, transB, m, r.count, k, alpha, a, lda, transB ? b + r.lowerBound * ldb : b + r.lowerBound, ldb,
                     beta, c + r.lowerBound, ldc)
        }
    }
}

#if !canImport(Accelerate)
private let rawFloat = RawBLAS<Float>(
    gemm: { ta, tb, m, n, k, al, a, lda, b, ldb, be, c, ldc in
        moe_sgemm(ta ? 1 : 0, tb ? 1 : 0, Int32(m), Int32(n), Int32(k), al, a, Int32(lda), b, Int32(ldb), be, c, Int32(ldc))
    },
    gemv: { t, r, cl, al, a, lda, x, ix, be, y, iy in
        moe_sgemv(t ? 1 : 0, Int32(r), Int32(cl), al, a, Int32(lda), x, Int32(ix), be, y, Int32(iy))
    })
private let rawDouble = RawBLAS<Double>(
    gemm: { ta, tb, m, n, k, al, a, lda, b, ldb, be, c, ldc in
        moe_dgemm(ta ? 1 : 0, tb ? 1 : 0, Int32(m), Int32(n), Int32(k), al, a, Int32(lda), b, Int32(ldb), be, c, Int32(ldc))
    },
    gemv: { t, r, cl, al, a, lda, x, ix, be, y, iy in
        moe_dgemv(t ? 1 : 0, Int32(r), Int32(cl), al, a, Int32(lda), x, Int32(ix), be, y, Int32(iy))
    })
#endif

extension Float: TensorScalar {
    public static var dtypeName: String { "F32" }

    /// e^x = 2^n e^r with n = round(x / ln 2), r = x - n ln 2 (ln 2 split in two parts for exactness), and
    /// e^r from its degree-6 Taylor polynomial on |r| <= ln2 / 2 (Cephes' expf coefficients). Inputs are
    /// clamped to the finite range; below -87.3 the result flushes to 0, as the softmax needs.
    @inlinable @inline(__always)
    public static func fastExp(_ x: Float) -> Float {
        let xc = Swift.min(Swift.max(x, -87.33654), 88.72283)
        // Round to nearest with the 1.5 * 2^23 trick: the integer lands in the low mantissa bits, so no
        // float-to-int conversion can trap (a NaN input just propagates through `r`).
        let t = xc * 1.442695041 + 12_582_912
        let n = t - 12_582_912
        let ni = Int32(bitPattern: t.bitPattern) &- 0x4B40_0000
        let r = xc - n * 0.693359375 + n * 2.12194440e-4
        var p: Float = 1.9875691500e-4
        p = p * r + 1.3981999507e-3
        p = p * r + 8.3334519073e-3
        p = p * r + 4.1665795894e-2
        p = p * r + 1.6666665459e-1
        p = p * r + 5.0000001201e-1
        let er = p * r * r + r + 1
        // 2^n through the exponent bits, in two factors so each stays a normal number.
        let half = ni >> 1
        let s1 = Float(bitPattern: UInt32(bitPattern: (half &+ 127) << 23))
        let s2 = Float(bitPattern: UInt32(bitPattern: (ni &- half &+ 127) << 23))
        let y = er * s1 * s2
        return x < -87.33654 ? 0 : y
    }
    @inline(__always)
    public static func gemm(
        transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
        a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
        beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        guard m > 0, n > 0 else { return }
        #if canImport(Accelerate)
        cblas_sgemm(
            CblasRowMajor, trans(transA), trans(transB), .init(m), .init(n), .init(k), alpha,
            a, .init(lda), b, .init(ldb), beta, c, .init(ldc))
        #else
        blasProduct(rawFloat, transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb,
                    beta: beta, c: c, ldc: ldc)
        #endif
    }
}

extension Double: TensorScalar {
    public static var dtypeName: String { "F64" }
    @inlinable @inline(__always)
    public static func fastExp(_ x: Double) -> Double { Double.exp(x) }
    @inline(__always)
    public static func gemm(
        transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Double,
        a: UnsafePointer<Double>, lda: Int, b: UnsafePointer<Double>, ldb: Int,
        beta: Double, c: UnsafeMutablePointer<Double>, ldc: Int
    ) {
        guard m > 0, n > 0 else { return }
        #if canImport(Accelerate)
        cblas_dgemm(
            CblasRowMajor, trans(transA), trans(transB), .init(m), .init(n), .init(k), alpha,
            a, .init(lda), b, .init(ldb), beta, c, .init(ldc))
        #else
        blasProduct(rawDouble, transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb,
                    beta: beta, c: c, ldc: ldc)
        #endif
    }
}
