import MoETestSupport
import Testing

@Suite("MoE block")
struct MoELayerTests {
    let x = TestSupport.randn([7, 6], seed: 5)

    static let differentiable: [RouterKind] = [.softmaxTopK, .switchTop1, .topKSoftmax, .noisyTopK, .gshard, .grouped, .expertChoice, .dense, .hash]

    func layerFor(_ kind: RouterKind, _ edit: (inout MoEConfig) -> Void = { _ in }) -> MoELayer<Double> {
        makeLayer(kind, e: 4, k: [.switchTop1, .hash].contains(kind) ? 1 : 2) { c in
            if kind == .grouped {
                c.scoreFunction = .sigmoid
                c.normalizeTopK = true
                c.routedScalingFactor = 1.5
            }
            edit(&c)
        }
    }

    func options(_ kind: RouterKind) -> RouteOptions {
        // Training for the routers whose training path differs; a fresh source per call keeps draws fixed.
        RouteOptions(training: kind == .noisyTopK || kind == .gshard, random: RandomSource(seed: 3), tokenIDs: Array(10..<17))
    }

    @Test(arguments: differentiable)
    func gradientsMatchFiniteDifferences(_ kind: RouterKind) {
        let layer = layerFor(kind)
        if kind == .noisyTopK { layer.router.noise!.weight.value = TestSupport.randn([4, 6], seed: 8, scale: 0.3) }
        let (tensors, paths) = inputs(layer, x: x)
        let report = GradientCheck.check(tensors) { vars in
            let out = runBound(layer, vars, paths: paths, options: options(kind))
            return out.output + (out.losses.total ?? Variable(Tensor(0)))
        }
        #expect(report.maxError < 1e-6, "\(report)")
    }

    @Test func balancingLossGradients() {
        let layer = layerFor(.softmaxTopK) { c in
            c.auxLossCoef = 0.1
            c.zLossCoef = 0.01
            c.importanceLossCoef = 0.2
        }
        let (tensors, paths) = inputs(layer, x: x)
        let report = GradientCheck.check(tensors) { runBound(layer, $0, paths: paths).losses.total! }
        #expect(report.maxError < 1e-6, "\(report)")
        let noisy = layerFor(.noisyTopK) { $0.loadLossCoef = 0.5 }
        noisy.router.noise!.weight.value = TestSupport.randn([4, 6], seed: 8, scale: 0.3)
        let (t2, p2) = inputs(noisy, x: x)
        let r2 = GradientCheck.check(t2) { runBound(noisy, $0, paths: p2, options: options(.noisyTopK)).losses.total! }
        #expect(r2.maxError < 1e-6, "\(r2)")
        let seq = layerFor(.grouped) { $0.sequenceAuxLossCoef = 0.3 }
        let (t3, p3) = inputs(seq, x: TestSupport.randn([8, 6], seed: 2))
        let r3 = GradientCheck.check(t3) { runBound(seq, $0, paths: p3, options: RouteOptions(sequenceLength: 4)).losses.total! }
        #expect(r3.maxError < 1e-6, "\(r3)")
    }

    @Test(arguments: differentiable)
    func fastPathMatchesNaiveReference(_ kind: RouterKind) {
        let layer = layerFor(kind)
        let (fused, reference) = fusedAndReference(layer, x: x) { options(kind) }
        #expect(maxDifference(fused, reference) < 1e-12)
    }

    @Test(arguments: [ExpertActivation.swiglu, .relu, .gelu, .geluTanh, .silu, .clampedSwiglu])
    func fastPathMatchesReferenceForEveryExpertKind(_ act: ExpertActivation) {
        for bias in [false, true] {
            let layer = layerFor(.softmaxTopK) { c in
                c.expertActivation = act
                c.expertBias = bias
                c.routerBias = bias
                // A limit the pre-activations cross, so both clamps bind somewhere.
                c.swigluLimit = 0.3
                c.swigluAlpha = 1.702
                c.sharedExpertHiddenSize = 3
                c.sharedExpertGate = true
            }
            let (fused, reference) = fusedAndReference(layer, x: x)
            #expect(maxDifference(fused, reference) < 1e-12)
            let (tensors, paths) = inputs(layer, x: x)
            let report = GradientCheck.check(tensors) { runBound(layer, $0, paths: paths).output }
            #expect(report.maxError < 1e-6, "\(act) bias \(bias): \(report)")
        }
    }

    @Test func fastPathMatchesReferenceInFloatWithManyExperts() {
        // The parallel-over-experts schedule (many small experts) against the reference.
        var c = MoEConfig(hiddenSize: 16, expertHiddenSize: 8, numExperts: 32, expertsPerToken: 4)
        c.sharedExpertHiddenSize = 8
        var rng = RandomGenerator(seed: 4)
        let layer = try! MoELayer<Float>(config: c, rng: &rng)
        let xf = Variable(TestSupport.randnF([300, 16], seed: 6))
        let fast = layer(xf, .inference).output.value
        let slow = layer(xf, .inference, reference: true).output.value
        #expect(fast.maxAbsDifference(slow) < 1e-5)
    }

