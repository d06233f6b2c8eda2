import CMoEBLAS
import Foundation
import MoETestSupport
import Testing

/// The AVX-512 / AVX2 row kernels against their portable references and Float.fastExp.
@Suite("vector row kernels")
struct VectorKernelTests {
    static func inputs(_ n: Int, seed: UInt64) -> [Float] {
        var rng = RandomGenerator(seed: seed)
        var x = Tensor<Float>.normal([n], std: 30, rng: &rng).scalars
        // The edges of fastExp's range and the values it must pass through.
        let special: [Float] = [-87.33654, -87.33655, -87.3365, -100, -1e30, 88.72283, 88.7229, 100, 0, -0.0, Float.leastNormalMagnitude / 1000, -Float.infinity]
        for (i, v) in special.enumerated() where i < n { x[(i * 7) % n] = v }
        return x
    }

    /// Every exponential is bit-identical to Float.fastExp(x - shift), at every length (vector body and tail).
    @Test(arguments: [0, 1, 7, 16, 17, 33, 1000, 1024])
    func shiftedExponentialsAreFastExpExactly(n: Int) {
        let x = Self.inputs(n, seed: UInt64(n) + 1)
        for shift: Float in [0, 3.5, -20] {
            var y = [Float](repeating: .nan, count: n), yp = [Float](repeating: .nan, count: n)
            let s = moe_exp_shifted_f32(x, &y, n, shift)
            let sp = moe_exp_shifted_f32_portable(x, &yp, n, shift)
            var reference: Double = 0
            for j in 0..<n {
                let want = Float.fastExp(x[j] - shift)
                #expect(y[j].bitPattern == want.bitPattern, "x \(x[j]) shift \(shift): \(y[j]) vs \(want)")
                #expect(yp[j].bitPattern == want.bitPattern)
                reference += Double(want)
            }
            if reference < Double(Float.greatestFiniteMagnitude) / 2 {  // a sum Float can hold
                #expect(abs(Double(s) - reference) <= 1e-6 * Swift.max(1, reference))
                #expect(abs(Double(sp) - reference) <= 1e-6 * Swift.max(1, reference))
            }
        }
    }

    @Test func nanPropagatesThroughTheExponential() {
        var x = [Float](repeating: 1, count: 40)
        x[3] = .nan
        x[37] = .nan
        var y = [Float](repeating: 0, count: 40)
        _ = moe_exp_shifted_f32(x, &y, 40, 0)
        #expect(y[3].isNaN && y[37].isNaN && Float.fastExp(.nan).isNaN)
        #expect(y[0] == Float.fastExp(1))
    }

    /// SwiGLU's vector kernel is Swift's `g / (1 + Float.fastExp(-g)) * u` bit for bit, tails and the exponential's
    /// edges included.
    @Test(arguments: [1, 15, 16, 17, 1000])
    func swigluIsTheScalarFormulaExactly(n: Int) {
        let g = Self.inputs(n, seed: UInt64(n) + 90), u = Self.inputs(n, seed: UInt64(n) + 91).map { $0 / 30 }
        var out = [Float](repeating: .nan, count: n), portable = out
        moe_swiglu_f32(g, u, &out, n)
        moe_swiglu_f32_portable(g, u, &portable, n)
        for j in 0..<n {
            let want = g[j] / (1 + Float.fastExp(-g[j])) * u[j]
            #expect(out[j].bitPattern == want.bitPattern || (out[j].isNaN && want.isNaN), "g \(g[j]) u \(u[j]): \(out[j]) vs \(want)")
            #expect(portable[j].bitPattern == want.bitPattern || (portable[j].isNaN && want.isNaN))
        }
    }

    /// The row maximum equals the portable one and skips NaNs; an empty row gives -infinity.
    @Test(arguments: [0, 1, 15, 16, 17, 100, 1024])
    func rowMaximumMatches(n: Int) {
        var x = Self.inputs(n, seed: UInt64(n) + 50)
        if n > 5 { x[n / 2] = .nan }
        let m = moe_max_f32(x, n), mp = moe_max_f32_portable(x, n)
        #expect(m == mp)
        #expect(m == (x.filter { !$0.isNaN }.max() ?? -.infinity))
        #expect(VectorMath.max(x, n) == m)
    }

    /// AdamW's vector update equals the portable loop and the scalar formula, bit for bit, tails included.
    @Test(arguments: [1, 15, 16, 17, 100])
    func adamwUpdateIsTheScalarFormula(n: Int) {
        let g = Self.inputs(n, seed: 7).map { $0 * 1e-3 }
        var rng = RandomGenerator(seed: 8)
        let p0 = Tensor<Float>.normal([n], rng: &rng).scalars, m0 = Tensor<Float>.normal([n], std: 0.01, rng: &rng).scalars
        let v0 = Tensor<Float>.normal([n], std: 0.01, rng: &rng).scalars.map { $0 * $0 }
        let (decay, lr, b1, b2, c1, c2, eps): (Float, Float, Float, Float, Float, Float, Float) = (0.9999, 3e-4, 0.9, 0.999, 0.271, 0.00299, 1e-8)
        var (p, m, v) = (p0, m0, v0), (pp, mp, vp) = (p0, m0, v0)
        moe_adamw_f32(&p, &m, &v, g, n, decay, lr, b1, b2, c1, c2, eps)
        moe_adamw_f32_portable(&pp, &mp, &vp, g, n, decay, lr, b1, b2, c1, c2, eps)
        for i in 0..<n {
            var ps = p0[i] * decay
            let ms = b1 * m0[i] + (1 - b1) * g[i]
            let vs = b2 * v0[i] + (1 - b2) * g[i] * g[i]
            ps -= lr * (ms / c1) / ((vs / c2).squareRoot() + eps)
            #expect(p[i].bitPattern == ps.bitPattern && m[i].bitPattern == ms.bitPattern && v[i].bitPattern == vs.bitPattern, "element \(i)")
            #expect(pp[i].bitPattern == ps.bitPattern && mp[i].bitPattern == ms.bitPattern && vp[i].bitPattern == vs.bitPattern)
        }
    }

    /// A softmax large enough to stream its output (> 8 MB) equals, bit for bit, the same rows taken one at a time
    /// through the ordinary path; rows of 1024 (aligned, streamed) and 1000 (unaligned, ordinary stores).
    @Test(arguments: [1024, 1000])
    func streamedSoftmaxEqualsTheOrdinaryOne(n: Int) {
        let rows = (9 << 20) / (4 * n)
        var rng = RandomGenerator(seed: UInt64(n))
        var x = Tensor<Float>.normal([rows, n], std: 3, rng: &rng)
        x[5, 7] = -.infinity
        let big = x.softmax()
        for row in [0, 1, 5, rows / 2, rows - 1] {
            let one = x.rows(row..<(row + 1)).copy().softmax()
            for j in 0..<n { #expect(big[row, j].bitPattern == one[0, j].bitPattern, "row \(row) column \(j)") }
        }
        #expect(big[5, 7] == 0)
    }
}
