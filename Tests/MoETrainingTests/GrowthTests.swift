import Foundation
import MoETestSupport
import Testing

/// Lifelong expert growth: old experts kept (and frozen on request), the growth recorded, resume bit-exact.
@Suite("Lifelong expert growth")
struct GrowthTests {
    static let config = DefaultModel.config(dim: 16, layers: 2, heads: 2, kvHeads: 1, experts: 4, topK: 2, expertHidden: 8, auxLossCoef: 0.01)
    static let dataA = TextDataset(seed: 3, documents: 300)
    static let dataB = TextDataset(seed: 9, documents: 300)

    static func train(_ steps: Int) -> TrainConfig {
        var c = TrainConfig()
        (c.steps, c.batch, c.sequence, c.warmup, c.checkpointEvery) = (steps, 2, 16, 1, 1000)
        return c
    }

    /// A run trained 5 steps on A, then grown by 2 experts for B (distilling from the model before the growth
    /// with coefficient `distill`).
    static func grown(freeze: Bool, distill: Double = 0) throws -> (before: MoETransformer<Float>, trainer: Trainer) {
        let t = Trainer(model: try MoETransformer<Float>(config, seed: 2), config: train(12), data: dataA, outDir: nil)
        for _ in 0..<5 { t.step() }
        let g = try Growth.grow(model: t.model, optimizer: t.optimizer, state: t.state, add: 2, freezeOld: freeze, data: dataB, seed: 7, distill: distill)
        let trainer = Trainer(model: g.model, optimizer: g.optimizer, state: g.state, data: dataB, outDir: nil)
        if distill > 0 { trainer.teacher = t.model }
        return (t.model, trainer)
    }

    @Test func distillationAddsTheTeachersTermAndResumesWithIt() throws {
        let plain = try Self.grown(freeze: true).trainer, distilled = try Self.grown(freeze: true, distill: 1).trainer
        plain.step()
        distilled.step()
        // Same weights and batch at the first step: the objectives differ by the distillation term, a cross-entropy
        // against soft targets (positive).
        #expect(distilled.stepLosses[0] > plain.stepLosses[0] + 0.1)
        let dir = TestSupport.temporaryDirectory().path
        let straight = try Self.grown(freeze: true, distill: 1).trainer
        for _ in 0..<6 { straight.step() }
        let first = try Self.grown(freeze: true, distill: 1).trainer
        for _ in 0..<3 { first.step() }
        try first.saveCheckpoint(dir)
        let ckpt = dir + "/checkpoints/" + TrainCheckpoint.name(step: 8)
        #expect(FileManager.default.fileExists(atPath: ckpt + "/teacher/model.safetensors"))
        let (model, opt, state) = try TrainCheckpoint.load(ckpt)
        let resumed = Trainer(model: model, optimizer: opt, state: state, data: Self.dataB, outDir: nil)
        resumed.teacher = try TrainCheckpoint.loadTeacher(ckpt, state: state)
        #expect(resumed.distillCoef == 1 && resumed.teacher?.config.moe?.numExperts == 4)
        for _ in 0..<3 { resumed.step() }
        #expect(first.stepLosses + resumed.stepLosses == straight.stepLosses)
        try FileManager.default.removeItem(atPath: ckpt + "/teacher")
        #expect(throws: TrainCheckpoint.CheckpointError.self) { try TrainCheckpoint.loadTeacher(ckpt, state: state) }
    }

    @Test(arguments: [true, false])
    func oldExpertsAreKeptAndFrozenOnRequest(_ freeze: Bool) throws {
        let (before, t) = try Self.grown(freeze: freeze)
        let old = before.namedParameters
        #expect(t.model.config.moe?.numExperts == 6 && t.model.config.moe?.frozenExperts == (freeze ? 4 : 0))
        #expect(t.state.growth == [ExpertGrowth(step: 5, firstNew: 4, added: 2, frozeOld: freeze, dataSource: Self.dataB.source)])
        for p in t.model.moeLayers.flatMap({ $0.experts.parameters + $0.router.parameters }) {
            #expect(Array(p.value.scalars.prefix(old[p.path]!.value.count)) == old[p.path]!.value.scalars)
        }
        for _ in 0..<4 { t.step() }
        for layer in t.model.moeLayers {
            for p in layer.experts.parameters + layer.router.parameters {
                let n = old[p.path]!.value.count
                let oldPart = Array(p.value.scalars.prefix(n)), newPart = Array(p.value.scalars.dropFirst(n))
                #expect((oldPart == old[p.path]!.value.scalars) == freeze, "\(p.path)")
                #expect(newPart != Array(try Self.grown(freeze: freeze).trainer.model.namedParameters[p.path]!.value.scalars.dropFirst(n)))
            }
        }
        // Everything else trains as before.
        #expect(t.model.namedParameters["embed_tokens.weight"]!.value != old["embed_tokens.weight"]!.value)
    }

    @Test func resumeAfterGrowthIsBitExact() throws {
        let dir = TestSupport.temporaryDirectory().path
        let straight = try Self.grown(freeze: true).trainer
        for _ in 0..<6 { straight.step() }
        let first = try Self.grown(freeze: true).trainer
        for _ in 0..<3 { first.step() }
        try first.saveCheckpoint(dir)
        let (model, opt, state) = try TrainCheckpoint.load(dir + "/checkpoints/" + TrainCheckpoint.name(step: 8))
        #expect(state.growth == first.state.growth && opt.frozenRows == first.optimizer.frozenRows && !opt.frozenRows.isEmpty)
        let resumed = Trainer(model: model, optimizer: opt, state: state, data: Self.dataB, outDir: nil)
        for _ in 0..<3 { resumed.step() }
        #expect(first.stepLosses + resumed.stepLosses == straight.stepLosses)
    }

    @Test func domainDatasetsHoldOnlyTheirDomain() {
        let code = TextDataset(seed: 3, documents: 400, domains: [.code])
        #expect(!code.validationDocuments.isEmpty && code.validationDocuments.allSatisfy { $0.domain == .code })
        #expect(code.source.hasSuffix("documents: code)"))
        let all = TextDataset(seed: 3, documents: 400)
        #expect(code.train.count < all.train.count / 2 && Set(all.validationDocuments.map(\.domain)).count == 5)
    }

    @Test func badGrowthIsRefused() throws {
        let dense = Trainer(model: try MoETransformer<Float>(DefaultModel.config(dense: true, dim: 16, layers: 1, heads: 2, kvHeads: 1, expertHidden: 8), seed: 1), config: Self.train(2), data: Self.dataA, outDir: nil)
        #expect(throws: Growth.GrowthError.self) { try Growth.grow(model: dense.model, optimizer: dense.optimizer, state: dense.state, add: 2, freezeOld: false, data: nil, seed: 1) }
        let moe = Trainer(model: try MoETransformer<Float>(Self.config, seed: 1), config: Self.train(2), data: Self.dataA, outDir: nil)
        #expect(throws: Growth.GrowthError.self) { try Growth.grow(model: moe.model, optimizer: moe.optimizer, state: moe.state, add: 0, freezeOld: true, data: nil, seed: 1) }
    }
}
