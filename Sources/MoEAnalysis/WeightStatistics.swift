import Foundation
import MoETensor

#if !canImport(Accelerate)
import CMoEBLAS
#endif

/// The numerical pieces of the static analyses of Lo et al. 2024 ("A Closer Look into Mixture-of-Experts in Large
/// Language Models"), on plain row-major matrices: cosine similarities between experts, neuron means, neuron
/// alignment by linear assignment, simple linear regression and PCA. Sums run in Double (through the BLAS's dgemm
/// where they are products), so a similarity of two 3-million-weight matrices is exact to about 1e-12.
public enum WeightStatistics {
    /// One matrix per expert, each `rows` x `cols` row-major, all of one shape.
    public struct Bank {
        public let matrices: [[Float]]
        public let rows: Int, cols: Int
        public init(_ matrices: [[Float]], rows: Int, cols: Int) {
            precondition(matrices.allSatisfy { $0.count == rows * cols }, "[analysis] every matrix must be \(rows) x \(cols)")
            self.matrices = matrices
            self.rows = rows
            self.cols = cols
        }
        public var count: Int { matrices.count }
    }

    /// Which way a matrix's neurons run: the rows of gate and up ([F, D]), the columns of down ([D, F]).
    public enum NeuronAxis: Sendable { case rows, columns }

    /// Cosine similarity of every pair of vectors: G_ij / sqrt(G_ii G_jj); a zero vector has similarity 0 with
    /// everything (1 with itself, as any vector).
    public static func cosineMatrix<S: BinaryFloatingPoint>(_ vectors: [[S]]) -> [[Double]] {
        let g = gram(vectors, normalize: false), n = vectors.count
        return (0..<n).map { i in
            (0..<n).map { j in
                if i == j { return 1 }
                let d = (g[i * n + i] * g[j * n + j]).squareRoot()
                return d > 0 ? g[i * n + j] / d : 0
            }
        }
    }

    /// Matrix level: each expert's matrix flattened, compared by cosine.
    public static func matrixSimilarity(_ bank: Bank) -> [[Double]] { cosineMatrix(bank.matrices) }

    /// G = X X^T [n, n] for the rows of X (experts' flattened matrices may be millions of weights each), with each
    /// column z-normalized over the rows first when `normalize` (as the PCA needs): the columns go through dgemm in
    /// blocks of at most 16384 converted to Double, so the memory beyond the rows is n x 16384 doubles.
    static func gram<S: BinaryFloatingPoint>(_ rows: [[S]], normalize: Bool) -> [Double] {
        let n = rows.count, p = rows.first?.count ?? 0
        var g = [Double](repeating: 0, count: n * n)
        let block = Swift.min(16384, Swift.max(p, 1))
        var z = [Double](repeating: 0, count: n * block)
        for c0 in stride(from: 0, to: p, by: block) {
            let w = Swift.min(block, p - c0)
            for c in 0..<w {
                var mean = 0.0, ss = 0.0
                if normalize {
                    for r in 0..<n { mean += Double(rows[r][c0 + c]) }
                    mean /= Double(n)
                    for r in 0..<n { let d = Double(rows[r][c0 + c]) - mean; ss += d * d }
                }
                let sd = normalize ? (n > 1 ? (ss / Double(n - 1)).squareRoot() : 0) : 1
                for r in 0..<n { z[r * w + c] = sd > 0 ? (Double(rows[r][c0 + c]) - mean) / sd : 0 }
            }
            z.withUnsafeBufferPointer { pz in
                g.withUnsafeMutableBufferPointer { pg in
                    Double.gemm(transA: false, transB: true, m: n, n: n, k: w, alpha: 1, a: pz.baseAddress!, lda: w,
                                b: pz.baseAddress!, ldb: w, beta: 1, c: pg.baseAddress!, ldc: n)
                }
            }
        }
        return g
    }

    /// Neuron level: each neuron's weights averaged, one value per neuron: gate and up ([F, D]) averaged over their
    /// input axis D, down ([D, F]) over its output axis D. F values per expert, compared by cosine.
    public static func neuronMeans(_ m: [Float], rows: Int, cols: Int, axis: NeuronAxis) -> [Double] {
        switch axis {
        case .rows:
            return (0..<rows).map { r in
                var s = 0.0
                for c in 0..<cols { s += Double(m[r * cols + c]) }
                return s / Double(cols)
            }
        case .columns:
            var s = [Double](repeating: 0, count: cols)
            for r in 0..<rows { for c in 0..<cols { s[c] += Double(m[r * cols + c]) } }
            return s.map { $0 / Double(rows) }
        }
    }

    public static func neuronSimilarity(_ bank: Bank, axis: NeuronAxis) -> [[Double]] {
        cosineMatrix(bank.matrices.map { neuronMeans($0, rows: bank.rows, cols: bank.cols, axis: axis) })
    }

