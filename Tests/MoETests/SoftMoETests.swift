import MoETestSupport
import Testing

/// Soft MoE (Puigcerver et al. 2023): gradients, the fused path against the reference, the two softmaxes, and the
/// causal opt-in with the leak it accepts.
@Suite("Soft MoE")
struct SoftMoETests {
    func layer(slots: Int = 2, causal: Bool = false) throws -> MoELayer<Double> {
        var c = MoEConfig(hiddenSize: 6, expertHiddenSize: 5, numExperts: 3, expertsPerToken: 1, router: .soft)
        c.slotsPerExpert = slots
        c.allowNonCausalRouting = causal
        var rng = RandomGenerator(seed: 4)
        let l = try MoELayer<Double>(config: c, path: "mlp", causal: causal, rng: &rng)
        l.router.gate!.weight.value = TestSupport.randn(l.router.gate!.weight.shape, seed: 9)
        l.router.slotScale!.value = Tensor(shape: [1], [2.5])
        return l
    }

    let x = TestSupport.randn([8, 6], seed: 5)
    let grouped = RouteOptions(sequenceLength: 4)

    @Test(arguments: [1, 2])
    func gradientsMatchFiniteDifferences(_ slots: Int) throws {
        let l = try layer(slots: slots)
        let (tensors, paths) = inputs(l, x: x)
        #expect(paths.contains("mlp.slot_scale") && l.router.gate!.weight.shape == [3 * slots, 6])
        let report = GradientCheck.check(tensors) { vars in runBound(l, vars, paths: paths, options: grouped).output }
        #expect(report.maxError < 1e-6, "\(report)")
    }

    @Test func fusedEqualsReference() throws {
        let (a, b) = fusedAndReference(try layer(), x: x, options: { grouped })
        #expect(maxDifference(a, b) < 1e-12)
    }

    @Test func dispatchAndCombineAreSoftmaxesOverTokensAndSlots() throws {
        let l = try layer(slots: 2)
        let w = l.router.soft(Variable(x), .inference, grouped)
        #expect(w.dispatch.count == 2 && w.dispatch[0].shape == [6, 4] && w.combine[0].shape == [4, 6])
        for d in w.dispatch { #expect(d.value.sum(axis: 1).maxAbsDifference(Tensor<Double>.ones([6])) < 1e-12) }
        for c in w.combine { #expect(c.value.sum(axis: 1).maxAbsDifference(Tensor<Double>.ones([4])) < 1e-12) }
        let out = l(Variable(x), .inference, options: grouped)
        #expect(out.statistics.tokensPerExpert == [8, 8, 8])
        #expect(out.routing.weights.value.reshaped([8, 3]).sum(axis: 1).maxAbsDifference(Tensor<Double>.ones([8])) < 1e-12)
        // Groups do not mix: the second sequence's tokens leave the first's outputs alone.
        var y = x.scalars
        for i in 24..<48 { y[i] += 1 }
        let moved = l(Variable(Tensor(shape: [8, 6], y)), .inference, options: grouped).output.value
        #expect(moved.scalars[0..<24] == out.output.value.scalars[0..<24])
    }

    @Test func causalDecodersMustOptInAndThenSeeTheFuture() throws {
        var c = MoEConfig(hiddenSize: 6, expertHiddenSize: 5, numExperts: 3, expertsPerToken: 1, router: .soft)
        var rng = RandomGenerator(seed: 1)
        #expect(throws: ConfigError.self) { try MoELayer<Double>(config: c, path: "", causal: true, rng: &rng) }
        c.allowNonCausalRouting = true
        let l = try layer(causal: true)
        // With the opt-in, changing the last token of a sequence changes the output at its first position: the leak.
        let before = l(Variable(x), .inference, options: grouped).output.value
        var y = x.scalars
        for i in 18..<24 { y[i] += 0.5 }
        let after = l(Variable(Tensor(shape: [8, 6], y)), .inference, options: grouped).output.value
        #expect(zip(before.scalars[0..<6], after.scalars[0..<6]).map { abs($0 - $1) }.max()! > 1e-6)
    }

    @Test func balancingTermsAreRefused() {
        var c = MoEConfig(hiddenSize: 6, expertHiddenSize: 5, numExperts: 3, expertsPerToken: 1, router: .soft)
        c.auxLossCoef = 0.01
        #expect(throws: ConfigError.self) { try c.validate() }
        c.auxLossCoef = 0
        c.slotsPerExpert = 0
        #expect(throws: ConfigError.self) { try c.validate() }
    }
}
