import MoETestSupport
import Testing

@Suite("optimizers and schedules")
struct OptimizerTests {
    func param(_ v: Double) -> Parameter<Double> { Parameter("w", Tensor(shape: [1], [v])) }

    @Test func adamWMatchesHandComputedSteps() {
        // p = 1, lr = 0.1, wd = 0.01, gradients 0.5 then -1 (values worked out by hand from the update rule).
        let p = param(1)
        var opt = AdamW<Double>(beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01)
        opt.step([p], gradients: ["w": Tensor(shape: [1], [0.5])], lr: 0.1)
        #expect(abs(p.value[0] - 0.899000002) < 1e-12)
        opt.step([p], gradients: ["w": Tensor(shape: [1], [-1])], lr: 0.1)
        #expect(abs(p.value[0] - 0.9347113542385653) < 1e-12)
        #expect(opt.stepCount == 2)
    }

    @Test func sgdMomentumMatchesHandComputedSteps() {
        let p = param(1)
        var opt = SGD<Double>(momentum: 0.9)
        opt.step([p], gradients: ["w": Tensor(shape: [1], [0.5])], lr: 0.1)
        #expect(abs(p.value[0] - 0.95) < 1e-15)  // buf = 0.5
        opt.step([p], gradients: ["w": Tensor(shape: [1], [-1])], lr: 0.1)
        #expect(abs(p.value[0] - 1.005) < 1e-15)  // buf = 0.9 * 0.5 - 1 = -0.55

        let q = param(1)
        var nesterov = SGD<Double>(momentum: 0.9, weightDecay: 0.1, nesterov: true)
        nesterov.step([q], gradients: ["w": Tensor(shape: [1], [0.5])], lr: 0.1)
        // g = 0.5 + 0.1 * 1 = 0.6; buf = 0.6; g' = 0.6 + 0.9 * 0.6 = 1.14; p = 1 - 0.114
        #expect(abs(q.value[0] - 0.886) < 1e-15)
    }

    @Test func parametersWithoutGradientsAreUntouched() {
        let p = param(2)
        var opt = AdamW<Double>()
        opt.step([p], gradients: [:], lr: 0.1)
        #expect(p.value[0] == 2)
    }

    @Test func clipByGlobalNorm() {
        var grads: [String: Tensor<Double>] = ["a": Tensor(shape: [2], [3, 0]), "b": Tensor(shape: [1], [4])]
        let norm = clipGradientNorm(&grads, maxNorm: 1)
        #expect(norm == 5)
        #expect(abs(grads["a"]![0] - 0.6) < 1e-6)
        #expect(abs(grads["b"]![0] - 0.8) < 1e-6)
        var small: [String: Tensor<Double>] = ["a": Tensor(shape: [1], [0.5])]
        clipGradientNorm(&small, maxNorm: 1)
        #expect(small["a"]![0] == 0.5)
    }

    @Test func warmupThenCosine() {
        let s = WarmupCosine(peak: 1, minimum: 0.1, warmup: 10, total: 110)
        #expect(abs(s(0) - 0.1) < 1e-12)
        #expect(abs(s(9) - 1) < 1e-12)
        #expect(abs(s(10) - 1) < 1e-12)
        #expect(abs(s(60) - 0.55) < 1e-12)
        #expect(abs(s(110) - 0.1) < 1e-12)
        #expect(s(35) > s(85))
    }
}
