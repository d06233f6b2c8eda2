import Foundation
import MoETestSupport
import Testing

@Suite("capacity, balancing and configuration")
struct CapacityAndBalancingTests {
    let x = TestSupport.randn([12, 6], seed: 7)

    @Test func capacityFormula() {
        #expect(Capacity.capacity(assignments: 24, experts: 4, factor: 1.0, minimum: 0) == 6)
        #expect(Capacity.capacity(assignments: 24, experts: 4, factor: 1.25, minimum: 0) == 8)
        #expect(Capacity.capacity(assignments: 10, experts: 4, factor: 0.1, minimum: 2) == 2)
    }

    @Test func positionPolicyKeepsFirstChoicesAndEarliestTokens() {
        let layer = makeLayer(.softmaxTopK, e: 4, k: 2) { c in
            c.capacityFactor = 0.5
            c.dropPolicy = .position
        }
        let out = layer(Variable(x), .inference, options: RouteOptions(training: true))
        let r = out.routing
        let cap = Capacity.capacity(assignments: 24, experts: 4, factor: 0.5, minimum: 0)
        #expect(r.tokensPerExpert.allSatisfy { $0 <= cap })
        // An expert keeps first choices before any second choice, and earlier tokens first.
        for e in 0..<4 {
            let firsts = (0..<12).filter { r.experts[2 * $0] == e }.map { 2 * $0 }
            let seconds = (0..<12).filter { r.experts[2 * $0 + 1] == e }.map { 2 * $0 + 1 }
            let expected = Array((firsts + seconds).prefix(cap))
            #expect((0..<24).filter { r.kept[$0] && r.experts[$0] == e } == expected.sorted())
        }
        #expect(out.statistics.droppedFraction == Double(24 - r.kept.filter { $0 }.count) / 24)
        // Evaluation uses the evaluation factor: none here, so dropless.
        #expect(layer(Variable(x), .inference).routing.kept.allSatisfy { $0 })
    }

    @Test func probabilityPolicyKeepsTheMostProbable() {
        let layer = makeLayer(.softmaxTopK, e: 4, k: 1) { c in
            c.evalCapacityFactor = 0.5
            c.dropPolicy = .probability
        }
        let r = layer(Variable(x), .inference).routing
        let p = r.scores!.value
        for e in 0..<4 {
            let mine = (0..<12).filter { r.experts[$0] == e }
            let best = mine.sorted { p[$0, e] > p[$1, e] }.prefix(2)
            #expect(Set(mine.filter { r.kept[$0] }) == Set(best))
        }
    }

    @Test func droppedTokensPassThroughTheResidualUnchanged() {
        let layer = makeLayer(.switchTop1, e: 4, k: 1) { $0.evalCapacityFactor = 0.34 }
        let out = layer(Variable(x), .inference)
        let dropped = (0..<12).filter { !out.routing.kept[$0] }
        #expect(!dropped.isEmpty)
        let residual = (Variable(x) + out.output).value
        for t in dropped {
            for j in 0..<6 {
                #expect(out.output.value[t, j] == 0)
                #expect(residual[t, j] == x[t, j])
            }
        }
    }

    @Test func switchLossMatchesTheFormulaPooledAndMasked() {
        let a = makeLayer(.softmaxTopK, e: 4, k: 2, seed: 1), b = makeLayer(.softmaxTopK, e: 4, k: 2, seed: 2)
        let ra = a(Variable(x), .inference).routing, rb = b(Variable(x), .inference).routing
        let mask = (0..<12).map { $0 % 5 != 0 }
        // Hugging Face's load_balancing_loss_func over the concatenated layers, written out.
        var f = [Double](repeating: 0, count: 4), p = [Double](repeating: 0, count: 4)
        var valid = 0.0
        for r in [ra, rb] {
            let probs = r.logits!.value.softmax()
            for n in 0..<12 where mask[n] {
                valid += 1
                for j in 0..<2 { f[r.experts[2 * n + j]] += 1 }
                for i in 0..<4 { p[i] += probs[n, i] }
            }
        }
        let expected = 4 * (0..<4).reduce(0.0) { $0 + f[$1] / valid * p[$1] / valid }
        #expect(abs(Balancing.switchLoss([ra, rb], mask: mask).value.item - expected) < 1e-12)
        // Perfect balance with uniform probabilities gives K.
        #expect(abs(expected - 2) < 1)
    }

    @Test func zLossAndCVSquared() {
        let logits = Variable(Tensor<Double>(shape: [2, 2], [0, 0, 1, 2]))
        let lse = [Double.log(2), Double.log(Double.exp(1) + Double.exp(2))]
        #expect(abs(Balancing.zLoss(logits).value.item - (lse[0] * lse[0] + lse[1] * lse[1]) / 2) < 1e-12)
        let v = Variable(Tensor<Double>(shape: [4], [1, 2, 3, 6]))
        #expect(abs(Balancing.cvSquared(v).value.item - (14.0 / 3) / 9) < 1e-9)
        #expect(Balancing.cvSquared(Variable(Tensor<Double>(shape: [3], [2, 2, 2]))).value.item == 0)
    }

