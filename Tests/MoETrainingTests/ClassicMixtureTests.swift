import MoETestSupport
import Testing

@Suite("mixture of local experts (Jacobs et al. 1991)")
struct ClassicMixtureTests {
    @Test func vowelDataIsSeededAndShaped() {
        let a = VowelData(seed: 3), b = VowelData(seed: 3), c = VowelData(seed: 4)
        #expect(a.train.count == 76 * 10 * 2)
        #expect(a.test.count == a.train.count)
        #expect(a.train.map(\.formants) == b.train.map(\.formants))
        #expect(a.train.map(\.formants) != c.train.map(\.formants))
        #expect(Set(a.train.map(\.speaker)).isDisjoint(with: Set(a.test.map(\.speaker))))
        // Group means stay near the published means (men's /i/ F1 = 270 Hz, F2 = 2290 Hz).
        let menI = a.train.filter { $0.group == 0 && $0.vowel == 0 }
        let f1 = menI.reduce(0) { $0 + $1.formants[0] } / Double(menI.count)
        #expect(abs(f1 - 270) < 20)
    }

    @Test func lossesMatchThePaperFormulas() {
        var rng = RandomGenerator(seed: 2)
        let model = ClassicMixture<Double>(inputs: 3, outputs: 2, experts: 3, rng: &rng)
        let x = TestSupport.randn([4, 3], seed: 5)
        let d = Tensor<Double>(shape: [4, 2], [1, 0, 0, 1, 1, 0, 0, 1])
        let (lg, o) = model.forward(Variable(x), .inference)
        var coop = 0.0, comp = 0.0
        for n in 0..<4 {
            var blend = [0.0, 0.0], mix = 0.0
            for e in 0..<3 {
                let p = Double.exp(lg.value[n, e])
                var sq = 0.0
                for c in 0..<2 {
                    blend[c] += p * o.value[n, e, c]
                    sq += (d[n, c] - o.value[n, e, c]) * (d[n, c] - o.value[n, e, c])
                }
                mix += p * Double.exp(-0.5 * sq)
            }
            coop += (0..<2).reduce(0) { $0 + (d[n, $1] - blend[$1]) * (d[n, $1] - blend[$1]) }
            comp += -Double.log(mix)
        }
        let lc = model.loss(.cooperative, x: Variable(x), target: Variable(d), .inference).value.item
        let lk = model.loss(.competitive, x: Variable(x), target: Variable(d), .inference).value.item
        #expect(abs(lc - coop / 4) < 1e-12)
        #expect(abs(lk - comp / 4) < 1e-12)
    }

    /// The paper's central claim, on a fixed seed: the competitive loss gives each input to one expert
    /// (localization); the cooperative loss blends several experts per input.
    @Test func competitiveLossLocalizesAndCooperativeDoesNot() {
        var config = ClassicConfig()
        config.seed = 1
        let data = VowelData(seed: 1)
        let comp = ClassicExperiment.run(config, loss: .competitive, data: data)
        let coop = ClassicExperiment.run(config, loss: .cooperative, data: data)
        let rc = LocalizationReport(gates: comp.testGates, samples: comp.testSamples, experts: 4)
        let ro = LocalizationReport(gates: coop.testGates, samples: coop.testSamples, experts: 4)
        // Both learn the task.
        #expect(comp.testAccuracy > 0.9)
        #expect(coop.testAccuracy > 0.9)
        // Competitive: nearly every input is dominated by one expert, and the experts split the inputs.
        #expect(rc.dominatedFraction > 0.9)
        #expect(rc.effectiveExpertsPerInput < 1.15)
        #expect(rc.expertsInUse() >= 3)
        // Each (vowel, group) cell is owned by one expert.
        #expect(rc.cells.filter { $0.share > 0.8 }.count >= 27)
        // Cooperative: many inputs are shared between experts.
        #expect(ro.dominatedFraction < 0.75)
        #expect(ro.effectiveExpertsPerInput > rc.effectiveExpertsPerInput + 0.2)
    }

    @Test func sameSeedSameNumbers() {
        var config = ClassicConfig()
        config.steps = 50
        let data = VowelData(seed: 9)
        let a = ClassicExperiment.run(config, loss: .competitive, data: data)
        let b = ClassicExperiment.run(config, loss: .competitive, data: data)
        #expect(a.finalLoss == b.finalLoss)
        #expect(a.testGates == b.testGates)
    }

    @Test func invalidConfigIsRejectedWithAHint() {
        var config = ClassicConfig()
        config.experts = 0
        #expect(throws: ConfigError("experts", 0, "use between 1 and 64 experts")) { try config.validate() }
        config.experts = 4
        config.learningRate = -1
        #expect(throws: ConfigError.self) { try config.validate() }
    }
}
