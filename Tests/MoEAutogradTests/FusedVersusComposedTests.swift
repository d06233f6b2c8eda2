import MoETestSupport
import Testing

/// Each fused primitive against its composition from simpler primitives: values and gradients.
@Suite("fused kernels against composed references")
struct FusedVersusComposedTests {
    /// Runs `fused` and `composed` on the same inputs; returns the largest difference in output and gradients.
    func compare(_ shapes: [[Int]], seed: UInt64 = 3,
                 _ fused: ([Variable<Double>]) -> Variable<Double>,
                 _ composed: ([Variable<Double>]) -> Variable<Double>) -> Double {
        let inputs = shapes.enumerated().map { TestSupport.randn($0.element, seed: seed + UInt64($0.offset)) }
        func run(_ f: ([Variable<Double>]) -> Variable<Double>) -> (Tensor<Double>, [Tensor<Double>]) {
            let tape = Tape<Double>()
            let vars = inputs.map { tape.input($0) }
            let y = f(vars)
            let g = tape.backward(y, seed: TestSupport.randn(y.shape, seed: 99))
            return (y.value, vars.map { g[$0] ?? .zeros($0.shape) })
        }
        let (y1, g1) = run(fused), (y2, g2) = run(composed)
        var worst = y1.maxAbsDifference(y2)
        for (a, b) in zip(g1, g2) { worst = max(worst, a.maxAbsDifference(b)) }
        return worst
    }

    @Test func rmsNorm() {
        let d = compare([[4, 7], [7]]) {
            Variable.rmsNorm($0[0], weight: $0[1], eps: 1e-6)
        } _: { v in
            v[0] * (v[0].square().mean(axis: -1, keepDims: true) + 1e-6).rsqrt() * v[1]
        }
        #expect(d < 1e-12)
    }

    @Test func layerNorm() {
        let d = compare([[3, 2, 9], [9], [9]]) {
            Variable.layerNorm($0[0], weight: $0[1], bias: $0[2], eps: 1e-5)
        } _: { v in
            let centered = v[0] - v[0].mean(axis: -1, keepDims: true)
            return centered * (centered.square().mean(axis: -1, keepDims: true) + 1e-5).rsqrt() * v[1] + v[2]
        }
        #expect(d < 1e-12)
    }

    @Test func softmaxAgainstExp() {
        let d = compare([[3, 6]]) { $0[0].softmax() } _: { v in
            let e = (v[0] - Variable(v[0].value.max(axis: -1, keepDims: true).values)).exp()
            return e / e.sum(axis: -1, keepDims: true)
        }
        #expect(d < 1e-12)
    }

    @Test func logSoftmaxAgainstLogOfSoftmax() {
        let d = compare([[4, 9]]) { $0[0].logSoftmax() } _: { $0[0].softmax().log() }
        #expect(d < 1e-12)
    }

    @Test func crossEntropy() {
        let targets = [2, -100, 0, 4]
        let d = compare([[4, 5]]) { Variable.crossEntropy($0[0], targets: targets) } _: { v in
            let rows = targets.enumerated().filter { $0.element != -100 }
            let lp = v[0].logSoftmax().indexSelect(rows.map(\.offset))
            return -lp.gather(lastAxis: rows.map(\.element), k: 1).mean()
        }
        #expect(d < 1e-12)
    }

    @Test(arguments: [(5, 5, 4, 2, true), (3, 7, 2, 2, true), (4, 4, 3, 1, false), (70, 70, 2, 1, true)])
    func attention(_ t: Int, _ s: Int, _ hq: Int, _ hkv: Int, _ causal: Bool) {
        let d = compare([[2, t, hq, 3], [2, s, hkv, 3], [2, s, hkv, 3]]) {
            Variable.attention(q: $0[0], k: $0[1], v: $0[2], causal: causal)
        } _: {
            TestSupport.composedAttention(q: $0[0], k: $0[1], v: $0[2], causal: causal)
        }
        #expect(d < 1e-11)
    }

    /// Sliding windows, with queries after cached keys (S > T) and across a row block.
    @Test(arguments: [(5, 5, 4, 2, 2), (3, 7, 2, 2, 3), (70, 70, 2, 1, 8), (4, 4, 1, 1, 1)])
    func slidingWindowAttention(_ t: Int, _ s: Int, _ hq: Int, _ hkv: Int, _ window: Int) {
        let d = compare([[2, t, hq, 3], [2, s, hkv, 3], [2, s, hkv, 3]]) {
            Variable.attention(q: $0[0], k: $0[1], v: $0[2], causal: true, window: window)
        } _: {
            TestSupport.composedAttention(q: $0[0], k: $0[1], v: $0[2], causal: true, window: window)
        }
        #expect(d < 1e-11)
    }

    @Test func swiGLUComposedFromPrimitives() {
        // silu(x) composed as x * sigmoid(x).
        let d = compare([[3, 5]]) { $0[0].silu() } _: { $0[0] * $0[0].sigmoid() }
        #expect(d < 1e-12)
    }

    /// Pair (i, i + half) at position p rotated by p * theta^(-2i/R), written with split/concat: head dims that
    /// take the scalar loop (4, 20) and the SIMD one (32, 16 of 24 rotary), positions that grow the cached
    /// tables past earlier calls, in Double and in Float.
    @Test(arguments: [(4, 4, [0, 1, 2]), (20, 20, [5, 6, 7]), (32, 32, [0, 1, 2, 300]), (24, 16, [299, 700, 701])])
    func ropeAgainstRotationMatrix(dh: Int, rotary: Int, positions: [Int]) {
        let theta = 100.0
        let half = rotary / 2
        let composed = { (v: [Variable<Double>]) -> Variable<Double> in
            let parts = v[0].split(sizes: dh > rotary ? [half, half, dh - rotary] : [half, half], axis: 3)
            var cosT = Tensor<Double>.zeros([1, positions.count, 1, half]), sinT = Tensor<Double>.zeros([1, positions.count, 1, half])
            for (ti, p) in positions.enumerated() {
                for i in 0..<half {
                    let a = Double(p) * Double.pow(theta, -Double(2 * i) / Double(rotary))
                    cosT[0, ti, 0, i] = Double.cos(a)
                    sinT[0, ti, 0, i] = Double.sin(a)
                }
            }
            let c = Variable(cosT), s = Variable(sinT)
            return Variable.concat([parts[0] * c - parts[1] * s, parts[1] * c + parts[0] * s] + parts.dropFirst(2), axis: 3)
        }
        let shape = [1, positions.count, 3, dh]
        let d = compare([shape]) { $0[0].rope(positions: positions, theta: theta, rotaryDim: rotary) } _: { composed($0) }
        #expect(d < 1e-9)  // positions up to 701: the angle is rounded like the references' float32 tables
        let x = TestSupport.randn(shape, seed: 9)
        let xf = Tensor<Float>(shape: shape, x.scalars.map(Float.init))
        let yf = Tensor.rope(xf, positions: positions, theta: theta, rotaryDim: rotary)
        let yd = composed([Variable(x)]).value
        for (a, b) in zip(yf.scalars, yd.scalars) { #expect(abs(Double(a) - b) < 2e-4 * Swift.max(1, abs(b))) }
        // The inverse rotation undoes it.
        let back = Tensor.rope(Tensor.rope(x, positions: positions, theta: theta, rotaryDim: rotary), positions: positions, theta: theta, rotaryDim: rotary, inverse: true)
        for (a, b) in zip(back.scalars, x.scalars) { #expect(abs(a - b) < 1e-12) }
    }
}
