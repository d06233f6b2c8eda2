import MoETestSupport
import Testing

/// PEER (He 2024): product-key retrieval, the fused scores and experts against their composed references,
/// and gradients against central finite differences in Double.
@Suite("PEER")
struct PEERTests {
    func layer(_ edit: (inout PEERConfig) -> Void = { _ in }) -> PEERLayer<Double> {
        var c = PEERConfig(hiddenSize: 6, numExperts: 25, heads: 2, expertsPerHead: 3, keyDim: 4)
        edit(&c)
        var rng = RandomGenerator(seed: 3)
        do { return try PEERLayer<Double>(config: c, path: "peer", rng: &rng) } catch { preconditionFailure("\(error)") }
    }

    @Test(arguments: [(5, 1), (5, 3), (5, 5), (8, 4)])
    func productKeysFindTheBruteForceTopK(_ n: Int, _ k: Int) {
        let h = 3, d = 4, tokens = 40
        let q = TestSupport.randn([tokens, h * 2 * d], seed: UInt64(n * 10 + k))
        let keys = TestSupport.randn([h * 2 * n, d], seed: UInt64(n * 10 + k + 1))
        let picks = PEERKernel.retrieve(q, keys: keys, heads: h, subKeys: n, k: k)
        #expect(picks.experts == PEERKernel.referenceRetrieve(q, keys: keys, heads: h, subKeys: n, k: k))
        #expect(picks.experts == zip(picks.first, picks.second).map { $0 * n + $1 })
    }

    @Test func retrievalIsTheSameInFloatOnBothCores() {
        // 256 tokens split over the cores; Float and Double see the same well-separated scores.
        let q = TestSupport.randn([256, 2 * 2 * 8], seed: 4), keys = TestSupport.randn([2 * 2 * 16, 8], seed: 5)
        let d = PEERKernel.retrieve(q, keys: keys, heads: 2, subKeys: 16, k: 4)
        let f = PEERKernel.retrieve(Tensor<Float>(shape: q.shape, q.scalars.map(Float.init)), keys: Tensor<Float>(shape: keys.shape, keys.scalars.map(Float.init)), heads: 2, subKeys: 16, k: 4)
        let agree = zip(d.experts, f.experts).filter { $0 == $1 }.count
        #expect(Double(agree) / Double(d.experts.count) > 0.99)
    }

    /// Output and every gradient of the fused and the composed path.
    func fusedAndReference(_ l: PEERLayer<Double>, x: Tensor<Double>, training: Bool) -> ([Tensor<Double>], [Tensor<Double>]) {
        let params = l.parameters
        func run(_ reference: Bool) -> [Tensor<Double>] {
            let tape = Tape<Double>()
            let xv = tape.input(x)
            var bind: [String: Variable<Double>] = [:]
            for p in params { bind[p.path] = tape.input(p.value) }
            let out = l(xv, ForwardContext(tape: tape, bindings: bind), training: training, reference: reference).output
            let g = tape.backward(out, seed: TestSupport.randn(out.shape, seed: 77))
            return [out.value, g[xv]!] + params.map { g[bind[$0.path]!] ?? .zeros($0.shape) }
        }
        return (run(false), run(true))
    }

    @Test(arguments: [ExpertActivation.gelu, .geluTanh, .relu, .silu])
    func fusedEqualsComposed(_ f: ExpertActivation) {
        let l = layer { $0.activation = f }
        let (a, b) = fusedAndReference(l, x: TestSupport.randn([9, 6], seed: 2), training: false)
        for (u, v) in zip(a, b) { #expect(u.maxAbsDifference(v) < 1e-12) }
    }

    @Test func fusedEqualsComposedInFloatOverManyTokens() {
        var c = PEERConfig(hiddenSize: 32, numExperts: 256, heads: 4, expertsPerHead: 8, keyDim: 8)
        c.activation = .gelu
        var rng = RandomGenerator(seed: 1)
        let l = try! PEERLayer<Float>(config: c, path: "", rng: &rng)
        let x = TestSupport.randnF([300, 32], seed: 9)
        func grads(_ reference: Bool) -> [Tensor<Float>] {
            let tape = Tape<Float>()
            let xv = tape.input(x), u = tape.input(l.down.value), v = tape.input(l.up.value)
            let out = l(xv, ForwardContext(tape: tape, bindings: [l.down.path: u, l.up.path: v]), reference: reference).output
            let g = tape.backward(out, seed: TestSupport.randnF(out.shape, seed: 3))
            return [out.value, g[xv]!, g[u]!, g[v]!]
        }
        for (p, q) in zip(grads(false), grads(true)) { #expect(p.maxAbsDifference(q) < 2e-5) }
    }

    @Test(arguments: [false, true])
    func gradientsMatchFiniteDifferences(_ batchNorm: Bool) {
        let l = layer { $0.queryBatchNorm = batchNorm }
        let params = l.parameters
        let x = TestSupport.randn([5, 6], seed: 11)
        let report = GradientCheck.check([x] + params.map(\.value)) { vars in
            var bind: [String: Variable<Double>] = [:]
            for (p, v) in zip(params, vars.dropFirst()) { bind[p.path] = v }
            return l(vars[0], ForwardContext(tape: nil, bindings: bind), training: batchNorm).output
        }
        #expect(report.maxError < 1e-6, "\(report)")
    }

    @Test func batchNormUsesRunningStatisticsInInference() {
        let l = layer { $0.queryBatchNorm = true }
        let x = TestSupport.randn([8, 6], seed: 4)
        let before = l(Variable(x), .inference).output.value
        _ = l(Variable(x), .inference, training: true)
        #expect(l.runningMean!.value.maxAbsDifference(.zeros(l.runningMean!.shape)) > 0)
        #expect(l(Variable(x), .inference).output.value.maxAbsDifference(before) > 0)
    }

    @Test func badSizesAreRefused() {
        func error(_ edit: (inout PEERConfig) -> Void) -> String {
            var c = PEERConfig(hiddenSize: 8, numExperts: 16)
            c.expertsPerHead = 2
            edit(&c)
            do { try c.validate(); return "" } catch { return "\(error)" }
        }
        #expect(error { $0.numExperts = 1000 }.contains("use 961 (31²) or 1024 (32²)"))
        #expect(error { $0.expertsPerHead = 5 }.contains("experts_per_head"))
        #expect(error { $0.numExperts = Int.max }.contains("num_experts"))
        #expect(error { $0.activation = .swiglu }.contains("activation"))
        #expect(error { _ in }.isEmpty)
    }
}
