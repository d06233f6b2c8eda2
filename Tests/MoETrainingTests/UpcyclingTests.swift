import Foundation
import MoETestSupport
import Testing

/// Sparse upcycling: before any training the MoE computes the dense model's function.
@Suite("Sparse upcycling")
struct UpcyclingTests {
    static func dense() -> TransformerConfig {
        DefaultModel.config(dense: true, dim: 16, layers: 3, heads: 2, kvHeads: 1, topK: 2, expertHidden: 8)  // F = 16
    }

    /// A dense model with trained-looking (non-initial) weights: a few steps of training.
    static func trainedDense() throws -> MoETransformer<Float> {
        var c = TrainConfig()
        (c.steps, c.batch, c.sequence, c.warmup) = (6, 2, 16, 1)
        let t = Trainer(model: try MoETransformer<Float>(dense(), seed: 4), config: c, data: TextDataset(seed: 3, documents: 300), outDir: nil)
        for _ in 0..<6 { t.step() }
        return t.model
    }

    static let ids = [10, 40, 99, 7, 120, 64, 33, 80, 1, 2, 3, 101]

    @Test(arguments: [(1, 4, Upcycling.Placement.every), (1, 8, .everyOther), (2, 8, .every), (4, 16, .everyOther), (16, 64, .every)])
    func stepZeroComputesTheDenseFunction(_ g: Int, _ e: Int, _ placement: Upcycling.Placement) throws {
        let dense = try Self.trainedDense()
        var o = Upcycling.Options(experts: e)
        o.granularity = g
        o.placement = placement
        let moe = try Upcycling.upcycle(dense, o)
        #expect(moe.moeLayers.count == (placement == .every ? 3 : 1))
        #expect(moe.moeLayers[0].config.expertsPerToken == 2 * g && moe.moeLayers[0].config.expertHiddenSize == 16 / g)
        let a = dense(ids: Self.ids, batch: 2, .inference).logits.value
        let b = moe(ids: Self.ids, batch: 2, .inference).logits.value
        #expect(a.maxAbsDifference(b) < 1e-5, "\(a.maxAbsDifference(b))")
        // The router is new and the experts were not all picked alike: the equality is not a degenerate one.
        let load = moe(ids: Self.ids, batch: 2, .inference).moe[0].statistics.tokensPerExpert
        #expect(load.filter { $0 > 0 }.count > 2 * g)
    }

    @Test func trainingMovesAwayFromTheDenseModel() throws {
        let dense = try Self.trainedDense()
        let moe = try Upcycling.upcycle(dense, Upcycling.Options(experts: 4))
        var c = TrainConfig()
        (c.steps, c.batch, c.sequence, c.warmup) = (3, 2, 16, 1)
        let t = Trainer(model: moe, config: c, data: TextDataset(seed: 3, documents: 300), outDir: nil)
        for _ in 0..<3 { t.step() }
        let a = dense(ids: Self.ids, batch: 2, .inference).logits.value, b = moe(ids: Self.ids, batch: 2, .inference).logits.value
        #expect(a.maxAbsDifference(b) > 1e-3)
    }

    @Test func checkpointKeepsTheTrainerStateWithANewOptimizer() throws {
        let dir = TestSupport.temporaryDirectory().path
        var c = TrainConfig()
        (c.steps, c.batch, c.sequence, c.warmup, c.checkpointEvery) = (5, 2, 16, 1, 5)
        let data = TextDataset(seed: 3, documents: 300)
        let t = Trainer(model: try MoETransformer<Float>(Self.dense(), seed: 4), config: c, data: data, outDir: dir)
        for _ in 0..<5 { t.step() }
        try t.saveCheckpoint(dir)
        let (_, model, opt, state) = try Upcycling.upcycle(checkpoint: dir + "/checkpoints/" + TrainCheckpoint.name(step: 5), Upcycling.Options(experts: 4))
        #expect(state.step == 5 && state.adamSteps == 0 && opt.stepCount == 0 && opt.m.isEmpty)
        #expect(state.sampler == t.state.sampler && state.train == t.state.train)
        #expect(model.config.moe?.numExperts == 4)
    }

    @Test func badRequestsAreRefused() throws {
        let dense = try MoETransformer<Float>(Self.dense(), seed: 1)
        func message(_ edit: (inout Upcycling.Options) -> Void, model: MoETransformer<Float>? = nil) -> String {
            var o = Upcycling.Options(experts: 8)
            edit(&o)
            do { _ = try Upcycling.upcycle(model ?? dense, o); return "" } catch { return "\(error)" }
        }
        #expect(message { $0.granularity = 3 }.contains("granularity 3 does not divide the FFN width 16; use one of 1, 2, 4, 8, 16"))
        #expect(message { $0.experts = 6; $0.granularity = 4 }.contains("do not form groups of 4 shards"))
        #expect(message { $0.topK = 3; $0.granularity = 2 }.contains("top-k 3 must be a multiple of the granularity 2"))
        let moe = try MoETransformer<Float>(DefaultModel.config(dim: 16, layers: 1, heads: 2, kvHeads: 1, experts: 4, expertHidden: 8), seed: 1)
        #expect(message({ _ in }, model: moe).contains("already an MoE"))
        #expect(message { _ in }.isEmpty)
    }
}
