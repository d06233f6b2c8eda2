import Foundation

/// One logged interval of training.
public struct TrainLogEntry: Codable, Sendable, Equatable {
    public var step: Int
    public var loss: Double
    public var auxLoss: Double
    public var learningRate: Double
    public var tokensPerSecond: Double
    public var loadMaxOverMean: Double
    public var validationLoss: Double?
    /// Tokens per expert over the interval, per MoE layer.
    public var expertLoad: [[Int]]

    enum CodingKeys: String, CodingKey {
        case step, loss, auxLoss = "aux_loss", learningRate = "lr", tokensPerSecond = "tokens_per_s"
        case loadMaxOverMean = "load_max_over_mean", validationLoss = "val_loss", expertLoad = "expert_load"
    }

    /// The MoE layer whose interval load is least even (largest max/mean), with that ratio and its experts
    /// that got no token; nil without MoE layers or tokens.
    public var worstLayer: (layer: Int, maxOverMean: Double, unused: Int)? {
        var worst: (layer: Int, maxOverMean: Double, unused: Int)? = nil
        for (i, l) in expertLoad.enumerated() where l.contains(where: { $0 > 0 }) {
            let ratio = RoutingStatistics.maxOverMean(l)
            if worst == nil || ratio > worst!.maxOverMean { worst = (i, ratio, l.filter { $0 == 0 }.count) }
        }
        return worst
    }
}

/// Trains a model: AdamW with warmup + cosine, gradient clipping, the MoE balancing terms and, for a
/// router with a selection bias, the auxiliary-loss-free update after each step. Validation every
/// `evalEvery` steps, a progress line and an append-only JSONL log entry every `logEvery` steps, atomic
/// checkpoints every `checkpointEvery` steps (the last `keepCheckpoints` kept).
public final class Trainer {
    public let model: MoETransformer<Float>
    public var optimizer: AdamW<Float>
    public var state: TrainerState
    public let data: TextDataset
    public let outDir: String?
    /// Every step's training objective (cross-entropy + balancing terms), for tests and resume checks.
    public private(set) var stepLosses: [Double] = []
    public private(set) var log: [TrainLogEntry] = []
    public var progress: ((String) -> Void)?
    /// The model before the last growth, when that growth distills from it (`ExpertGrowth.distill`).
    public var teacher: MoETransformer<Float>?
    /// The distillation coefficient: the last growth's.
    public var distillCoef: Double { state.growth.last?.distill ?? 0 }

    public init(model: MoETransformer<Float>, optimizer: AdamW<Float>, state: TrainerState, data: TextDataset, outDir: String?) {
        self.model = model
        self.optimizer = optimizer
        self.state = state
        self.data = data
        self.outDir = outDir
    }

    /// A fresh run.
    public convenience init(model: MoETransformer<Float>, config: TrainConfig, data: TextDataset, outDir: String?) {
        let opt = Self.optimizer(for: model, weightDecay: config.weightDecay)
        let state = TrainerState(
            step: 0, adamSteps: 0, sampler: BatchSampler(seed: config.seed), random: RandomGenerator(seed: config.seed ^ 0x7A11),
            train: config, dataSource: data.source)
        self.init(model: model, optimizer: opt, state: state, data: data, outDir: outDir)
    }

    /// Norm scales, biases and the routers are not decayed: decay would pull the router logits toward
    /// zero, where top-k selection is decided by noise.
    public static func noDecayPaths(_ model: MoETransformer<Float>) -> Set<String> {
        let routers = Set(model.moeLayers.flatMap { $0.router.parameters.map(\.path) })
        return Set(model.parameters.filter { $0.shape.count < 2 || routers.contains($0.path) }.map(\.path))
    }

    /// A fresh AdamW for `model`: decay except on its norms, biases and routers, none at all for frozen rows.
    public static func optimizer(for model: MoETransformer<Float>, weightDecay: Double) -> AdamW<Float> {
        var opt = AdamW<Float>(weightDecay: Float(weightDecay))
        opt.noDecay = noDecayPaths(model)
        opt.frozenRows = frozenRows(model)
        return opt
    }

    /// Leading rows that take no update, by path: each MoE layer's first `frozen_experts` experts (their slices of
    /// the stacked weights and biases) and router rows.
    public static func frozenRows(_ model: MoETransformer<Float>) -> [String: Int] {
        var out: [String: Int] = [:]
        for layer in model.moeLayers where layer.config.frozenExperts > 0 {
            for p in layer.experts.parameters + (layer.router.gate?.parameters ?? []) + (layer.router.noise?.parameters ?? []) {
                out[p.path] = layer.config.frozenExperts
            }
        }
        return out
    }

    var config: TrainConfig { state.train }

