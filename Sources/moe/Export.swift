import ArgumentParser
import Foundation
import MoEAnalysis

struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a swift-moe checkpoint as a Hugging Face checkpoint (mixtral, qwen2_moe, deepseek_v3 or glm4_moe).",
        discussion: """
            The family follows the router: softmax top-k renormalized without a shared expert is mixtral; softmax \
            top-k with a gated shared expert is qwen2_moe; the grouped sigmoid router (DeepSeek-V3's) is deepseek_v3 \
            with latent attention, and glm4_moe (DeepSeek-V3's MoE layout) with grouped-query attention. transformers' AutoModelForCausalLM loads the \
            result; `moe logits --model OUT` reads it back.
            """)

    @Option(help: "Checkpoint directory, or a run directory (its newest checkpoint).") var checkpoint: String
    @Option(help: "Output format: hf.") var to = "hf"
    @Argument(help: "Output directory (created; config.json, generation_config.json and model.safetensors are replaced).") var out: String

    func run() throws {
        guard to == "hf" else { throw UsageError("invalid --to \(to): the one format is hf") }
        let dir = try ModelLocation.checkpointDirectory(checkpoint)
        let model = try ModelLocation.loadAny(dir)
        guard model.config.modelType == "swift_moe" else {
            throw UsageError("\(dir) is already a \(model.config.modelType) checkpoint; export writes swift-moe checkpoints")
        }
        let family: String
        do { family = try HuggingFace.export(model, to: out) } catch { throw UsageError("\(error)") }
        say("wrote \(out) (\(family), \(model.parameterCount) parameters, float32) from \(dir)")
    }
}
