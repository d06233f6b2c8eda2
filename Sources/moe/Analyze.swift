import ArgumentParser
import Foundation
import MoEAnalysis
import MoEInference

struct Analyze: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "The analyses of \"A Closer Look into Mixture-of-Experts in Large Language Models\" (Lo et al. 2024), as an HTML report and JSON.",
        discussion: """
            Static (weights only, one layer at a time from the mapped file): expert similarity at matrix and neuron \
            level, after neuron alignment (linear sum assignment) with Kendall's tau, router similarity and its \
            regression on expert similarity, PCA of experts and neurons. With --text, dynamic: expert output \
            similarity with all experts forced on, router score rank against output norm rank, gate activations, \
            routing weights and load, REAP saliency, the loss with each expert removed and with top-k = 1 ... E. \
            REPORT_DIR gets report.html (self-contained: inline SVG, no scripts) and analysis.json.
            """)

    @Option(help: "Model directory (Hugging Face format, f32/16-bit/quantized), or a swift-moe checkpoint or run directory.") var model: String
    @Option(help: "A UTF-8 text file for the dynamic analyses, or `builtin` for the validation split of the built-in corpus (seed 1; byte models); omit for the weights-only analyses.") var text: String?
    @Option(help: "A dense model (swift-moe or Hugging Face) to compare each layer's experts with its FFN: the model an MoE was upcycled from, or for Mixtral the matching Mistral.") var dense: String?
    @Option(help: "MoE layers to analyse, comma-separated (default: all).") var layers: String?
    @Option(help: "Output directory for report.html and analysis.json.") var out: String
    @Option(help: "Score at most this many tokens of the text.") var maxTokens = 256
    @Option(help: "Tokens per window of the text, each run from an empty cache (default: a swift-moe checkpoint's training sequence length, else 256, at most the model's positions).") var context: Int?
    @Option(help: "Positions of the text whose gate activations are plotted, comma-separated (default: 0, the middle, the last).") var activationTokens: String?
    @Option(help: "Largest expert width for the neuron alignment, which costs O(F^3) per pair of experts.") var alignWidth = 1024
    @Flag(help: "Skip the loss with each expert removed (one pass over the text per expert).") var noRemoval = false
    @Flag(help: "Skip the loss at top-k = 1 ... E.") var noTopK = false
    @Flag(help: "Feed the text's UTF-8 bytes as token ids (byte models without a tokenizer.json).") var bytes = false
    @Flag(help: "Print every number behind the plots as one JSON object.") var json = false

    func run() throws {
        guard maxTokens >= 2 && maxTokens <= 1_000_000 else { throw UsageError("invalid --max-tokens \(maxTokens): use between 2 and 1000000") }
        guard alignWidth >= 0 else { throw UsageError("invalid --align-width \(alignWidth): use 0 (no alignment) or more") }
        var dir = try ModelLocation.checkpointDirectory(model)
        var byteModel = bytes
        // The inference engine runs its families on the weights as stored. A swift-moe checkpoint runs there too,
        // through its Hugging Face export in a temporary directory removed at the end; the other families run on
        // the reference model, in memory.
        var exported: String? = nil
        var trainedSequence: Int? = nil
        defer { if let e = exported { try? FileManager.default.removeItem(atPath: e) } }
        var reference: MoETransformer<Float>? = nil
        if !InferenceModel.supports(directory: dir) {
            let m = try ModelLocation.loadAny(dir)
            guard (0..<m.config.numLayers).contains(where: { m.config.isMoE(layer: $0) }) else {
                throw UsageError("\(model): the model has no MoE layers; analyse an MoE model")
            }
            if m.config.modelType == "swift_moe" {
                // The sequence length it was trained on, from its trainer_state.json (absent for a model saved otherwise).
                if let data = FileManager.default.contents(atPath: dir + "/trainer_state.json"),
                   let state = try? JSONDecoder().decode(TrainerState.self, from: data) { trainedSequence = state.train.sequence }
                byteModel = true
                let tmp = NSTemporaryDirectory() + "moe-analyze-\(getpid())"
                exported = tmp  // removed at the end, also when the export fails part-way
                if (try? HuggingFace.export(m, to: tmp)) != nil { dir = tmp } else { reference = m }
            } else {
                reference = m
            }
        }
        let m: AnalysisSubject
        if let reference {
            m = ReferenceSubject(reference)
        } else {
            InferenceModel.guardMappedFiles()
            do { m = try InferenceModel(directory: dir) } catch { throw UsageError("\(error)") }
        }
        let moeLayers = m.moeLayers
        guard !moeLayers.isEmpty else { throw UsageError("\(model): the model has no MoE layers; analyse an MoE model") }
        var chosen = moeLayers
        if let list = layers {
            chosen = []
            for l in try parseIntegers(list, option: "--layers", what: "layer numbers such as 0,3") {
                guard l >= 0 && l < m.config.numLayers else { throw UsageError("--layers: layer \(l) is out of range; the model has layers 0..<\(m.config.numLayers)") }
                guard moeLayers.contains(l) else { throw UsageError("--layers: layer \(l) has no experts; MoE layers are \(moeLayers.map(String.init).joined(separator: ","))") }
                if !chosen.contains(l) { chosen.append(l) }
            }
        }
        var denseFFN: ((Int) throws -> [String: [Float]])? = nil
        if let dense {
            let dm = try ModelLocation.loadAny(dense)
            let named = dm.namedParameters
            let (f, d) = (m.expertWidth(layer: chosen[0]), m.config.hiddenSize)
            for l in chosen {
                for (name, shape) in [("gate", [f, d]), ("up", [f, d]), ("down", [d, f])] {
                    guard let t = named["layers.\(l).mlp.\(name)_proj.weight"]?.value else {
                        throw UsageError("--dense \(dense): layer \(l) has no dense FFN (\(name)_proj); give a dense model with as many layers")
                    }
                    guard t.shape == shape else {
                        throw UsageError("--dense \(dense): layer \(l)'s \(name)_proj is \(t.shape) but the experts' are \(shape); give the dense model these experts come from (same width)")
                    }
                }
            }
            denseFFN = { l in
                Dictionary(uniqueKeysWithValues: ["gate", "up", "down"].map { ($0, named["layers.\(l).mlp.\($0)_proj.weight"]!.value.scalars) })
            }
        }
        try Train.checkWritable(out)
        var tokens: [Int] = [], pieces: [String] = []
        if let text { (tokens, pieces) = try ModelLocation.textTokens(text, dir: dir, config: m.config, bytes: byteModel, maxTokens: maxTokens) }
        var window = context ?? trainedSequence ?? 256
        guard window >= 2 else { throw UsageError("invalid --context \(window): use at least 2") }
        if m.config.maxPositions > 0 { window = Swift.min(window, m.config.maxPositions) }
        var positions = [0, tokens.count / 2, tokens.count - 1]
        if let list = activationTokens {
            positions = try parseIntegers(list, option: "--activation-tokens", what: "positions such as 0,10").map { p in
                guard p >= 0, p < Swift.max(tokens.count, 1) else {
                    throw UsageError("invalid --activation-tokens \(list): give positions in 0..<\(tokens.count)")
                }
                return p
            }
        }
        let started = Date()
        let progress: (String) -> Void = { warn(String(format: "[%6.1f s] ", Date().timeIntervalSince(started)) + $0) }
        let staticPart: StaticAnalysis
        do { staticPart = try StaticAnalysis.run(m, layers: chosen, dense: denseFFN, alignWidth: alignWidth, progress: progress) } catch { throw UsageError("\(error)") }
        var dynamicPart: DynamicAnalysis? = nil
        if !tokens.isEmpty {
            do {
                dynamicPart = try DynamicAnalysis.run(m, tokens: tokens, pieces: pieces, layers: chosen, activationTokens: Array(Set(positions)).sorted(), context: window,
                                                      removal: !noRemoval, topK: !noTopK, progress: progress)
            } catch { throw UsageError("\(error)") }
        }
        let report = AnalysisReport(model: model, family: m.config.modelType, staticAnalysis: staticPart, dynamicAnalysis: dynamicPart)
        do { try report.write(to: out) } catch { throw UsageError("--out \(out): cannot be written (\(TrainCheckpoint.reason(error))); choose another --out") }
        if json {
            say(String(decoding: try report.json(), as: UTF8.self))
        } else {
            for line in report.summary { say(line) }
            say("wrote \(out)/report.html and \(out)/analysis.json")
        }
    }
}
