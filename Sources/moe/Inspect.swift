import ArgumentParser
import Foundation
import MoEAnalysis
import MoEInference

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Architecture, parameters and active parameters per token of a checkpoint.")

    @Option(help: "Checkpoint directory, or a run directory (its newest checkpoint).") var checkpoint: String?
    @Option(help: "Model directory (Hugging Face format or a swift-moe checkpoint); the same as --checkpoint.") var model: String?

    func run() throws {
        guard let location = checkpoint ?? model else { throw UsageError("missing --model (or --checkpoint): the model directory to inspect") }
        let dir = try ModelLocation.checkpointDirectory(location)
        if InferenceModel.supports(directory: dir) {
            // The engine maps the files and reads only headers and small vectors: any size of checkpoint.
            InferenceModel.guardMappedFiles()
            let m: InferenceModel
            do { m = try InferenceModel(directory: dir) } catch { throw UsageError("\(error)") }
            let c = m.config
            print("checkpoint: \(dir)")
            print("model_type: \(c.modelType)")
            print("layers \(c.numLayers), hidden \(c.hiddenSize), heads \(c.numHeads) (kv \(c.numKVHeads), head dim \(c.headDim)), vocab \(c.vocabSize), rope theta \(c.ropeTheta)\(Self.attentionExtras(c)), tied head \(c.tieWordEmbeddings)")
            print("parameters: \(m.parameterCount)")
            print("active per token: \(c.activeParameterCount(total: m.parameterCount))")
            let formats = m.formats.sorted { $0.key.rawValue < $1.key.rawValue }.map { "\($0.value) \($0.key.rawValue)" }.joined(separator: ", ")
            print(String(format: "weights: %.3f GB as stored, memory-mapped (matrices: %@); %.1f MB read per decoded token",
                         Double(m.weightBytes) / 1e9, formats, Double(m.decodeBytesPerToken) / 1e6))
            print("layer  feed-forward")
            for i in 0..<c.numLayers {
                if c.isMoE(layer: i), let mc = c.moe {
                    var s = "MoE: \(mc.numExperts) experts x \(mc.expertActivation.rawValue) \(mc.expertHiddenSize), top-\(mc.expertsPerToken), router \(mc.router.rawValue)"
                    if mc.sharedExpertHiddenSize > 0 { s += ", shared \(mc.sharedExpertHiddenSize)\(mc.sharedExpertGate ? " (gated)" : "")" }
                    print(String(format: "%5d  ", i) + s)
                } else {
                    print(String(format: "%5d  ", i) + "dense SwiGLU \(c.intermediateSize)")
                }
            }
            return
        }
        let model = try ModelLocation.loadAny(location)
        let c = model.config
        print("checkpoint: \(dir)")
        print("model_type: \(c.modelType)")
        print("layers \(c.numLayers), hidden \(c.hiddenSize), heads \(c.numHeads) (kv \(c.numKVHeads), head dim \(c.headDim)), vocab \(c.vocabSize), rope theta \(c.ropeTheta)\(Self.attentionExtras(c)), tied head \(c.tieWordEmbeddings)")
        print("parameters: \(model.parameterCount)")
        print("active per token: \(model.activeParameterCount)")
        print("layer  feed-forward")
        for (i, layer) in model.layers.enumerated() {
            if let moe = layer.moe {
                let m = moe.config
                var s = "MoE: \(m.numExperts) experts x \(m.expertActivation.rawValue) \(m.expertHiddenSize), top-\(m.expertsPerToken), router \(m.router.rawValue)"
                if m.sharedExpertHiddenSize > 0 { s += ", shared \(m.sharedExpertHiddenSize)\(m.sharedExpertGate ? " (gated)" : "")" }
                if let cf = m.capacityFactor { s += ", capacity \(cf)" }
                print(String(format: "%5d  ", i) + s + " (\(moe.parameterCount) parameters)")
            } else if let dense = layer.dense {
                print(String(format: "%5d  ", i) + "dense SwiGLU \(c.intermediateSize) (\(dense.parameterCount) parameters)")
            }
        }
    }

    /// YaRN, sinks and sliding windows, when the config has them.
    static func attentionExtras(_ c: TransformerConfig) -> String {
        var parts: [String] = []
        if let y = c.ropeScaling { parts.append("YaRN factor \(y.factor) over \(y.originalMaxPositions)") }
        if c.attentionSinks { parts.append("attention sinks") }
        if let w = c.slidingWindow, !c.slidingLayers.isEmpty { parts.append("sliding window \(w) on layers \(c.slidingLayers.map(String.init).joined(separator: ","))") }
        return parts.isEmpty ? "" : " (" + parts.joined(separator: "; ") + ")"
    }
}
