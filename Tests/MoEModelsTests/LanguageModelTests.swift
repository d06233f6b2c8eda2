import Foundation
import MoETestSupport
import Testing

func tinyConfig(dense: Bool = false, router: RouterKind = .softmaxTopK) -> TransformerConfig {
    DefaultModel.config(dense: dense, dim: 16, layers: 2, heads: 2, kvHeads: 1, experts: 4, topK: 2, expertHidden: 8, router: router, auxLossCoef: 0.01)
}

func tinyTrainConfig(steps: Int) -> TrainConfig {
    var c = TrainConfig()
    c.steps = steps
    c.batch = 2
    c.sequence = 16
    c.warmup = 2
    c.logEvery = 5
    c.evalEvery = 5
    c.evalBatches = 1
    c.checkpointEvery = 1000
    return c
}

let smallData = TextDataset(seed: 3, documents: 400)

@Suite("MoE language model")
struct LanguageModelTests {
    @Test func parameterCountsAndActiveParameters() throws {
        let moe = try MoETransformer<Float>(tinyConfig(), seed: 1)
        let dense = try MoETransformer<Float>(tinyConfig(dense: true), seed: 1)
        // Per MoE layer, two of four experts (3 * 16 * 8 each) are idle per token.
        #expect(moe.parameterCount - moe.activeParameterCount == 2 * 2 * 3 * 16 * 8)
        // The dense baseline's FFN has the active width k * F: same active parameters up to the router.
        #expect(moe.activeParameterCount - dense.parameterCount == 2 * 4 * 16)
        #expect(moe.parameters.map(\.path).contains("layers.1.mlp.experts.gate_up_proj"))
        #expect(moe.parameters.map(\.path).contains("lm_head.weight"))
    }

    /// `c` at D 8 (head dim 4, experts of width 4) over a vocabulary of 11, small enough for finite differences.
    static func gradientCheckSized(_ c: TransformerConfig, layers: Int) -> TransformerConfig {
        var c = c
        c.numLayers = layers
        c.hiddenSize = 8
        c.headDim = 4
        c.moe!.hiddenSize = 8
        c.moe!.expertHiddenSize = 4
        c.vocabSize = 11
        return c
    }

    @Test func modelGradientsMatchFiniteDifferencesInDouble() throws {
        let c = Self.gradientCheckSized(tinyConfig(), layers: 1)
        let model = try MoETransformer<Double>(c, seed: 2)
        let ids = [1, 5, 3, 9, 2, 7], targets = [5, 3, 9, 2, 7, 4]
        let params = model.parameters
        let report = GradientCheck.check(params.map(\.value)) { vars in
            let ctx = ForwardContext(tape: nil, bindings: Dictionary(uniqueKeysWithValues: zip(params.map(\.path), vars)))
            let out = model(ids: ids, batch: 2, ctx)
            return Variable.crossEntropy(out.logits, targets: targets) + out.auxLoss!
        }
        #expect(report.maxError < 1e-6, "\(report)")
    }

    /// The Switch loss per layer (the default model's) is the mean of each layer's own loss; pooled (transformers')
    /// is one loss over every layer's routing; both are gradient-checked in Double through a two-layer model.
    @Test(arguments: [AuxLossScope.perLayer, .pooled])
    func switchLossScope(_ scope: AuxLossScope) throws {
        var c = tinyConfig()
        #expect(c.moe!.auxLossScope == .perLayer)
        c.hiddenSize = 8
        c.headDim = 4
        c.moe!.hiddenSize = 8
        c.moe!.expertHiddenSize = 4
        c.vocabSize = 11
        c.moe!.auxLossScope = scope
        let model = try MoETransformer<Double>(c, seed: 5)
        let ids = [1, 5, 3, 9, 2, 7], targets = [5, 3, 9, 2, 7, 4]
        let out = model(ids: ids, batch: 2, .inference)
        #expect(out.moe.count == 2)
        let routings = out.moe.map(\.routing)
        let want = scope == .pooled ? Balancing.switchLoss(routings).value.item
                                    : routings.map { Balancing.switchLoss([$0]).value.item }.reduce(0, +) / 2
        #expect(abs(out.auxLoss!.value.item - 0.01 * want) < 1e-15)
        let params = model.parameters
        let report = GradientCheck.check(params.map(\.value)) { vars in
            let ctx = ForwardContext(tape: nil, bindings: Dictionary(uniqueKeysWithValues: zip(params.map(\.path), vars)))
            let out = model(ids: ids, batch: 2, ctx)
            return Variable.crossEntropy(out.logits, targets: targets) + out.auxLoss! * 100
        }
        #expect(report.maxError < 1e-6, "\(report)")
        // The key round-trips; a config without it is pooled, as the Hugging Face families compute it.
        let json = try JSONEncoder().encode(c.moe!)
        #expect(String(decoding: json, as: UTF8.self).contains("\"aux_loss_scope\":\"\(scope.rawValue)\""))
        #expect(try JSONDecoder().decode(MoEConfig.self, from: json).auxLossScope == scope)
        let bare = #"{"hidden_size": 8, "moe_intermediate_size": 4, "num_experts": 4, "num_experts_per_tok": 2}"#
        #expect(try JSONDecoder().decode(MoEConfig.self, from: Data(bare.utf8)).auxLossScope == .pooled)
    }