    /// The neurons of a matrix as rows of Double, row-major: the rows of [F, D], or the columns of [D, F] (so each
    /// neuron is D long either way).
    public static func neuronRows(_ m: [Float], rows: Int, cols: Int, axis: NeuronAxis) -> [Double] {
        switch axis {
        case .rows: return m.map(Double.init)
        case .columns:
            var t = [Double](repeating: 0, count: rows * cols)
            for r in 0..<rows { for c in 0..<cols { t[c * rows + r] = Double(m[r * cols + c]) } }
            return t
        }
    }

    /// Two experts' neurons aligned: the permutation p of b's neurons that maximizes the summed cosine similarity
    /// sum_i cos(a_i, b_p(i)) (linear sum assignment), the cosine similarity of the flattened matrices after b's
    /// neurons are put in that order, and Kendall's tau between p and the identity (1: the order was already the
    /// best; near 0: unrelated).
    public struct Alignment: Sendable {
        public let permutation: [Int]
        public let similarity: Double
        public let kendallTau: Double
    }

    public static func align(_ a: [Float], _ b: [Float], rows: Int, cols: Int, axis: NeuronAxis) throws -> Alignment {
        let va = neuronRows(a, rows: rows, cols: cols, axis: axis), vb = neuronRows(b, rows: rows, cols: cols, axis: axis)
        let (n, w) = axis == .rows ? (rows, cols) : (cols, rows)
        func unit(_ v: [Double]) -> [Double] {
            var u = v
            for i in 0..<n {
                var s = 0.0
                for j in 0..<w { s += v[i * w + j] * v[i * w + j] }
                let r = s > 0 ? 1 / s.squareRoot() : 0
                for j in 0..<w { u[i * w + j] *= r }
            }
            return u
        }
        let ua = unit(va), ub = unit(vb)
        var cos = [Double](repeating: 0, count: n * n)  // cos[i][j] = cos(a_i, b_j)
        ua.withUnsafeBufferPointer { pa in
            ub.withUnsafeBufferPointer { pb in
                cos.withUnsafeMutableBufferPointer { pc in
                    Double.gemm(transA: false, transB: true, m: n, n: n, k: w, alpha: 1, a: pa.baseAddress!, lda: w,
                                b: pb.baseAddress!, ldb: w, beta: 0, c: pc.baseAddress!, ldc: n)
                }
            }
        }
        let p = try LinearAssignment.solve(cos, rows: n, columns: n, maximize: true).columns
        var dot = 0.0, sa = 0.0, sb = 0.0
        for i in 0..<n {
            for j in 0..<w {
                let x = va[i * w + j], y = vb[p[i] * w + j]
                dot += x * y
                sa += x * x
                sb += y * y
            }
        }
        let d = (sa * sb).squareRoot()
        return Alignment(permutation: p, similarity: d > 0 ? dot / d : 0, kendallTau: LinearAssignment.kendallTau(Array(0..<n), p))
    }

    /// Least squares y = slope x + intercept, with r^2 (scipy.stats.linregress's slope, intercept and rvalue^2).
    public struct Regression: Codable, Sendable, Equatable {
        public let slope: Double, intercept: Double, r2: Double, points: Int
    }

    public static func regression(x: [Double], y: [Double]) -> Regression? {
        precondition(x.count == y.count, "[regression] \(x.count) x against \(y.count) y")
        let n = Double(x.count)
        guard x.count >= 2 else { return nil }
        let mx = x.reduce(0, +) / n, my = y.reduce(0, +) / n
        var sxx = 0.0, sxy = 0.0, syy = 0.0
        for i in x.indices {
            let dx = x[i] - mx, dy = y[i] - my
            sxx += dx * dx
            sxy += dx * dy
            syy += dy * dy
        }
        guard sxx > 0 else { return nil }  // x constant: no line
        let slope = sxy / sxx
        let r2 = syy > 0 ? (sxy * sxy) / (sxx * syy) : 1
        return Regression(slope: slope, intercept: my - slope * mx, r2: r2, points: x.count)
    }

    /// The mean of a square matrix's off-diagonal entries (1 for a matrix of one entry, a similarity with itself).
    public static func offDiagonalMean(_ m: [[Double]]) -> Double {
        let n = m.count
        guard n > 1 else { return 1 }
        var s = 0.0
        for i in 0..<n { for j in 0..<n where i != j { s += m[i][j] } }
        return s / Double(n * (n - 1))
    }

    /// The strictly lower triangle of a square matrix, row by row (each unordered pair once).
    public static func lowerTriangle(_ m: [[Double]]) -> [Double] {
        var out: [Double] = []
        for i in m.indices { for j in 0..<i { out.append(m[i][j]) } }
        return out
    }

    public enum Failure: Error, CustomStringConvertible {
        case noLAPACK, eigen(Int)
        public var description: String {
            switch self {
            case .noLAPACK: return "the loaded BLAS has no LAPACK (dsyevd_); use OpenBLAS (MOE_BLAS_LIBRARY unset) for the PCA"
            case let .eigen(info): return "LAPACK's dsyevd did not converge (info \(info))"
            }
        }
    }

    /// Points on the leading principal axes, and each axis's share of the total variance.
    public struct Projection: Sendable {
        public let points: [[Double]]  // [n][components]
        public let explained: [Double]  // [components]
    }