    /// One expert (softmax probability 1) is the dense SwiGLU FFN, in output and every gradient.
    @Test func oneExpertEqualsDenseFFN() {
        let layer = makeLayer(.softmaxTopK, e: 1, k: 1)
        var rng = RandomGenerator(seed: 1)
        let ffn = SwiGLU<Double>(6, hidden: 5, path: "ffn", rng: &rng)
        let w1 = layer.experts.w1.value, w2 = layer.experts.w2.value
        let halves = w1.reshaped([10, 6]).split(sizes: [5, 5], axis: 0)
        ffn.gate.weight.value = halves[0]
        ffn.up.weight.value = halves[1]
        ffn.down.weight.value = w2.reshaped([6, 5])

        let t1 = Tape<Double>(), t2 = Tape<Double>()
        let x1 = t1.input(x), x2 = t2.input(x)
        let y1 = layer(x1, ForwardContext(tape: t1)).output
        let y2 = ffn(x2, ForwardContext(tape: t2))
        #expect(y1.value.maxAbsDifference(y2.value) < 1e-14)
        let seed = TestSupport.randn(y1.shape, seed: 2)
        let g1 = t1.backward(y1, seed: seed), g2 = t2.backward(y2, seed: seed)
        #expect(g1[x1]!.maxAbsDifference(g2[x2]!) < 1e-14)
        let gw1 = g1.byPath["mlp.experts.gate_up_proj"]!.reshaped([10, 6]).split(sizes: [5, 5], axis: 0)
        #expect(gw1[0].maxAbsDifference(g2.byPath["ffn.gate_proj.weight"]!) < 1e-14)
        #expect(gw1[1].maxAbsDifference(g2.byPath["ffn.up_proj.weight"]!) < 1e-14)
        #expect(g1.byPath["mlp.experts.down_proj"]!.reshaped([6, 5]).maxAbsDifference(g2.byPath["ffn.down_proj.weight"]!) < 1e-14)
        #expect(g1.byPath["mlp.gate.weight"]!.scalars.allSatisfy { abs($0) < 1e-14 })
    }

    /// Identical experts under any router whose weights sum to one: the dense FFN, output and input gradient.
    /// (Evaluation mode: GShard's training-time random skip of a second expert leaves weights summing below 1.)
    @Test(arguments: [RouterKind.softmaxTopK, .topKSoftmax, .noisyTopK, .gshard, .grouped, .dense, .hash])
    func identicalExpertsEqualDenseFFN(_ kind: RouterKind) {
        let layer = layerFor(kind) { c in
            if kind == .grouped { c.routedScalingFactor = 1 }
        }
        let e = layer.experts
        let w1 = e.w1.value.row(0), w2 = e.w2.value.row(0)
        e.w1.value = Tensor.concat(Array(repeating: w1.reshaped([1, 10, 6]), count: 4), axis: 0)
        e.w2.value = Tensor.concat(Array(repeating: w2.reshaped([1, 6, 5]), count: 4), axis: 0)
        var rng = RandomGenerator(seed: 1)
        let ffn = SwiGLU<Double>(6, hidden: 5, path: "ffn", rng: &rng)
        let halves = w1.split(sizes: [5, 5], axis: 0)
        ffn.gate.weight.value = halves[0]
        ffn.up.weight.value = halves[1]
        ffn.down.weight.value = w2
        let t1 = Tape<Double>(), t2 = Tape<Double>()
        let x1 = t1.input(x), x2 = t2.input(x)
        let y1 = layer(x1, ForwardContext(tape: t1), options: RouteOptions(tokenIDs: Array(10..<17))).output
        let y2 = ffn(x2, ForwardContext(tape: t2))
        #expect(y1.value.maxAbsDifference(y2.value) < 1e-12)
        let seed = TestSupport.randn(y1.shape, seed: 2)
        #expect(t1.backward(y1, seed: seed)[x1]!.maxAbsDifference(t2.backward(y2, seed: seed)[x2]!) < 1e-12)
    }

    @Test func sameSeedSameOutputs() {
        let layer = layerFor(.noisyTopK) { $0.jitterEps = 0.1 }
        let o = { RouteOptions(training: true, random: RandomSource(seed: 21)) }
        let a = layer(Variable(x), .inference, options: o()).output.value
        let b = layer(Variable(x), .inference, options: o()).output.value
        #expect(a == b)
    }

    @Test func statisticsDescribeTheRouting() {
        let layer = layerFor(.softmaxTopK)
        let out = layer(Variable(x), .inference)
        let s = out.statistics
        #expect(s.tokensPerExpert.reduce(0, +) == 14)
        #expect(s.droppedFraction == 0)
        #expect(s.unusedExperts == s.tokensPerExpert.filter { $0 == 0 }.count)
        let mean = 14.0 / 4
        #expect(abs(s.maxOverMean - Double(s.tokensPerExpert.max()!) / mean) < 1e-12)
        let p = out.routing.scores!.value
        var h = 0.0
        for n in 0..<7 { for i in 0..<4 { h -= p[n, i] * Double.log(p[n, i]) } }
        #expect(abs(s.routerEntropy - h / 7) < 1e-12)
        #expect(s.routerEntropy > 0 && s.routerEntropy <= Double.log(4))
    }

    @Test func placementAndFineGrainedExperts() throws {
        let p = MoEPlacement(every: 2, firstDense: 1)
        #expect((0..<6).map { p.isMoE(layer: $0) } == [false, true, false, true, false, true])
        #expect((0..<3).map { MoEPlacement().isMoE(layer: $0) } == [true, true, true])
        let c = MoEConfig(hiddenSize: 8, expertHiddenSize: 12, numExperts: 4, expertsPerToken: 2)
        let fine = try c.fineGrained(3)
        #expect((fine.numExperts, fine.expertsPerToken, fine.expertHiddenSize) == (12, 6, 4))
        #expect(throws: ConfigError.self) { try c.fineGrained(5) }
    }
}
