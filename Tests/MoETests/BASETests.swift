import MoETestSupport
import Testing

/// BASE layers (Lewis et al. 2021): the auction's balanced assignment against exhaustive search, the layer's
/// balance in training and greed in inference, its output, and gradients.
@Suite("BASE layers")
struct BASETests {
    @Test(arguments: [(6, 3, 2), (8, 2, 4), (7, 3, 3), (9, 3, 3), (8, 4, 2)])
    func auctionFindsTheBestBalancedAssignment(_ n: Int, _ e: Int, _ capacity: Int) {
        for seed in 0..<5 {
            let s = TestSupport.randn([n, e], seed: UInt64(seed * 31 + n)).scalars
            let a = BalancedAssignment.solve(scores: s, tokens: n, experts: e, capacity: capacity)
            let best = BalancedAssignment.bruteForce(scores: s, tokens: n, experts: e, capacity: capacity)
            let total = a.enumerated().reduce(0.0) { $0 + s[$1.offset * e + $1.element] }
            for j in 0..<e { #expect(a.filter { $0 == j }.count <= capacity) }
            #expect(a.allSatisfy { $0 >= 0 && $0 < e })
            #expect(total >= best.total - (s.max()! - s.min()!) / 8 - 1e-12, "seed \(seed): \(total) vs \(best.total)")
        }
    }

    @Test func auctionBalancesALargeBatchExactlyAndBeatsRandom() {
        let (n, e) = (2048, 16)
        let s = TestSupport.randn([n, e], seed: 3).scalars
        let a = BalancedAssignment.solve(scores: s, tokens: n, experts: e, capacity: n / e)
        for j in 0..<e { #expect(a.filter { $0 == j }.count == n / e) }
        let total = a.enumerated().reduce(0.0) { $0 + s[$1.offset * e + $1.element] }
        let roundRobin = (0..<n).reduce(0.0) { $0 + s[$1 * e + $1 % e] }
        #expect(total > roundRobin + 1000)  // about 1.8 per token against about 0
    }

    func layer() -> MoELayer<Double> {
        makeLayer(.base, e: 4, k: 1)
    }

    let x = TestSupport.randn([8, 6], seed: 5)
    let training = RouteOptions(training: true)

    @Test func balancedInTrainingGreedyInInference() {
        let l = layer()
        #expect(l(Variable(x), .inference, options: training).statistics.tokensPerExpert == [2, 2, 2, 2])
        let logits = l.router.gate!(Variable(x), .inference).value
        #expect(l(Variable(x), .inference).routing.experts == logits.topK(1).indices)
    }

    @Test func outputIsTheSigmoidWeightedExpertPlusTheInput() {
        let l = layer()
        let out = l(Variable(x), .inference, options: training)
        let r = out.routing
        let logits = l.router.gate!(Variable(x), .inference).value.scalars
        for t in 0..<8 {
            let e = r.experts[t]
            let w: Double = 1 / (1 + Double.exp(-logits[t * 4 + e]))
            #expect(abs(r.weights.value.scalars[t] - w) < 1e-12)
            let weight = Variable(Tensor<Double>(shape: [1], [w]))
            let single = Routing<Double>(numTokens: 1, numExperts: 4, tokens: [0], experts: [e], weights: weight, logits: nil, scores: nil, k: 1)
            let row = Variable(Tensor(shape: [1, 6], Array(x.scalars[(t * 6)..<(t * 6 + 6)])))
            let f = l.experts.reference(row, weights: single.weights, routing: single, .inference).value.scalars
            for c in 0..<6 { #expect(abs(out.output.value.scalars[t * 6 + c] - (f[c] + x.scalars[t * 6 + c])) < 1e-12) }
        }
        let (a, b) = fusedAndReference(l, x: x, options: { training })
        #expect(maxDifference(a, b) < 1e-12)
    }

    @Test func gradientsMatchFiniteDifferences() {
        let l = layer()
        let (tensors, paths) = inputs(l, x: x)
        let report = GradientCheck.check(tensors) { vars in runBound(l, vars, paths: paths, options: training).output }
        #expect(report.maxError < 1e-6, "\(report)")
    }

    @Test func balancingLossesAndTopKAboveOneAreRefused() {
        var c = MoEConfig(hiddenSize: 6, expertHiddenSize: 5, numExperts: 4, expertsPerToken: 1, router: .base)
        c.auxLossCoef = 0.01
        #expect(throws: ConfigError.self) { try c.validate() }
        c.auxLossCoef = 0
        c.expertsPerToken = 2
        #expect(throws: ConfigError.self) { try c.validate() }
    }
}
