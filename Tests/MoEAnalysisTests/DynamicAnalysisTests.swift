import Foundation
import MoE
import MoEAnalysis
import MoEAutograd
import MoEInference
import MoEModels
import MoETensor
import Testing

/// The text-driven analyses on the mixtral fixture: the forced-all-experts outputs against a naive per-token loop,
/// the router overrides, and the bookkeeping of the dynamic analysis (loads, ranks, weights, losses).
@Suite struct DynamicAnalysisTests {
    static let fixture = WeightStatisticsTests.tests.appendingPathComponent("Fixtures/hf/mixtral").path
    static let tokens = [3, 17, 99, 4, 56, 23, 77, 8, 120, 64, 5, 33]

    /// Each expert on each token, computed from the widened weights one token at a time in Double: silu(g x) (u x) then down.
    @Test func forcedExpertOutputsMatchANaiveLoop() throws {
        let model = try InferenceModel(directory: Self.fixture)
        let session = InferenceSession(model: model, capacity: Self.tokens.count, prefill: .f32)
        var checked = 0
        session.moeObserver = { l, h, _ in
            let t = h.shape[0], d = h.shape[1], x = h.scalars
            for e in 0..<model.expertCount(layer: l) {
                let w = model.expertMatrices(layer: l, expert: e), f = w.width
                let y = session.expertOutput(layer: l, expert: e, h).scalars
                let act = session.expertGateActivations(layer: l, expert: e, h).scalars
                for r in 0..<t {
                    var hidden = [Double](repeating: 0, count: f)
                    for i in 0..<f {
                        var g = 0.0, u = 0.0
                        for j in 0..<d { g += Double(w.gate![i * d + j]) * Double(x[r * d + j]); u += Double(w.up[i * d + j]) * Double(x[r * d + j]) }
                        let silu = g / (1 + Foundation.exp(-g))
                        #expect(abs(Double(act[r * f + i]) - silu) < 1e-5, "layer \(l) expert \(e) token \(r) neuron \(i) activation")
                        hidden[i] = silu * u
                    }
                    for j in 0..<d {
                        var s = 0.0
                        for i in 0..<f { s += Double(w.down[j * f + i]) * hidden[i] }
                        #expect(abs(Double(y[r * d + j]) - s) < 1e-5, "layer \(l) expert \(e) token \(r) output \(j)")
                    }
                }
                checked += 1
            }
        }
        _ = session.forward(Self.tokens)
        #expect(checked == 8)  // 2 layers x 4 experts
    }

    @Test func routerOverridesRemoveExpertsAndChangeK() throws {
        let model = try InferenceModel(directory: Self.fixture)
        let router = try #require(model.router(layer: 0))
        var rng = RandomGenerator(seed: 9)
        let h = Variable(Tensor<Float>.normal([20, model.config.hiddenSize], mean: 0, std: 1, rng: &rng))
        let removed = try router.with(removed: [1, 2])
        let r = removed.route(h, .inference, .inference)
        #expect(!r.experts.contains(1) && !r.experts.contains(2))
        #expect(r.experts.count == 40)  // still top-2 per token, from experts 0 and 3
        let k3 = try router.with(topK: 3).route(h, .inference, .inference)
        #expect(k3.experts.count == 60)
        // The unchanged router's choices are reproduced by an override that changes nothing.
        let same = try router.with().route(h, .inference, .inference)
        #expect(same.experts == router.route(h, .inference, .inference).experts)
        #expect(throws: (any Error).self) { try router.with(removed: [0, 1, 2]) }  // one expert left for top-2
        #expect(throws: (any Error).self) { try router.with(topK: 5) }
    }

