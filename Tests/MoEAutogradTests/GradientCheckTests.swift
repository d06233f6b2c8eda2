import MoETestSupport
import Testing

/// Every primitive's gradient against central finite differences in Double, on shapes that include
/// edge sizes (1, odd numbers).
let tolerance = 1e-6

func check(_ shapes: [[Int]], seed: UInt64 = 1, scale: Double = 1, positive: Bool = false,
           _ f: @escaping ([Variable<Double>]) -> Variable<Double>) -> GradientCheck.Report {
    let inputs = shapes.enumerated().map { i, s -> Tensor<Double> in
        let t = TestSupport.randn(s, seed: seed &+ UInt64(i) &* 101, scale: scale)
        return positive ? t.map { abs($0) + 0.5 } : t
    }
    return GradientCheck.check(inputs, f)
}

@Suite("gradients of primitives")
struct GradientCheckTests {
    static let broadcastPairs: [([Int], [Int])] = [
        ([3, 5], [3, 5]), ([1], [4, 3]), ([2, 3, 1], [3, 7]), ([1, 5], [4, 1]), ([7], [2, 7]), ([], [3]),
    ]

    @Test(arguments: broadcastPairs)
    func arithmetic(_ a: [Int], _ b: [Int]) {
        #expect(check([a, b]) { $0[0] + $0[1] }.maxError < tolerance)
        #expect(check([a, b]) { $0[0] - $0[1] }.maxError < tolerance)
        #expect(check([a, b]) { $0[0] * $0[1] }.maxError < tolerance)
        #expect(check([a, b], positive: true) { $0[0] / $0[1] }.maxError < tolerance)
    }

    @Test func scalarOps() {
        #expect(check([[3, 4]]) { $0[0] * 2.5 + 1.5 }.maxError < tolerance)
        #expect(check([[3, 4]]) { 3.0 - $0[0] / 4 }.maxError < tolerance)
        #expect(check([[5]], positive: true) { $0[0].pow(1.7) }.maxError < tolerance)
        #expect(check([[2, 3]]) { -$0[0] }.maxError < tolerance)
    }

    @Test(arguments: [[[2, 3], [3, 4]], [[1, 1], [1, 1]], [[5, 1], [1, 7]], [[3, 2, 5], [5, 3]]])
    func matmul(_ shapes: [[Int]]) {
        let (a, b) = (shapes[0], shapes[1])
        #expect(check([a, b]) { Variable.matmul($0[0], $0[1]) }.maxError < tolerance)
        if a.count == 2 {
            // The same product through each transpose flag: operands stored transposed.
            let at = [a[1], a[0]], bt = [b[1], b[0]]
            #expect(check([at, b]) { Variable.matmul($0[0], $0[1], transposeA: true) }.maxError < tolerance)
            #expect(check([a, bt]) { Variable.matmul($0[0], $0[1], transposeB: true) }.maxError < tolerance)
            #expect(check([at, bt]) { Variable.matmul($0[0], $0[1], transposeA: true, transposeB: true) }.maxError < tolerance)
        } else {
            #expect(check([a, [b[1], b[0]]]) { Variable.matmul($0[0], $0[1], transposeB: true) }.maxError < tolerance)
        }
    }

    @Test func batchedMatmul() {
        #expect(check([[2, 3, 4], [2, 4, 5]]) { Variable.matmul($0[0], $0[1]) }.maxError < tolerance)
        #expect(check([[3, 1, 4, 3], [3, 1, 5, 3]]) { Variable.matmul($0[0], $0[1], transposeB: true) }.maxError < tolerance)
        #expect(check([[2, 4, 3], [2, 4, 5]]) { Variable.matmul($0[0], $0[1], transposeA: true) }.maxError < tolerance)
        #expect(check([[2, 4, 3], [2, 5, 4]]) { Variable.matmul($0[0], $0[1], transposeA: true, transposeB: true) }.maxError < tolerance)
    }

