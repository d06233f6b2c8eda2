import Numerics

#if canImport(Accelerate)
import Accelerate
#else
import CBLAS
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

@inline(__always) private func trans(_ t: Bool) -> CBLAS_TRANSPOSE { t ? CblasTrans : CblasNoTrans }

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
        cblas_sgemm(
            CblasRowMajor, trans(transA), trans(transB), .init(m), .init(n), .init(k), alpha,
            a, .init(lda), b, .init(ldb), beta, c, .init(ldc))
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
        cblas_dgemm(
            CblasRowMajor, trans(transA), trans(transB), .init(m), .init(n), .init(k), alpha,
            a, .init(lda), b, .init(ldb), beta, c, .init(ldc))
    }
}

/// Control of the BLAS library's own thread pool.
///
/// MoETensor's kernels split work across cores themselves. Where such a parallel region calls BLAS (attention),
/// BLAS is made single-threaded for the region's length so the two pools never oversubscribe the cores.
public enum BLAS {
    /// The number of threads BLAS uses for one call.
    public static var threads: Int {
        #if canImport(Accelerate)
        return 1
        #else
        return Int(openblas_get_num_threads())
        #endif
    }

    public static func setThreads(_ n: Int) {
        #if !canImport(Accelerate)
        openblas_set_num_threads(Int32(Swift.max(1, n)))
        #endif
    }

    /// Runs `body` with BLAS single-threaded, then restores the previous count.
    public static func singleThreaded<R>(_ body: () throws -> R) rethrows -> R {
        let before = threads
        if before == 1 { return try body() }
        setThreads(1)
        defer { setThreads(before) }
        return try body()
    }
}