    @Test func kvCacheGenerationEqualsFullRecomputation() throws {
        let model = try MoETransformer<Float>(tinyConfig(), seed: 4)
        var o = SamplingOptions()
        o.temperature = 0
        o.maxNewTokens = 12
        let prompt = ByteTokenizer().encode("the cat ")
        let cached = Generator.generate(model, prompt: prompt, options: o, useCache: true)
        let full = Generator.generate(model, prompt: prompt, options: o, useCache: false)
        #expect(cached == full)
        // The logits themselves agree closely.
        let caches = model.layers.map { _ in KVCache<Float>() }
        _ = model(ids: prompt, batch: 1, .inference, caches: caches)
        let step = model(ids: [cached[0]], batch: 1, .inference, caches: caches, startPosition: prompt.count).logits.value
        let whole = model(ids: prompt + [cached[0]], batch: 1, .inference, lastPositionOnly: true).logits.value
        #expect(step.maxAbsDifference(whole) < 1e-4)
    }

    /// One letter per id, so every prefix of the ids is a prefix of the text.
    struct LetterTokenizer: TextTokenizer {
        func encode(_ text: String) -> [Int] { text.unicodeScalars.map { Int($0.value) - 97 } }
        func decode(_ ids: [Int]) -> String { String(ids.map { Character(Unicode.Scalar(UInt8(97 + $0 % 26))) }) }
    }

    @Test func stopStringsAndEndTokensCutGeneration() throws {
        let model = try MoETransformer<Float>(tinyConfig(), seed: 4)
        let tok = LetterTokenizer()
        var o = SamplingOptions()
        o.temperature = 0
        o.maxNewTokens = 16
        var pieces: [String] = []
        let all = Generator.generate(model, prompt: [1, 2, 3], options: o, tokenizer: tok) { pieces.append($0) }
        let text = tok.decode(all)
        #expect(all.count == 16 && pieces.joined() == text)
        // A stop string first seen at p: the ids and the text end just before it.
        let p = 5
        let stop = String(Array(text)[p..<(p + 2)])
        let first = text.range(of: stop).map { text.distance(from: text.startIndex, to: $0.lowerBound) }!
        o.stop = [stop]
        pieces = []
        let cut = Generator.generate(model, prompt: [1, 2, 3], options: o, tokenizer: tok) { pieces.append($0) }
        #expect(cut == Array(all.prefix(first)))
        #expect(pieces.joined() == String(text.prefix(first)))
        // An end token ends generation and is kept.
        o.stop = []
        o.endTokens = [all[3]]
        let ended = Generator.generate(model, prompt: [1, 2, 3], options: o, tokenizer: tok)
        #expect(ended == Array(all.prefix(all.firstIndex(of: all[3])! + 1)))
    }

    @Test func overfitsOneBatch() throws {
        let model = try MoETransformer<Float>(tinyConfig(), seed: 5)
        var opt = AdamW<Float>(weightDecay: 0)
        var sampler = BatchSampler(seed: 1)
        let (x, y) = sampler.next(smallData.train, batch: 2, length: 16)
        var loss: Float = 0
        for _ in 0..<300 {
            let tape = Tape<Float>()
            let out = model(ids: x, batch: 2, ForwardContext(tape: tape))
            let l = Variable.crossEntropy(out.logits, targets: y)
            loss = l.value.item
            opt.step(model.parameters, gradients: tape.backward(l).byPath, lr: 3e-3)
        }
        #expect(loss < 0.05)
    }