    @Test(arguments: [[0], [1], [0, 2], [-1]])
    func reductions(_ axes: [Int]) {
        #expect(check([[3, 1, 5]]) { $0[0].sum(axes: axes) }.maxError < tolerance)
        #expect(check([[3, 1, 5]]) { $0[0].sum(axes: axes, keepDims: true) }.maxError < tolerance)
        #expect(check([[4, 2, 3]]) { $0[0].mean(axes: axes) }.maxError < tolerance)
    }

    @Test(arguments: [0, 1, 2])
    func maxOverAxis(_ axis: Int) {
        #expect(check([[3, 4, 5]]) { $0[0].max(axis: axis) }.maxError < tolerance)
        #expect(check([[1, 7, 1]]) { $0[0].max(axis: axis, keepDims: true) }.maxError < tolerance)
    }

    @Test func maxOverSeveralAxes() {
        #expect(check([[3, 4, 5]]) { $0[0].max(axes: [0, 2]) }.maxError < tolerance)
        #expect(check([[2, 3, 2]]) { $0[0].max(axes: [1, 2], keepDims: true) }.maxError < tolerance)
    }

    @Test(arguments: UnaryOp.allCases)
    func unary(_ op: UnaryOp) {
        let positive = [.log, .sqrt, .rsqrt].contains(op)
        #expect(check([[3, 7]], positive: positive) { $0[0].apply(op) }.maxError < tolerance)
        #expect(check([[1]], seed: 9, positive: positive) { $0[0].apply(op) }.maxError < tolerance)
    }

    @Test func softplusAboveThreshold() {
        #expect(check([[4]]) { ($0[0] + 22).softplus() }.maxError < tolerance)
    }

    @Test(arguments: [[1, 1], [3, 5], [2, 3, 7]])
    func softmaxFamily(_ shape: [Int]) {
        #expect(check([shape]) { $0[0].softmax() }.maxError < tolerance)
        #expect(check([shape]) { $0[0].logSoftmax() }.maxError < tolerance)
        #expect(check([shape]) { $0[0].logSumExp(axis: -1) }.maxError < tolerance)
    }

    @Test func crossEntropyWithIgnoreIndex() {
        #expect(check([[5, 7]]) { Variable.crossEntropy($0[0], targets: [1, 6, -100, 0, 3]) }.maxError < tolerance)
        #expect(check([[1, 3]]) { Variable.crossEntropy($0[0], targets: [2]) }.maxError < tolerance)
        #expect(check([[3, 4]]) { Variable.crossEntropy($0[0], targets: [0, 0, 1], ignoreIndex: 0) }.maxError < tolerance)
    }

    @Test(arguments: [[1, 1], [3, 5], [2, 3, 8]])
    func norms(_ shape: [Int]) {
        let d = shape.last!
        #expect(check([shape, [d]]) { Variable.rmsNorm($0[0], weight: $0[1], eps: 1e-5) }.maxError < tolerance)
        #expect(check([shape, [d], [d]]) { Variable.layerNorm($0[0], weight: $0[1], bias: $0[2], eps: 1e-5) }.maxError < tolerance)
    }

    @Test func indexing() {
        #expect(check([[5, 3]]) { Variable.embedding($0[0], ids: [4, 0, 4, 2, 1, 1], idsShape: [2, 3]) }.maxError < tolerance)
        #expect(check([[4, 3]]) { $0[0].indexSelect([3, 3, 0]) }.maxError < tolerance)
        #expect(check([[4, 3], [3, 3]]) { Variable.scatterAdd($0[0], indices: [2, 0, 2], $0[1]) }.maxError < tolerance)
        #expect(check([[2, 5]]) { $0[0].gather(lastAxis: [4, 0, 1, 1], k: 2) }.maxError < tolerance)
    }

    @Test(arguments: [1, 2, 5])
    func topK(_ k: Int) {
        #expect(check([[3, 5]]) { $0[0].topK(k).values }.maxError < tolerance)
    }