    /// Principal components of the rows of x [n, p]: each column z-normalized over the rows (mean 0, standard
    /// deviation 1 with n - 1 in the denominator, as the paper's notebooks do; a constant column becomes 0), then
    /// projected on the `components` leading principal axes. The eigen-decomposition is LAPACK's dsyevd, of the
    /// n x n Gram matrix when n <= p (experts: few rows of millions of weights; `pca(longRows:)`) or of the p x p
    /// covariance otherwise (neurons). Each axis's sign is fixed so that its largest projected coordinate (in
    /// magnitude) is positive.
    public static func pca(_ x: [Double], rows n: Int, columns p: Int, components k: Int = 2) throws -> Projection {
        precondition(x.count == n * p && n >= 1 && p >= 1, "[pca] \(x.count) values for [\(n), \(p)]")
        if n <= p { return try pca(longRows: (0..<n).map { Array(x[($0 * p)..<(($0 + 1) * p)]) }, components: k) }
        var z = x
        for c in 0..<p {
            var mean = 0.0
            for r in 0..<n { mean += z[r * p + c] }
            mean /= Double(n)
            var ss = 0.0
            for r in 0..<n { let d = z[r * p + c] - mean; ss += d * d }
            let sd = (ss / Double(n - 1)).squareRoot()
            for r in 0..<n { z[r * p + c] = sd > 0 ? (z[r * p + c] - mean) / sd : 0 }
        }
        var a = [Double](repeating: 0, count: p * p), w = [Double](repeating: 0, count: p)
        z.withUnsafeBufferPointer { pz in
            a.withUnsafeMutableBufferPointer { pa in  // Z^T Z
                Double.gemm(transA: true, transB: false, m: p, n: p, k: n, alpha: 1, a: pz.baseAddress!, lda: p,
                            b: pz.baseAddress!, ldb: p, beta: 0, c: pa.baseAddress!, ldc: p)
            }
        }
        try eigen(&a, &w, p)
        // The coordinates Z v on the k leading eigenvectors (the last columns: eigenvalues ascend), through dgemm.
        let kk = Swift.min(k, p)
        var v = [Double](repeating: 0, count: p * kk), zv = [Double](repeating: 0, count: n * kk)
        for j in 0..<p { for c in 0..<kk { v[j * kk + c] = a[j * p + p - 1 - c] } }
        z.withUnsafeBufferPointer { pz in
            v.withUnsafeBufferPointer { pv in
                zv.withUnsafeMutableBufferPointer { po in
                    Double.gemm(transA: false, transB: false, m: n, n: kk, k: p, alpha: 1, a: pz.baseAddress!, lda: p,
                                b: pv.baseAddress!, ldb: kk, beta: 0, c: po.baseAddress!, ldc: kk)
                }
            }
        }
        return coordinates(w: w, m: p, n: n, k: k) { r, col in zv[r * kk + (p - 1 - col)] }
    }

    /// PCA of a few long rows (the experts, flattened), from their z-normalized Gram matrix built in blocks
    /// (`gram`), without a Double copy of the rows: coordinates u sqrt(lambda).
    public static func pca<S: BinaryFloatingPoint>(longRows rows: [[S]], components k: Int = 2) throws -> Projection {
        let n = rows.count
        var a = gram(rows, normalize: true), w = [Double](repeating: 0, count: n)
        try eigen(&a, &w, n)
        let u = a
        return coordinates(w: w, m: n, n: n, k: k) { r, col in u[r * n + col] * Swift.max(w[col], 0).squareRoot() }
    }

    static func eigen(_ a: inout [Double], _ w: inout [Double], _ m: Int) throws {
        #if canImport(Accelerate)
        throw Failure.noLAPACK
        #else
        let info = a.withUnsafeMutableBufferPointer { pa in w.withUnsafeMutableBufferPointer { moe_dsyevd(Int32(m), pa.baseAddress!, $0.baseAddress!) } }
        if info == -1 { throw Failure.noLAPACK }
        if info != 0 { throw Failure.eigen(Int(info)) }
        #endif
    }

    /// Points [n][k] from the eigen-decomposition (w ascending, m of them): `coordinate(r, column)` gives point r's
    /// coordinate on the eigenvector in `column`; each axis's sign makes its largest coordinate positive.
    static func coordinates(w: [Double], m: Int, n: Int, k: Int, _ coordinate: (Int, Int) -> Double) -> Projection {
        let total = w.reduce(0) { $0 + Swift.max($1, 0) }
        var points = [[Double]](repeating: [Double](repeating: 0, count: k), count: n)
        var explained = [Double](repeating: 0, count: k)
        for c in 0..<Swift.min(k, m) {
            let col = m - 1 - c  // eigenvalues ascend
            explained[c] = total > 0 ? Swift.max(w[col], 0) / total : 0
            let coords = (0..<n).map { coordinate($0, col) }
            let biggest = coords.max { abs($0) < abs($1) } ?? 0
            let sign: Double = biggest < 0 ? -1 : 1
            for r in 0..<n { points[r][c] = sign * coords[r] }
        }
        return Projection(points: points, explained: explained)
    }
}
