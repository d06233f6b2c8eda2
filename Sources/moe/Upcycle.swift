import ArgumentParser
import Foundation
import MoEAnalysis

struct Upcycle: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Turn a trained dense run into an MoE whose experts start as copies of its FFNs (sparse upcycling).",
        discussion: """
            Every expert is a copy of the dense FFN, or with --granularity G of one of its G-way shards (down \
            projections scaled by G; the G shards of a group share a router row); the router is new, every other \
            weight is copied, so the MoE computes the dense model's function before any training. Writes \
            OUT/checkpoints/step-S with the dense checkpoint's step, data position and schedule and a new \
            optimizer; continue with moe train --resume OUT/checkpoints/step-S --steps MORE --out OUT.
            """)

    @Option(help: "The dense run or checkpoint directory (a run directory uses its newest checkpoint).") var from: String
    @Option(help: "Experts per MoE layer (a multiple of the granularity).") var experts: Int
    @Option(name: .customLong("top-k"), help: "Experts per token, a multiple of the granularity (default 2 x granularity).") var topK: Int?
    @Option(help: "Split each FFN into this many shards (a divisor of its width).") var granularity = 1
    @Option(help: "Which layers become MoE: every or every-other (layers 1, 3, ...).") var layers = "every"
    @Option(help: "Seed of the new router.") var seed: UInt64 = 1
    @Option(help: "Output run directory (must not hold checkpoints yet).") var out: String

    func run() throws {
        guard let placement = Upcycling.Placement(rawValue: layers) else {
            throw UsageError("invalid --layers \(layers): use every or every-other")
        }
        let source = try ModelLocation.checkpointDirectory(from)
        guard FileManager.default.fileExists(atPath: source + "/trainer_state.json") else {
            throw UsageError("\(source) is not a training checkpoint (no trainer_state.json); pass a run of moe train --dense")
        }
        if !TrainCheckpoint.list(out + "/checkpoints").isEmpty {
            throw UsageError("--out \(out) already holds checkpoints; choose a new directory")
        }
        var o = Upcycling.Options(experts: experts)
        (o.topK, o.granularity, o.placement, o.seed) = (topK, granularity, placement, seed)
        let up: (dense: MoETransformer<Float>, model: MoETransformer<Float>, optimizer: AdamW<Float>, state: TrainerState)
        do { up = try Upcycling.upcycle(checkpoint: source, o) } catch let e as Upcycling.UpcycleError {
            throw UsageError(e.description)
        } catch { throw UsageError("\(source): \(error)") }
        // The equality the construction promises, on a fixed text.
        let dense = up.dense
        let ids = ByteTokenizer().encode("\nthe small farmer watches the bright city.\n47+5=52\ndef f8(x): return x * 8 + 12\n")
        let diff = dense(ids: ids, batch: 1, .inference).logits.value.maxAbsDifference(up.model(ids: ids, batch: 1, .inference).logits.value)
        let target = out + "/checkpoints/" + TrainCheckpoint.name(step: up.state.step)
        do { try TrainCheckpoint.save(model: up.model, optimizer: up.optimizer, state: up.state, to: target) } catch {
            throw UsageError("cannot write \(target): \(error)")
        }
        let m = up.model.config.moe!
        say("upcycled \(source) (step \(up.state.step)): \(up.model.moeLayers.count) of \(up.model.config.numLayers) layers now hold \(m.numExperts) experts of width \(m.expertHiddenSize), top-\(m.expertsPerToken)\(granularity > 1 ? " (granularity \(granularity))" : "")")
        say("parameters: \(dense.parameterCount) dense -> \(up.model.parameterCount), \(up.model.activeParameterCount) active per token")
        say(String(format: "largest |logit difference| from the dense model on %d bytes: %.2e", ids.count, diff))
        say("wrote \(target); continue with: moe train --resume \(target) --steps \(up.state.step + up.state.train.steps) --out \(out)")
    }
}