    @Test func checkpointRoundTrip() throws {
        let dir = TestSupport.temporaryDirectory().path
        let trainer = Trainer(model: try MoETransformer<Float>(tinyConfig(router: .grouped), seed: 6), config: tinyTrainConfig(steps: 4), data: smallData, outDir: nil)
        for _ in 0..<4 { trainer.step() }
        try TrainCheckpoint.save(model: trainer.model, optimizer: trainer.optimizer, state: trainer.state, to: dir + "/ck")
        let (model, opt, state) = try TrainCheckpoint.load(dir + "/ck")
        #expect(state == trainer.state)
        #expect(opt.stepCount == 4)
        for (a, b) in zip(model.parameters + model.buffers, trainer.model.parameters + trainer.model.buffers) {
            #expect(a.path == b.path && a.value == b.value)
        }
        // The selection bias moved during training and came back.
        #expect(model.buffers.contains { $0.value.scalars.contains { $0 != 0 } })
        for p in model.parameters {
            #expect(opt.m[p.path] == trainer.optimizer.m[p.path])
            #expect(opt.v[p.path] == trainer.optimizer.v[p.path])
        }
    }

    @Test(arguments: [RouterKind.softmaxTopK, .grouped, .noisyTopK])
    func resumeIsBitExact(_ router: RouterKind) throws {
        let out = TestSupport.temporaryDirectory().path
        let straight = Trainer(model: try MoETransformer<Float>(tinyConfig(router: router), seed: 7), config: tinyTrainConfig(steps: 10), data: smallData, outDir: nil)
        for _ in 0..<10 { straight.step() }

        var c = tinyTrainConfig(steps: 10)
        c.checkpointEvery = 5
        let first = Trainer(model: try MoETransformer<Float>(tinyConfig(router: router), seed: 7), config: c, data: smallData, outDir: out)
        for _ in 0..<5 { first.step() }
        try first.saveCheckpoint(out)
        let (model, opt, state) = try TrainCheckpoint.load(out + "/checkpoints/" + TrainCheckpoint.name(step: 5))
        let resumed = Trainer(model: model, optimizer: opt, state: state, data: smallData, outDir: nil)
        for _ in 0..<5 { resumed.step() }
        #expect(first.stepLosses + resumed.stepLosses == straight.stepLosses)
    }

    /// A PEER layer placed in a model like an MoE block: gradients through the whole model in Double,
    /// training, and a bit-exact resume that carries its batch-norm running statistics.
    static func peerConfig(dim: Int = 16) -> TransformerConfig {
        var c = tinyConfig()
        var p = PEERConfig(hiddenSize: dim, numExperts: 36, heads: 2, expertsPerHead: 3, keyDim: 4)
        p.queryBatchNorm = true
        c.peer = p
        c.peerLayers = [1]
        return c
    }

    @Test func peerLayerInAModel() throws {
        let c = Self.gradientCheckSized(Self.peerConfig(dim: 8), layers: 2)
        let model = try MoETransformer<Double>(c, seed: 2)
        #expect(model.layers[1].peer != nil && model.layers[1].moe == nil && model.layers[0].moe != nil)
        #expect(model.parameters.contains { $0.path == "layers.1.mlp.down_embed" })
        #expect(model.parameterCount - model.activeParameterCount == (36 - 6) * 2 * 8 + 2 * 3 * 8 * 4)
        let ids = [1, 5, 3, 9, 2, 7], targets = [5, 3, 9, 2, 7, 4]
        let params = model.parameters
        let report = GradientCheck.check(params.map(\.value)) { vars in
            let ctx = ForwardContext(tape: nil, bindings: Dictionary(uniqueKeysWithValues: zip(params.map(\.path), vars)))
            let out = model(ids: ids, batch: 2, ctx, options: RouteOptions(training: true))
            return Variable.crossEntropy(out.logits, targets: targets) + out.auxLoss!
        }
        #expect(report.maxError < 1e-6, "\(report)")
        var bad = c
        bad.peerLayers = [2]
        #expect(throws: ConfigError.self) { try MoETransformer<Double>(bad, seed: 1) }
    }

