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
public protocol TensorScalar: BinaryFloatingPoint, Real, Sendable, Codable, CustomStringConvertible
where RawSignificand: FixedWidthInteger {
    /// Row-major `C = alpha * op(A) * op(B) + beta * C` with `op(A)` of shape [m, k] and `op(B)` [k, n].
    static func gemm(
        transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Self,
        a: UnsafePointer<Self>, lda: Int, b: UnsafePointer<Self>, ldb: Int,
        beta: Self, c: UnsafeMutablePointer<Self>, ldc: Int)
    /// The safetensors-style name of the type ("F32", "F64").
    static var dtypeName: String { get }
}

@inline(__always) private func trans(_ t: Bool) -> CBLAS_TRANSPOSE { t ? CblasTrans : CblasNoTrans }

extension Float: TensorScalar {
    public static var dtypeName: String { "F32" }
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
