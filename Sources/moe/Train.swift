import ArgumentParser
import Foundation
import MoEAnalysis

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train an MoE language model (the built-in multi-domain corpus by default), then sample, evaluate and show expert specialization.",
        discussion: "Writes to --out: train_log.jsonl (append-only), loss.svg, expert_load.svg, checkpoints/step-NNNNNNN/ (the last --keep).")

    @Option(help: "Optimizer steps in total.") var steps: Int?
    @Option(help: "Sequences per batch.") var batch: Int?
    @Option(help: "Tokens per sequence.") var sequence: Int?
    @Option(name: .customLong("lr"), help: "Peak learning rate (warmup, then cosine decay).") var learningRate: Double?
    @Option(help: "Seed of the initialization, the data order and every random draw.") var seed: UInt64?
    @Option(help: "A UTF-8 text file, or JSONL with a \"text\" field, instead of the built-in corpus.") var data: String?
    @Option(help: "Output directory.") var out = "runs/default"
    @Flag(help: "Train the dense baseline: one SwiGLU of width k * F per layer (the same active parameters).") var dense = false
    @Option(help: "Experts per MoE layer.") var experts: Int?
    @Option(name: .customLong("top-k"), help: "Experts per token.") var topK: Int?
    @Option(help: "Hidden width of each expert.") var expertHidden: Int?
    @Option(help: "Width of an always-active shared expert (0 = none).") var sharedHidden: Int?
    @Flag(help: "Scale the shared expert by a learned sigmoid gate, as Qwen-MoE does.") var sharedExpertGate = false
    @Option(help: "Model dimension.") var dim: Int?
    @Option(help: "Decoder layers.") var layers: Int?
    @Option(help: "Router: \(RouterKind.allCases.map(\.rawValue).joined(separator: ", ")).") var router: String?
    @Option(help: "Coefficient of the Switch load-balancing loss.") var auxLossCoef: Double?
    @Option(help: "Switch loss per MoE layer, averaged (per_layer, the default), or pooled over all layers as transformers computes it (pooled).")
    var auxLossScope: String?
    @Option(help: "Layers (0-based, comma-separated) whose FFN is a PEER layer (He 2024) instead.") var peerLayers: String?
    @Option(help: "PEER experts per layer, a square n² (default 16384 = 128²).") var peerExperts: Int?
    @Option(help: "PEER heads (default 8).") var peerHeads: Int?
    @Option(name: .customLong("peer-k"), help: "PEER experts per head, at most √(peer experts) (default 16).") var peerK: Int?
    @Option(help: "PEER key width per half of a head's query (default 32).") var peerKeyDim: Int?
    @Flag(help: "Batch norm on the PEER queries.") var peerBatchNorm = false
    @Option(help: "With --resume: add this many experts to every MoE layer (lifelong growth), e.g. for new --data.") var addExperts: Int?
    @Flag(help: "With --add-experts: freeze the experts and router rows that existed before.") var freezeOld = false
    @Option(help: "With --add-experts: distill from the model before the growth with this coefficient (e.g. 1).") var distill: Double?
    @Option(help: "Steps between progress lines and log entries.") var logEvery: Int?
    @Option(help: "Steps between validations.") var evalEvery: Int?
    @Option(help: "Steps between checkpoints.") var checkpointEvery: Int?
    @Option(help: "Checkpoints to keep.") var keep: Int?
    @Option(help: "Continue from this checkpoint directory; the losses continue exactly as without the interruption.") var resume: String?
    @Option(help: "Samples to print after training.") var samples = 3
    @Option(help: "Held-out arithmetic problems to score.") var arithmeticProblems = 200

    func run() throws {
        if resume == nil && (addExperts != nil || freezeOld) {
            throw UsageError("--add-experts and --freeze-old grow a trained run: add --resume RUN")
        }
        if freezeOld && addExperts == nil { throw UsageError("--freeze-old freezes the experts that exist before new ones are added: add --add-experts M") }
        if distill != nil && addExperts == nil { throw UsageError("--distill regularizes a grown run toward the model before the growth: add --add-experts M") }
        try Self.checkWritable(out)
        let trainer: Trainer
        if let resume {
            trainer = try resumed(resume)
        } else {
            trainer = try fresh()
        }
        let c = trainer.state.train
        let m = trainer.model
        var kind = m.config.moe == nil ? "dense" : "MoE (\(m.config.moe!.numExperts) experts, top-\(m.config.moe!.expertsPerToken), \(m.config.moe!.router.rawValue))"
        if let p = m.config.peer { kind += ", PEER in layers \(m.config.peerLayers.map(String.init).joined(separator: ",")) (\(p.numExperts) experts, \(p.heads) heads of top-\(p.expertsPerHead))" }
        say("model: \(kind), \(m.config.numLayers) layers, D \(m.config.hiddenSize); \(m.parameterCount) parameters, \(m.activeParameterCount) active per token")
        say("data: \(trainer.data.source); \(trainer.data.train.count) training / \(trainer.data.validation.count) validation tokens")
        say("training: \(c.steps) steps of \(c.batch) x \(c.sequence) tokens\(trainer.state.step > 0 ? ", resuming at step \(trainer.state.step)" : "")")
        trainer.progress = { say($0) }
        try trainer.run()
        try writePlots(trainer)
        try report(trainer)
    }

    func fresh() throws -> Trainer {
        var c = TrainConfig()
        if let steps { c.steps = steps }
        if let batch { c.batch = batch }
        if let sequence { c.sequence = sequence }
        if let learningRate { c.learningRate = learningRate; c.minLearningRate = min(c.minLearningRate, learningRate) }
        if let seed { c.seed = seed }
        if let logEvery { c.logEvery = logEvery }
        if let evalEvery { c.evalEvery = evalEvery }
        if let checkpointEvery { c.checkpointEvery = checkpointEvery }
        if let keep { c.keepCheckpoints = keep }
        c.warmup = min(c.warmup, c.steps)
        c.data = data
        do { try c.validate() } catch { throw UsageError("\(error)") }
        var kindValue = RouterKind.softmaxTopK
        if let router {
            guard let k = RouterKind(rawValue: router) else {
                throw UsageError("invalid --router \(router): use one of \(RouterKind.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            guard k != .expertChoice && k != .dense && k != .soft else {
                throw UsageError("invalid --router \(router): a causal language model needs a token-choice router")
            }
            kindValue = k
        }
        // Each size option in range before any arithmetic on it (their products size the model).
        let maxDim = MoEConfig.maxDimension
        for (name, value, low, high) in [("--dim", dim, 8, maxDim), ("--layers", layers, 1, TransformerConfig.maxLayers), ("--experts", experts, 1, MoEConfig.maxExperts),
                                         ("--top-k", topK, 1, experts ?? 16), ("--expert-hidden", expertHidden, 1, maxDim), ("--shared-hidden", sharedHidden, 0, maxDim)] {
            if let value, value < low || value > high {
                throw UsageError("invalid \(name) \(value): use \(low)...\(high)\(name == "--top-k" ? " (at most --experts)" : "")")
            }
        }
        if let dim, dim % 8 != 0 { throw UsageError("invalid --dim \(dim): use a multiple of 8 (4 heads of an even width)") }
        var config = DefaultModel.config(
            dense: dense, dim: dim ?? 128, layers: layers ?? 4, experts: experts ?? 16, topK: topK ?? ([.switchTop1, .hash, .base].contains(kindValue) ? 1 : 2),
            expertHidden: expertHidden ?? 64, sharedHidden: sharedHidden ?? 0, router: kindValue, auxLossCoef: auxLossCoef ?? (kindValue == .base ? 0 : 0.1))
        if let auxLossScope {
            guard let scope = AuxLossScope(rawValue: auxLossScope) else {
                throw UsageError("invalid --aux-loss-scope \(auxLossScope): use per_layer or pooled")
            }
            guard config.moe != nil else { throw UsageError("--aux-loss-scope needs an MoE model; drop it with --dense") }
            config.moe?.auxLossScope = scope
        }
        if peerLayers == nil && (peerExperts != nil || peerHeads != nil || peerK != nil || peerKeyDim != nil || peerBatchNorm) {
            throw UsageError("the PEER options shape PEER layers: add --peer-layers (0-based layers, such as 2)")
        }
        if let peerLayers {
            let layers = try parseIntegers(peerLayers, option: "--peer-layers", what: "0-based layer numbers such as 1,2")
            var p = PEERConfig(hiddenSize: config.hiddenSize, numExperts: peerExperts ?? 16384, heads: peerHeads ?? 8, expertsPerHead: peerK ?? 16, keyDim: peerKeyDim ?? 32)
            p.queryBatchNorm = peerBatchNorm
            config.peer = p
            config.peerLayers = layers
            do { try config.validate() } catch { throw UsageError("invalid PEER options: \(error)") }
        }
        if sharedExpertGate {
            guard (sharedHidden ?? 0) > 0 else { throw UsageError("--shared-expert-gate needs a shared expert: add --shared-hidden 64, say") }
            config.moe?.sharedExpertGate = true
        }
        try Self.checkMemory(config)
        let model: MoETransformer<Float>
        do { model = try MoETransformer<Float>(config, seed: c.seed) } catch { throw UsageError("\(error)") }
        let dataset = try loadData(c)
        try clearOldRun()
        return Trainer(model: model, config: c, data: dataset, outDir: out)
    }

    func loadData(_ c: TrainConfig) throws -> TextDataset {
        if let path = c.data {
            do { return try TextDataset(file: path, minimumValidation: c.sequence + 2) } catch let e as TextDataset.DataError { throw UsageError(e.description) }
        }
        return TextDataset(seed: c.seed)
    }

    /// Refuses a model whose training state cannot fit in this machine's memory, before allocating any of it:
    /// weights, gradients and AdamW's two moments are 16 bytes per parameter in f32.
    static func checkMemory(_ config: TransformerConfig) throws {
        let parameters: Int
        do { parameters = try config.parameterCount() } catch { throw UsageError("\(error)") }
        let (bytes, overflow) = parameters.multipliedReportingOverflow(by: 16)
        let physical = Double(ProcessInfo.processInfo.physicalMemory)
        if overflow || Double(bytes) > 0.8 * physical {
            let need = String(format: "%.1f", Double(parameters) * 16 / 1_073_741_824), have = String(format: "%.1f", physical / 1_073_741_824)
            throw UsageError("the model has \(parameters) parameters: training needs about \(need) GiB (weights, gradients and AdamW moments), more than 80% of this machine's \(have) GiB; lower --dim, --layers, --experts or --expert-hidden")
        }
    }

    /// Refuses an output folder that cannot be written (read-only, not a folder) before any training is spent.
    static func checkWritable(_ out: String) throws {
        do { try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true) } catch {
            throw UsageError("--out \(out): cannot be created (\(TrainCheckpoint.reason(error))); choose another --out")
        }
        let probe = out + "/.write-test-\(getpid())"
        guard FileManager.default.createFile(atPath: probe, contents: Data()) else {
            throw UsageError("--out \(out): cannot be written (\(String(cString: strerror(errno)))); choose another --out")
        }
        try? FileManager.default.removeItem(atPath: probe)
    }

    /// A fresh run starts a fresh log; its checkpoints replace any old ones.
    func clearOldRun() throws {
        try? FileManager.default.removeItem(atPath: out + "/train_log.jsonl")
        try? FileManager.default.removeItem(atPath: out + "/checkpoints")
    }

    /// The checkpoint `--resume PATH` names: PATH itself when it is a checkpoint, else the newest intact one of the
    /// run PATH (or of the checkpoints folder PATH), each newer unfinished or damaged one skipped with a warning.
    func checkpoint(toResume path: String) throws -> String {
        let fm = FileManager.default
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue else {
            throw UsageError("--resume \(path): not found; pass a run directory (a run's --out) or a checkpoint such as runs/default/checkpoints/step-0000400")
        }
        if fm.fileExists(atPath: path + "/trainer_state.json") || fm.fileExists(atPath: path + "/" + TrainCheckpoint.manifestName) { return path }
        let root = fm.fileExists(atPath: path + "/checkpoints") ? path + "/checkpoints" : path
        guard !TrainCheckpoint.list(root).isEmpty else {
            throw UsageError("--resume \(path): holds no checkpoints; pass a run directory (a run's --out) or a checkpoint such as runs/default/checkpoints/step-0000400")
        }
        guard let newest = TrainCheckpoint.newestIntact(root, warn: warn) else {
            throw UsageError("--resume \(path): no checkpoint there is intact (see the warnings); start a new run")
        }
        return newest
    }

    /// The log as the checkpoint left it: entries past its step (written by the interrupted run after that
    /// checkpoint) and a torn last line are dropped, so the resumed run's entries follow without duplicates.
    func truncateLog(after step: Int) throws {
        let path = out + "/train_log.jsonl"
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return }
        let kept = text.split(separator: "\n").filter { line in
            (try? JSONDecoder().decode(TrainLogEntry.self, from: Data(line.utf8))).map { $0.step <= step } ?? false
        }
        try AtomicFile.write(Data(kept.map { $0 + "\n" }.joined().utf8), to: path)
    }

    func resumed(_ path: String) throws -> Trainer {
        let dir = try checkpoint(toResume: path)
        let loaded: (model: MoETransformer<Float>, optimizer: AdamW<Float>, state: TrainerState)
        do { loaded = try TrainCheckpoint.load(dir) } catch { throw UsageError("\(error)") }
        if dir != path { say("resuming from \(dir)") }
        var state = loaded.state
        let mc = loaded.model.config
        // Options given on resume must agree with the checkpoint (except --steps, which may extend the run).
        var conflicts: [String] = []
        func check<V: Equatable>(_ name: String, _ given: V?, _ saved: V) { if let given, given != saved { conflicts.append("--\(name) \(given) (checkpoint: \(saved))") } }
        check("batch", batch, state.train.batch)
        check("sequence", sequence, state.train.sequence)
        check("lr", learningRate, state.train.learningRate)
        check("seed", seed, state.train.seed)
        if addExperts == nil { check("data", data, state.train.data ?? "") }
        check("dim", dim, mc.hiddenSize)
        check("layers", layers, mc.numLayers)
        check("experts", experts, mc.moe?.numExperts ?? 0)
        check("top-k", topK, mc.moe?.expertsPerToken ?? 0)
        check("expert-hidden", expertHidden, mc.moe?.expertHiddenSize ?? 0)
        check("shared-hidden", sharedHidden, mc.moe?.sharedExpertHiddenSize ?? 0)
        check("router", router, mc.moe?.router.rawValue ?? "")
        check("aux-loss-coef", auxLossCoef, mc.moe?.auxLossCoef ?? 0)
        check("aux-loss-scope", auxLossScope, mc.moe?.auxLossScope.rawValue ?? "")
        check("peer-experts", peerExperts, mc.peer?.numExperts ?? 0)
        check("peer-heads", peerHeads, mc.peer?.heads ?? 0)
        check("peer-k", peerK, mc.peer?.expertsPerHead ?? 0)
        check("peer-key-dim", peerKeyDim, mc.peer?.keyDim ?? 0)
        if peerBatchNorm && !(mc.peer?.queryBatchNorm ?? false) { conflicts.append("--peer-batch-norm (checkpoint: none)") }
        check("peer-layers", peerLayers.map { $0.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) } }, mc.peerLayers)
        if dense && mc.moe != nil { conflicts.append("--dense (checkpoint: MoE)") }
        if sharedExpertGate && !(mc.moe?.sharedExpertGate ?? false) { conflicts.append("--shared-expert-gate (checkpoint: no gate)") }
        if !conflicts.isEmpty {
            throw UsageError("the options do not match the checkpoint \(dir): \(conflicts.joined(separator: ", ")); drop them or start a new run")
        }
        if let steps { state.train.steps = steps }
        if let logEvery { state.train.logEvery = logEvery }
        if let evalEvery { state.train.evalEvery = evalEvery }
        if let checkpointEvery { state.train.checkpointEvery = checkpointEvery }
        if let keep { state.train.keepCheckpoints = keep }
        do { try state.train.validate() } catch { throw UsageError("\(error)") }
        guard state.step < state.train.steps else {
            throw UsageError("the checkpoint \(dir) is already at step \(state.step) of \(state.train.steps); pass a larger --steps to continue")
        }
        if let addExperts {
            if let data { state.train.data = data }
            if let data {
                var isDir: ObjCBool = false
                if FileManager.default.fileExists(atPath: data, isDirectory: &isDir) && isDir.boolValue {
                    throw UsageError("--data \(data) is a directory; pass a UTF-8 text or JSONL file")
                }
            }
            let dataset = try loadData(state.train)
            let grown: (model: MoETransformer<Float>, optimizer: AdamW<Float>, state: TrainerState)
            do {
                grown = try Growth.grow(model: loaded.model, optimizer: loaded.optimizer, state: state, add: addExperts, freezeOld: freezeOld,
                                        data: dataset.source == state.dataSource ? nil : dataset, seed: state.train.seed &+ UInt64(state.step),
                                        distill: distill ?? 0)
            } catch let e as Growth.GrowthError { throw UsageError(e.description) }
            let e = loaded.model.config.moe!.numExperts
            say("grew every MoE layer from \(e) to \(e + addExperts) experts at step \(state.step)\(freezeOld ? ", the first \(e) and their router rows frozen" : "")\((distill ?? 0) > 0 ? ", distilling from the model before the growth (coefficient \(distill!))" : "")")
            let trainer = Trainer(model: grown.model, optimizer: grown.optimizer, state: grown.state, data: dataset, outDir: out)
            if (distill ?? 0) > 0 { trainer.teacher = loaded.model }
            return trainer
        }
        let dataset = try loadData(state.train)
        guard dataset.source == state.dataSource else {
            throw UsageError("the data differ from the checkpoint's (\(state.dataSource)); resume with the same data")
        }
        let trainer = Trainer(model: loaded.model, optimizer: loaded.optimizer, state: state, data: dataset, outDir: out)
        do { trainer.teacher = try TrainCheckpoint.loadTeacher(dir, state: state) } catch { throw UsageError("\(error)") }
        try truncateLog(after: state.step)
        return trainer
    }

    func writePlots(_ trainer: Trainer) throws {
        let log = (try? readLog()) ?? trainer.log
        try TrainingPlots.lossCurve(log, title: "training loss (\(trainer.model.config.moe == nil ? "dense" : "MoE"))").write(to: out + "/loss.svg")
        try TrainingPlots.expertLoad(log).write(to: out + "/expert_load.svg")
    }

    func readLog() throws -> [TrainLogEntry] {
        let text = try String(contentsOfFile: out + "/train_log.jsonl", encoding: .utf8)
        return try text.split(separator: "\n").map { try JSONDecoder().decode(TrainLogEntry.self, from: Data($0.utf8)) }
    }

    func report(_ trainer: Trainer) throws {
        let builtIn = trainer.state.train.data == nil
        say("\nsamples (temperature 0.7, seed 1):")
        let tok = ByteTokenizer()
        let prompts = builtIn ? ["the ", "47+5=", "def f", "name=", "seq 3 "] : ["\n"]
        for p in prompts.prefix(max(samples, 0)) {
            var o = SamplingOptions()
            o.temperature = 0.7
            o.seed = 1
            o.maxNewTokens = 60
            o.stop = ["\n"]
            let ids = Generator.generate(trainer.model, prompt: tok.encode("\n" + p), options: o)
            say("  \(p)\(tok.decode(ids))")
        }
        let eval = Evaluation.run(trainer.model, data: trainer.data, config: trainer.state.train, arithmeticProblems: arithmeticProblems)
        say("\nevaluation: validation loss \(String(format: "%.4f", eval.validationLoss)), \(String(format: "%.3f", eval.bitsPerByte)) bits per byte"
              + (eval.arithmeticAccuracy.map { String(format: ", arithmetic exact match %.1f%% on %d held-out problems", $0 * 100, eval.arithmeticProblems) } ?? ""))
        if let d = eval.domainLoss {
            say("validation loss by domain: " + Domain.allCases.compactMap { k in d[k.rawValue].map { String(format: "%@ %.3f", k.rawValue, $0) } }.joined(separator: ", "))
        }
        if builtIn, trainer.model.config.moe != nil {
            let spec = SpecializationReport(model: trainer.model, documents: trainer.data.validationDocuments)
            say("\nexpert specialization (share of each expert's first-choice tokens by domain, validation documents):")
            say(spec.table())
            say(String(format: "mean top-domain share %.2f (0.20 would be no specialization)", spec.meanTopShare))
        }
        say("\nwrote \(out)/train_log.jsonl, \(out)/loss.svg, \(out)/expert_load.svg, checkpoints in \(out)/checkpoints")
    }
}