    /// One optimizer step; returns (cross-entropy, balancing loss, statistics per MoE layer).
    @discardableResult
    public func step() -> (loss: Double, aux: Double, stats: [RoutingStatistics]) {
        let c = config
        let lr = c.schedule(state.step)
        let (x, y) = state.sampler.next(data.train, batch: c.batch, length: c.sequence)
        var grads: [String: Tensor<Float>] = [:]
        // The forward's tape and outputs end before the update: they hold the weights' storage, and an in-place
        // update of a shared tensor copies it first (copy-on-write), every weight, every step.
        let (lossValue, ceValue, auxValue, stats) = { () -> (Double, Double, Double, [RoutingStatistics]) in
            let tape = Tape<Float>()
            let random = RandomSource(state.random)
            let out = model(ids: x, batch: c.batch, ForwardContext(tape: tape), options: RouteOptions(training: true, random: random))
            state.random = random.generator
            let ce = Variable.crossEntropy(out.logits, targets: y)
            var loss = out.auxLoss.map { ce + $0 } ?? ce
            if let teacher, distillCoef > 0 {
                // Chen et al. 2023: the old model's predictions on the new data as soft targets,
                // coefficient · mean over tokens of −Σ p_teacher log p_student.
                let p = teacher(ids: x, batch: c.batch, .inference).logits.value.softmax()
                let distill = (Variable(p) * out.logits.logSoftmax()).sum(axis: 1).mean() * Float(-distillCoef)
                loss = loss + distill
            }
            grads = tape.backward(loss).byPath
            return (Double(loss.value.item), Double(ce.value.item), Double(out.auxLoss?.value.item ?? 0), out.moe.map(\.statistics))
        }()
        optimizer.zeroFrozen(&grads)
        clipGradientNorm(&grads, maxNorm: c.clipNorm)
        optimizer.step(model.parameters, gradients: grads, lr: Float(lr))
        for (layer, s) in zip(model.moeLayers, stats) where layer.router.selectionBias != nil {
            SelectionBiasBalancer.update(layer.router, tokensPerExpert: s.tokensPerExpert)
        }
        state.step += 1
        state.adamSteps = optimizer.stepCount
        stepLosses.append(lossValue)
        return (ceValue, auxValue, stats)
    }

    /// Mean cross-entropy over the fixed validation windows.
    public func validationLoss() -> Double { Evaluation.validationLoss(model, data: data, config: config) }

    /// Runs to `config.steps`, logging, validating and checkpointing along the way.
    public func run() throws {
        let c = config
        var window: [(loss: Double, aux: Double)] = []
        var load = model.moeLayers.map { [Int](repeating: 0, count: $0.config.numExperts) }
        var ratio: [Double] = []
        var windowStart = Date()
        let runStart = Date(), firstStep = state.step
        if let outDir { try FileManager.default.createDirectory(atPath: outDir, withIntermediateDirectories: true) }
        while state.step < c.steps {
            let (l, aux, stats) = step()
            window.append((l, aux))
            for (i, s) in stats.enumerated() {
                for (e, n) in s.tokensPerExpert.enumerated() { load[i][e] += n }
                ratio.append(s.maxOverMean)
            }
            let s = state.step
            if s % c.logEvery == 0 || s % c.evalEvery == 0 || s == c.steps {
                let elapsed = Date().timeIntervalSince(windowStart)
                let tps = Double(window.count * c.batch * c.sequence) / max(elapsed, 1e-9)
                var entry = TrainLogEntry(
                    step: s, loss: window.map(\.loss).reduce(0, +) / Double(window.count),
                    auxLoss: window.map(\.aux).reduce(0, +) / Double(window.count), learningRate: c.schedule(s - 1),
                    tokensPerSecond: tps, loadMaxOverMean: ratio.isEmpty ? 1 : ratio.reduce(0, +) / Double(ratio.count),
                    validationLoss: nil, expertLoad: load)
                if s % c.evalEvery == 0 || s == c.steps { entry.validationLoss = validationLoss() }
                let done = Double(s - firstStep), left = Double(c.steps - s)
                let eta = Date().timeIntervalSince(runStart) / max(done, 1) * left
                progress?(Self.progressLine(entry, total: c.steps, eta: eta))
                log.append(entry)
                try appendLog(entry)
                window = []
                load = load.map { $0.map { _ in 0 } }
                ratio = []
                windowStart = Date()
            }
            if let outDir, s % c.checkpointEvery == 0 || s == c.steps {
                try saveCheckpoint(outDir)
            }
        }
    }

    static func progressLine(_ e: TrainLogEntry, total: Int, eta: Double) -> String {
        var line = String(
            format: "step %d/%d | loss %.4f | aux %.4f | lr %.2e | %.0f tok/s | ETA %@ | load max/mean %.2f",
            e.step, total, e.loss, e.auxLoss, e.learningRate, e.tokensPerSecond, formatDuration(eta) as NSString, e.loadMaxOverMean)
        if let w = e.worstLayer { line += String(format: " | worst layer %d: max/mean %.2f, %d unused", w.layer, w.maxOverMean, w.unused) }
        if let v = e.validationLoss { line += String(format: " | val %.4f (%.3f bits/byte)", v, v / Double.log(2)) }
        return line
    }

    public static func formatDuration(_ s: Double) -> String {
        let t = Int(s.rounded())
        return t >= 60 ? "\(t / 60)m\(String(format: "%02d", t % 60))s" : "\(t)s"
    }

    func appendLog(_ entry: TrainLogEntry) throws {
        guard let outDir else { return }
        let path = outDir + "/train_log.jsonl"
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        var line = try enc.encode(entry)
        line.append(0x0A)
        if !FileManager.default.fileExists(atPath: path) { _ = FileManager.default.createFile(atPath: path, contents: nil) }
        let h = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        defer { try? h.close() }
        try h.seekToEnd()
        try h.write(contentsOf: line)
        try h.synchronize()
    }

    public func saveCheckpoint(_ outDir: String) throws {
        let root = outDir + "/checkpoints"
        try TrainCheckpoint.save(model: model, optimizer: optimizer, state: state, to: root + "/" + TrainCheckpoint.name(step: state.step), teacher: distillCoef > 0 ? teacher : nil)
        let all = TrainCheckpoint.list(root)
        for old in all.dropLast(config.keepCheckpoints) { try? FileManager.default.removeItem(atPath: old) }
    }
}