    @Test func layout() {
        #expect(check([[2, 3, 4]]) { $0[0].reshaped([4, -1]) }.maxError < tolerance)
        #expect(check([[2, 3, 4]]) { $0[0].permuted([2, 0, 1]) }.maxError < tolerance)
        #expect(check([[2, 3, 1]]) { $0[0].transposed(0, 1) }.maxError < tolerance)
        #expect(check([[2, 3], [2, 1], [2, 4]]) { Variable.concat($0, axis: 1) }.maxError < tolerance)
        #expect(check([[1, 3], [2, 3]]) { Variable.concat($0, axis: 0) }.maxError < tolerance)
        #expect(check([[3, 7]]) { v in
            let p = v[0].split(sizes: [2, 1, 4], axis: 1)
            return p[0].sum(axis: 1) * p[1].sum(axis: 1) + p[2].sum(axis: 1)
        }.maxError < tolerance)
    }

    @Test(arguments: [[1, 5, 2, 4], [2, 3, 1, 6], [1, 1, 1, 2], [1, 3, 2, 16]])
    func rope(_ shape: [Int]) {
        let positions = Array(3..<(3 + shape[1]))
        #expect(check([shape]) { $0[0].rope(positions: positions, theta: 10000) }.maxError < tolerance)
        #expect(check([shape]) { $0[0].rope(positions: positions, theta: 500, rotaryDim: 2) }.maxError < tolerance)
        // YaRN (gpt-oss's parameters, shorter original context so the ramp falls inside a small head).
        var yarn = RopeScaling(factor: 32, originalMaxPositions: 64)
        yarn.truncate = false
        #expect(check([shape]) { $0[0].rope(positions: positions, theta: 150000, scaling: yarn) }.maxError < tolerance)
    }

    struct AttentionCase: Sendable, CustomTestStringConvertible {
        let b, t, s, hq, hkv, dh: Int
        let causal: Bool
        var window: Int? = nil
        var testDescription: String { "B\(b) T\(t) S\(s) Hq\(hq) Hkv\(hkv) Dh\(dh)\(causal ? " causal" : "")\(window.map { " window \($0)" } ?? "")" }
    }

    static let attentionCases = [
        AttentionCase(b: 1, t: 5, s: 5, hq: 2, hkv: 1, dh: 3, causal: true),
        AttentionCase(b: 2, t: 3, s: 3, hq: 4, hkv: 2, dh: 2, causal: true),
        AttentionCase(b: 1, t: 2, s: 5, hq: 2, hkv: 2, dh: 4, causal: true),
        AttentionCase(b: 2, t: 3, s: 4, hq: 3, hkv: 1, dh: 1, causal: false),
        AttentionCase(b: 1, t: 1, s: 1, hq: 1, hkv: 1, dh: 1, causal: true),
        AttentionCase(b: 1, t: 70, s: 70, hq: 1, hkv: 1, dh: 2, causal: true),  // crosses a row block
        AttentionCase(b: 1, t: 6, s: 6, hq: 2, hkv: 1, dh: 3, causal: true, window: 2),
        AttentionCase(b: 2, t: 2, s: 5, hq: 2, hkv: 2, dh: 2, causal: true, window: 3),
    ]

    @Test(arguments: attentionCases)
    func attention(_ c: AttentionCase) {
        let r = check([[c.b, c.t, c.hq, c.dh], [c.b, c.s, c.hkv, c.dh], [c.b, c.s, c.hkv, c.dh]]) {
            Variable.attention(q: $0[0], k: $0[1], v: $0[2], causal: c.causal, window: c.window)
        }
        #expect(r.maxError < tolerance, "\(r)")
    }

    /// With a sink logit per query head (gpt-oss), the gradient reaches the sinks too.
    @Test(arguments: attentionCases)
    func attentionWithSinks(_ c: AttentionCase) {
        let r = check([[c.b, c.t, c.hq, c.dh], [c.b, c.s, c.hkv, c.dh], [c.b, c.s, c.hkv, c.dh], [c.hq]]) {
            Variable.attention(q: $0[0], k: $0[1], v: $0[2], causal: c.causal, window: c.window, sinks: $0[3])
        }
        #expect(r.maxError < tolerance, "\(r)")
    }
}