    @Test func peerModelTrainsAndResumesBitExact() throws {
        let out = TestSupport.temporaryDirectory().path
        let straight = Trainer(model: try MoETransformer<Float>(Self.peerConfig(), seed: 7), config: tinyTrainConfig(steps: 10), data: smallData, outDir: nil)
        for _ in 0..<10 { straight.step() }
        #expect(straight.stepLosses.last! < straight.stepLosses.first!)
        var c = tinyTrainConfig(steps: 10)
        c.checkpointEvery = 5
        let first = Trainer(model: try MoETransformer<Float>(Self.peerConfig(), seed: 7), config: c, data: smallData, outDir: out)
        for _ in 0..<5 { first.step() }
        try first.saveCheckpoint(out)
        let (model, opt, state) = try TrainCheckpoint.load(out + "/checkpoints/" + TrainCheckpoint.name(step: 5))
        #expect(model.config.peer == Self.peerConfig().peer && model.buffers.count == 2)
        let resumed = Trainer(model: model, optimizer: opt, state: state, data: smallData, outDir: nil)
        for _ in 0..<5 { resumed.step() }
        #expect(first.stepLosses + resumed.stepLosses == straight.stepLosses)
    }

    @Test func corruptCheckpointsAreRejectedWithTheFileNamed() throws {
        let dir = TestSupport.temporaryDirectory().path
        let trainer = Trainer(model: try MoETransformer<Float>(tinyConfig(), seed: 8), config: tinyTrainConfig(steps: 1), data: smallData, outDir: nil)
        try TrainCheckpoint.save(model: trainer.model, optimizer: trainer.optimizer, state: trainer.state, to: dir + "/ck")
        let weights = dir + "/ck/model.safetensors"
        let bytes = try Data(contentsOf: URL(fileURLWithPath: weights))
        try bytes.prefix(bytes.count / 2).write(to: URL(fileURLWithPath: weights))
        // The manifest catches the torn file before any reader sees it.
        #expect(throws: TrainCheckpoint.CheckpointError.self) { try TrainCheckpoint.load(dir + "/ck") }
        do { _ = try TrainCheckpoint.load(dir + "/ck") } catch { #expect("\(error)".hasPrefix(dir + "/ck: model.safetensors does not match manifest.json")) }
        try FileManager.default.removeItem(atPath: weights)
        do { _ = try TrainCheckpoint.load(dir + "/ck") } catch { #expect("\(error)" == "\(weights): missing; the checkpoint is incomplete, use an earlier one") }
    }
}

@Suite("sampling")
struct SamplingTests {
    let logits: [Float] = [1, 3, 2, 0.5]

    @Test func greedyAndTopOne() {
        var o = SamplingOptions()
        o.temperature = 0
        var s = Sampler(o)
        #expect(s.next(logits: logits, context: []) == 1)
        o.temperature = 1
        o.topK = 1
        s = Sampler(o)
        for _ in 0..<20 { #expect(s.next(logits: logits, context: []) == 1) }
    }

    @Test func filtersKeepTheRightTokens() {
        var o = SamplingOptions()
        o.temperature = 1
        o.topP = 0.7  // p = [0.086, 0.636, 0.234, 0.052]: the top two reach 0.87
        var seen = Set<Int>()
        var s = Sampler(o)
        for _ in 0..<400 { seen.insert(s.next(logits: logits, context: [])) }
        #expect(seen == [1, 2])
        o.topP = 1
        o.minP = 0.3  // keeps p >= 0.3 * 0.636
        s = Sampler(o)
        seen = []
        for _ in 0..<400 { seen.insert(s.next(logits: logits, context: [])) }
        #expect(seen == [1, 2])
    }

    @Test func repetitionPenaltyDiscouragesContext() {
        var o = SamplingOptions()
        o.temperature = 0
        o.repetitionPenalty = 4
        var s = Sampler(o)
        #expect(s.next(logits: logits, context: [1]) == 2)  // 3 / 4 < 2
    }

    @Test func sameSeedSameSamples() {
        var o = SamplingOptions()
        o.seed = 9
        var a = Sampler(o), b = Sampler(o)
        #expect((0..<50).map { _ in a.next(logits: logits, context: []) } == (0..<50).map { _ in b.next(logits: logits, context: []) })
    }
}
