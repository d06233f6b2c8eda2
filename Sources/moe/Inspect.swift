import ArgumentParser
import Foundation
import MoEAnalysis

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Architecture, parameters and active parameters per token of a checkpoint.")

    @Option(help: "Checkpoint directory, or a run directory (its newest checkpoint).") var checkpoint: String?
    @Option(help: "Model directory (Hugging Face format or a swift-moe checkpoint); the same as --checkpoint.") var model: String?

    func run() throws {
        guard let location = checkpoint ?? model else { throw UsageError("missing --model (or --checkpoint): the model directory to inspect") }
        let dir = try ModelLocation.checkpointDirectory(location)
        let model = try ModelLocation.loadAny(location)
        let c = model.config
        print("checkpoint: \(dir)")
        print("model_type: \(c.modelType)")
        print("layers \(c.numLayers), hidden \(c.hiddenSize), heads \(c.numHeads) (kv \(c.numKVHeads), head dim \(c.headDim)), vocab \(c.vocabSize), rope theta \(c.ropeTheta), tied head \(c.tieWordEmbeddings)")
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
}