    @Test func dynamicAnalysisBookkeeping() throws {
        let model = try InferenceModel(directory: Self.fixture)
        let pieces = Self.tokens.map { "t\($0)" }
        let d = try DynamicAnalysis.run(model, tokens: Self.tokens, pieces: pieces, layers: [0, 1], activationTokens: [0, 5], context: 8)
        let t = Self.tokens.count, e = 4, k = 2
        #expect(d.outputSimilarity.count == 2 && d.rankCounts.count == 2 && d.routing.count == 2)
        for r in d.routing {
            #expect(r.load.reduce(0, +) == t * k)
            #expect(r.weights.count == t)
            for row in r.weights { #expect(abs(row.reduce(0, +) - 1) < 1e-5) }  // mixtral renormalizes its top-k
            #expect(r.firstChoice.count == t)
        }
        for c in d.rankCounts {
            #expect(c.counts.count == e)
            for i in 0..<e { #expect(c.counts[i].reduce(0, +) == t) }  // each token has one expert at each score rank
            #expect(c.topScoreLargestNorm == Double(c.counts[0][0]) / Double(t))
        }
        for s in d.outputSimilarity { for i in 0..<e { #expect(abs(s.cosine[i][i] - 1) < 1e-12 && abs(s.angular[i][i] - 1) < 1e-6) } }
        #expect(d.activations.count == 4)  // 2 layers x 2 positions
        // The loss with the model's own routing, in windows of 8 tokens (8 and 4: 7 + 3 predictions), is what the
        // perplexity command's token-by-token decode computes on each window.
        let w1 = Perplexity.run(model: model, baseline: nil, tokens: Array(Self.tokens[0..<8]), context: 7)
        let w2 = Perplexity.run(model: model, baseline: nil, tokens: Array(Self.tokens[8...]), context: 3)
        #expect(abs(d.loss - (7 * w1.crossEntropy + 3 * w2.crossEntropy) / 10) < 1e-4)
        // Top-k = 2 is the model's own setting; removal covers every expert of both layers.
        #expect(abs((d.topK.first { $0.k == 2 }?.loss ?? .nan) - d.loss) < 1e-9)
        #expect(d.removal.count == 8)
        #expect(d.topK.count == 4)
    }

    /// Every dynamic number against the numpy forward of scripts/analysis_fixtures.py (its own forward, checked
    /// there against transformers' logits), on a text of 12 tokens in windows of 8.
    @Test(arguments: ["mixtral", "qwen2_moe"])
    func dynamicAnalysesMatchNumpy(family: String) throws {
        let want = (WeightStatisticsTests.expected["dynamic"] as! [[String: Any]]).first { $0["family"] as! String == family }!
        let model = try InferenceModel(directory: WeightStatisticsTests.tests.appendingPathComponent("Fixtures/hf/\(family)").path)
        let tokens = WeightStatisticsTests.ints(want["tokens"])
        let d = try DynamicAnalysis.run(model, tokens: tokens, pieces: tokens.map(String.init), layers: [0, 1], activationTokens: [0, 5],
                                        context: want["context"] as! Int)
        func near(_ a: Double, _ b: Any?, _ tol: Double, _ what: String) {
            let x = (b as! NSNumber).doubleValue
            #expect(abs(a - x) <= tol, "\(family) \(what): \(a) vs numpy \(x)")
        }
        near(d.loss, want["loss"], 1e-4, "loss")
        for (k, v) in (want["top_k"] as! [Any]).enumerated() { near(d.topK[k].loss ?? .nan, v, 1e-4, "top-\(k + 1) loss") }
        for layer in want["layers"] as! [[String: Any]] {
            let l = layer["layer"] as! Int
            let o = try #require(d.outputSimilarity.first { $0.layer == l })
            #expect(WeightStatisticsTests.close(o.cosine, WeightStatisticsTests.matrix(layer["cosine"]), 1e-4), "\(family) layer \(l) output cosine")
            #expect(WeightStatisticsTests.close(o.angular, WeightStatisticsTests.matrix(layer["angular"]), 1e-4), "\(family) layer \(l) angular")
            near(o.meanAngular, layer["mean_angular"], 1e-4, "layer \(l) mean angular")
            let r = try #require(d.rankCounts.first { $0.layer == l })
            #expect(r.counts == (layer["counts"] as! [[Int]]), "\(family) layer \(l) rank counts")
            near(r.topScoreLargestNorm, layer["top_score_largest_norm"], 1e-12, "layer \(l) top score has largest norm")
            let g = try #require(d.routing.first { $0.layer == l })
            #expect(WeightStatisticsTests.close(g.weights, WeightStatisticsTests.matrix(layer["weights"]), 1e-5), "\(family) layer \(l) routing weights")
            #expect(g.load == WeightStatisticsTests.ints(layer["load"]), "\(family) layer \(l) load")
            #expect(WeightStatisticsTests.close([g.saliency], [WeightStatisticsTests.doubles(layer["saliency"])], 1e-4), "\(family) layer \(l) saliency")
            for a in layer["activations"] as! [[String: Any]] {
                let p = a["token"] as! Int
                let mine = try #require(d.activations.first { $0.layer == l && $0.token == p })
                #expect(WeightStatisticsTests.close(mine.values, WeightStatisticsTests.matrix(a["values"]), 1e-5), "\(family) layer \(l) token \(p) gate activations")
            }
            for (x, v) in (layer["removal"] as! [Any]).enumerated() {
                let mine = try #require(d.removal.first { $0.layer == l && $0.expert == x })
                near(mine.loss, v, 1e-4, "layer \(l) without expert \(x)")
            }
        }
    }

    /// The reference model (every family swift-moe loads) as an analysis subject gives the engine's numbers on the
    /// same weights.
    @Test func referencePathMatchesTheEngine() throws {
        let engine = try InferenceModel(directory: Self.fixture)
        let reference = ReferenceSubject(try HuggingFace.load(Self.fixture))
        #expect(reference.moeLayers == engine.moeLayers)
        let se = try StaticAnalysis.run(engine, layers: [0, 1]), sr = try StaticAnalysis.run(reference, layers: [0, 1])
        for (a, b) in zip(se.weightSimilarity + se.neuronSimilarity, sr.weightSimilarity + sr.neuronSimilarity) {
            #expect(a.matrix == b.matrix && WeightStatisticsTests.close(a.cosine, b.cosine, 1e-9), "\(a.layer) \(a.matrix)")
        }
        for (a, b) in zip(se.alignedSimilarity, sr.alignedSimilarity) { #expect(WeightStatisticsTests.close(a.cosine, b.cosine, 1e-9)) }
        let de = try DynamicAnalysis.run(engine, tokens: Self.tokens, pieces: [], layers: [0, 1], activationTokens: [0, 5], context: 8)
        let dr = try DynamicAnalysis.run(reference, tokens: Self.tokens, pieces: [], layers: [0, 1], activationTokens: [0, 5], context: 8)
        #expect(abs(de.loss - dr.loss) < 1e-4)
        for (a, b) in zip(de.outputSimilarity, dr.outputSimilarity) { #expect(WeightStatisticsTests.close(a.cosine, b.cosine, 1e-4)) }
        for (a, b) in zip(de.rankCounts, dr.rankCounts) { #expect(a.counts == b.counts) }
        for (a, b) in zip(de.routing, dr.routing) {
            #expect(a.load == b.load && WeightStatisticsTests.close(a.weights, b.weights, 1e-5) && WeightStatisticsTests.close([a.saliency], [b.saliency], 1e-4))
        }
        for (a, b) in zip(de.activations, dr.activations) { #expect(a.token == b.token && WeightStatisticsTests.close(a.values, b.values, 1e-5)) }
        for (a, b) in zip(de.removal, dr.removal) { #expect(abs(a.loss - b.loss) < 1e-4) }
        for (a, b) in zip(de.topK, dr.topK) { #expect(abs((a.loss ?? .nan) - (b.loss ?? .nan)) < 1e-4) }
        #expect(de.removal.count == 8 && dr.topK.count == 4)
    }
}