    @Test func sequenceLossMatchesDeepSeekFormula() {
        let layer = makeLayer(.grouped, e: 4, k: 2) { c in
            c.scoreFunction = .sigmoid
            c.sequenceAuxLossCoef = 1
        }
        let out = layer(Variable(x), .inference, options: RouteOptions(sequenceLength: 6))
        let r = out.routing, s = r.scores!.value
        var total = 0.0
        for seq in 0..<2 {
            for i in 0..<4 {
                var count = 0.0, pi = 0.0
                for t in (seq * 6)..<(seq * 6 + 6) {
                    if r.experts[2 * t] == i || r.experts[2 * t + 1] == i { count += 1 }
                    pi += s[t, i] / (0..<4).reduce(0.0) { $0 + s[t, $1] }
                }
                total += (4.0 / (2 * 6) * count) * (pi / 6)
            }
        }
        #expect(abs(out.losses.sequenceLoss!.value.item - total / 2) < 1e-12)
        #expect(abs(out.losses.total!.value.item - total / 2) < 1e-12)
    }

    @Test func biasUpdateMovesTheLoadTowardBalance() {
        let layer = makeLayer(.grouped, d: 6, e: 8, k: 2) { c in
            c.scoreFunction = .sigmoid
            c.selectionBias = true
            c.biasUpdateRate = 0.01
        }
        // Skew the router: expert 0 and 1 get a large logit offset for every token.
        let g = layer.router.gate!.weight
        let tokens = Variable(TestSupport.randn([512, 6], seed: 9) + Tensor(1))
        g.value = g.value.scaled(by: 0.3)
        for j in 0..<6 { g.value[0, j] += 1; g.value[1, j] += 1 }
        let before = layer(tokens, .inference).statistics
        for _ in 0..<300 {
            let s = layer(tokens, .inference).statistics
            SelectionBiasBalancer.update(layer.router, tokensPerExpert: s.tokensPerExpert)
        }
        let after = layer(tokens, .inference).statistics
        #expect(before.loadCV > 0.8)
        #expect(after.loadCV < before.loadCV / 4)
        #expect(after.unusedExperts == 0)
    }

    @Test func invalidRouterConfigurationsSayWhatToChange() {
        func error(_ edit: (inout MoEConfig) -> Void) -> String? {
            var c = MoEConfig(hiddenSize: 8, expertHiddenSize: 8, numExperts: 8, expertsPerToken: 2, router: .grouped)
            edit(&c)
            do { try c.validate() } catch { return error.description }
            return nil
        }
        #expect(error { $0.expertsPerToken = 9 } == "invalid num_experts_per_tok = 9: k must be between 1 and num_experts (8)")
        #expect(error { $0.numGroups = 4; $0.topKGroups = 5 } == "invalid topk_group = 5: topk_group must be between 1 and n_group (4)")
        #expect(error { $0.numGroups = 3 } == "invalid n_group = 3: num_experts (8) must divide into n_group groups; choose a divisor of 8")
        #expect(error { $0.numGroups = 4; $0.topKGroups = 1; $0.expertsPerToken = 3 }
            == "invalid num_experts_per_tok = 3: k exceeds the experts in the topk_group selected groups (2); raise topk_group")
        #expect(error { $0.router = .switchTop1 } == "invalid num_experts_per_tok = 2: the switch router is top-1: set it to 1")
        #expect(error { $0.capacityFactor = 0 } == "invalid capacity_factor = 0.0: use a positive factor, or omit it for dropless routing")
        #expect(error { $0.router = .softmaxTopK; $0.selectionBias = true } != nil)
        #expect(error { _ in } == nil)
    }

    @Test func configDecodesHuggingFaceKeysWithDefaults() throws {
        let json = #"{"hidden_size": 16, "moe_intermediate_size": 8, "num_experts": 64, "num_experts_per_tok": 6, "router": "grouped", "n_group": 8, "topk_group": 3, "scoring_func": "sigmoid", "routed_scaling_factor": 2.5}"#
        let c = try JSONDecoder().decode(MoEConfig.self, from: Data(json.utf8))
        #expect(c.numGroups == 8 && c.topKGroups == 3 && c.scoreFunction == .sigmoid && c.routedScalingFactor == 2.5)
        #expect(c.capacityFactor == nil && c.normalizeTopK && c.expertActivation == .swiglu)
        let round = try JSONDecoder().decode(MoEConfig.self, from: JSONEncoder().encode(c))
        #expect(round == c)
    }
}
