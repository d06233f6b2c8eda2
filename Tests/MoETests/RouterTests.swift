import MoETestSupport
import Testing

@Suite("routers")
struct RouterTests {
    let x = Variable(TestSupport.randn([9, 6], seed: 3))

    func route(_ layer: MoELayer<Double>, _ options: RouteOptions = .inference) -> Routing<Double> {
        layer.router.route(x, .inference, options)
    }

    @Test(arguments: [RouterKind.softmaxTopK, .topKSoftmax, .noisyTopK, .gshard, .grouped, .dense])
    func normalizedWeightsSumToOne(_ kind: RouterKind) {
        let layer = makeLayer(kind, e: 4, k: 2) { c in
            if kind == .grouped { c.scoreFunction = .sigmoid; c.normalizeTopK = true }
        }
        let r = route(layer)
        let k = r.k!
        for n in 0..<9 {
            let s = (0..<k).reduce(0.0) { $0 + r.weights.value[n * k + $1] }
            #expect(abs(s - 1) < 1e-12)
        }
    }

    @Test func softmaxTopKMatchesFormula() {
        for normalize in [true, false] {
            let layer = makeLayer(.softmaxTopK, e: 5, k: 3) { $0.normalizeTopK = normalize }
            let r = route(layer)
            let p = r.logits!.value.softmax()
            for n in 0..<9 {
                let order = (0..<5).sorted { p[n, $0] > p[n, $1] }
                #expect(Array(r.experts[(n * 3)..<(n * 3 + 3)]) == Array(order.prefix(3)))
                let sum = normalize ? order.prefix(3).reduce(0.0) { $0 + p[n, $1] } : 1
                for j in 0..<3 { #expect(abs(r.weights.value[n * 3 + j] - p[n, order[j]] / sum) < 1e-12) }
            }
        }
    }

    @Test func topOneIsSwitchRouting() {
        let switchLayer = makeLayer(.switchTop1, k: 1)
        let top1 = makeLayer(.softmaxTopK, k: 1) { $0.normalizeTopK = false }
        let a = route(switchLayer), b = route(top1)
        #expect(a.experts == b.experts)
        #expect(a.weights.value == b.weights.value)
        // Switch scales the output by the chosen expert's probability: the row max of the softmax.
        let p = a.logits!.value.softmax().max(axis: 1).values
        #expect(a.weights.value.maxAbsDifference(p) < 1e-15)
    }

    @Test func topKThenSoftmaxMatchesFormula() {
        let layer = makeLayer(.topKSoftmax, e: 6, k: 2)
        let r = route(layer)
        let l = r.logits!.value
        for n in 0..<9 {
            let order = (0..<6).sorted { l[n, $0] > l[n, $1] }
            let (a, b) = (l[n, order[0]], l[n, order[1]])
            #expect(abs(r.weights.value[n * 2] - 1 / (1 + Double.exp(b - a))) < 1e-12)
        }
    }

    @Test func noisyTopKIsCleanInEvalAndNoisyInTraining() {
        let layer = makeLayer(.noisyTopK, e: 6, k: 2)
        layer.router.noise!.weight.value = TestSupport.randn([6, 6], seed: 9)
        let eval = route(layer)
        let clean = layer.router.gate!(x, .inference).value
        #expect(eval.logits!.value == clean)
        let train1 = route(layer, RouteOptions(training: true, random: RandomSource(seed: 5)))
        let train2 = route(layer, RouteOptions(training: true, random: RandomSource(seed: 5)))
        #expect(train1.logits!.value != clean)
        #expect(train1.logits!.value == train2.logits!.value)
        // KeepTopK then softmax: the weights are a softmax over the kept noisy values.
        let h = train1.logits!.value
        for n in 0..<9 {
            let (a, b) = (h[n, train1.experts[2 * n]], h[n, train1.experts[2 * n + 1]])
            #expect(abs(train1.weights.value[2 * n] - 1 / (1 + Double.exp(b - a))) < 1e-12)
        }
        // The smooth load is a probability per (token, expert): between 0 and N.
        let load = train1.smoothLoad!.value
        #expect(load.scalars.allSatisfy { $0 >= 0 && $0 <= 9 })
        #expect(abs(load.sumAll() - 18) < 9)  // about K per token
    }

    @Test func gshardSkipsWeakSecondExpertsAtRandomInTraining() {
        let layer = makeLayer(.gshard, d: 6, e: 4, k: 2)
        let big = Variable(TestSupport.randn([400, 6], seed: 4))
        let eval = layer.router.route(big, .inference, .inference)
        #expect(eval.active.allSatisfy { $0 })
        let train = layer.router.route(big, .inference, RouteOptions(training: true, random: RandomSource(seed: 1)))
        // The first choice is always used; the second with probability min(1, 2 g2).
        var expected = 0.0, skipped = 0
        for n in 0..<400 {
            #expect(train.active[2 * n])
            expected += 1 - min(1, 2 * train.weights.value[2 * n + 1])
            if !train.active[2 * n + 1] { skipped += 1 }
        }
        #expect(skipped > 0)
        #expect(abs(Double(skipped) - expected) < 4 * expected.squareRoot() + 1)
    }

    @Test func biasChangesSelectionNeverWeights() {
        let layer = makeLayer(.grouped, e: 6, k: 2) { c in
            c.scoreFunction = .sigmoid
            c.normalizeTopK = true
            c.selectionBias = true
            c.routedScalingFactor = 2.5
        }
        let before = route(layer)
        layer.router.selectionBias!.value = Tensor(shape: [6], [0, 0, 0, 0, 0, 10])  // force expert 5
        let after = route(layer)
        #expect(after.experts != before.experts)
        let s = after.scores!.value
        for n in 0..<9 {
            #expect(after.experts[2 * n] == 5)
            let chosen = [after.experts[2 * n], after.experts[2 * n + 1]]
            let sum = s[n, chosen[0]] + s[n, chosen[1]]
            // Weights are the unbiased scores of the chosen experts, normalized and scaled.
            for j in 0..<2 { #expect(abs(after.weights.value[2 * n + j] - 2.5 * s[n, chosen[j]] / sum) < 1e-12) }
        }
        // With the bias back at zero the routing is exactly what it was.
        layer.router.selectionBias!.value = .zeros([6])
        let again = route(layer)
        #expect(again.experts == before.experts)
        #expect(again.weights.value == before.weights.value)
    }

    @Test(arguments: [GroupScore.max, .top2Sum])
    func groupsConfineTheSelection(_ score: GroupScore) {
        let layer = makeLayer(.grouped, e: 8, k: 3) { c in
            c.numGroups = 4
            c.topKGroups = 2
            c.groupScore = score
        }
        let r = route(layer)
        let s = r.scores!.value
        for n in 0..<9 {
            let groupScores = (0..<4).map { g -> Double in
                let v = (0..<2).map { s[n, g * 2 + $0] }.sorted(by: >)
                return score == .max ? v[0] : v[0] + v[1]
            }
            let best = Set((0..<4).sorted { groupScores[$0] > groupScores[$1] }.prefix(2))
            let groups = Set(r.experts[(n * 3)..<(n * 3 + 3)].map { $0 / 2 })
            #expect(groups.isSubset(of: best))
            // Within the allowed groups the best three experts are taken.
            let allowed = (0..<8).filter { best.contains($0 / 2) }.sorted { s[n, $0] > s[n, $1] }
            #expect(Set(r.experts[(n * 3)..<(n * 3 + 3)]) == Set(allowed.prefix(3)))
        }
    }

    @Test func expertChoiceTakesEachExpertsTopTokens() {
        let layer = makeLayer(.expertChoice, e: 3, k: 1) { $0.expertChoiceCapacity = 2 }
        let r = route(layer)
        let cap = Router<Double>.expertChoiceCapacity(tokens: 9, experts: 3, c: 2)
        #expect(cap == 6)
        #expect(r.assignmentCount == 18)
        let p = r.logits!.value.softmax()
        for e in 0..<3 {
            let best = (0..<9).sorted { p[$0, e] > p[$1, e] }.prefix(cap)
            let mine = (0..<r.assignmentCount).filter { r.experts[$0] == e }.map { r.tokens[$0] }
            #expect(Set(mine) == Set(best))
            for a in (0..<r.assignmentCount) where r.experts[a] == e {
                #expect(r.weights.value[a] == p[r.tokens[a], e])
            }
        }
    }

    @Test func expertChoiceInACausalDecoderNeedsTheOptIn() throws {
        var c = MoEConfig(hiddenSize: 4, expertHiddenSize: 4, numExperts: 2, expertsPerToken: 1, router: .expertChoice)
        var rng = RandomGenerator(seed: 1)
        #expect(throws: ConfigError.self) { try MoELayer<Float>(config: c, causal: true, rng: &rng) }
        do {
            _ = try MoELayer<Float>(config: c, causal: true, rng: &rng)
        } catch {
            #expect(error.description.contains("allow_non_causal_routing = true"))
        }
        c.allowNonCausalRouting = true
        _ = try MoELayer<Float>(config: c, causal: true, rng: &rng)
    }

    @Test func hashRoutingIsFixedAndSpread() {
        let layer = makeLayer(.hash, e: 4, k: 1)
        let ids = Array(0..<9)
        let r = route(layer, RouteOptions(tokenIDs: ids))
        #expect(r.experts == ids.map { Router<Double>.hashExpert(tokenID: $0, experts: 4, seed: 0) })
        #expect(r.weights.value.scalars == [Double](repeating: 1, count: 9))
        #expect(layer.router.parameters.isEmpty)
        var counts = [Int](repeating: 0, count: 4)
        for t in 0..<4000 { counts[Router<Double>.hashExpert(tokenID: t, experts: 4, seed: 0)] += 1 }
        #expect(counts.allSatisfy { abs($0 - 1000) < 120 })
    }

    @Test func denseMixesEveryExpert() {
        let layer = makeLayer(.dense, e: 3, k: 1)
        let r = route(layer)
        #expect(r.assignmentCount == 27)
        #expect(r.weights.value.reshaped([9, 3]) == r.logits!.value.softmax())
    }

    @Test func jitterOnlyInTraining() {
        let layer = makeLayer(.softmaxTopK) { $0.jitterEps = 0.1 }
        let clean = layer.router.gate!(x, .inference).value
        #expect(route(layer).logits!.value == clean)
        let jittered = route(layer, RouteOptions(training: true, random: RandomSource(seed: 2))).logits!.value
        #expect(jittered != clean)
        #expect(jittered.maxAbsDifference(clean) < 0.1 * 3 * 6)
    }

    @Test func sameSeedSameRouting() {
        for kind in [RouterKind.noisyTopK, .gshard, .softmaxTopK] {
            let layer = makeLayer(kind, k: 2) { $0.jitterEps = 0.05 }
            let a = route(layer, RouteOptions(training: true, random: RandomSource(seed: 11)))
            let b = route(layer, RouteOptions(training: true, random: RandomSource(seed: 11)))
            #expect(a.experts == b.experts && a.weights.value == b.weights.value && a.active == b.active)
        }
    }
}
