import ArgumentParser
import Foundation
import MoEIO
import MoEInference

struct Quantize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a copy of a Hugging Face checkpoint with block-quantized experts (q8 or q4).",
        discussion: """
            q8 is ggml's Q8_0 (blocks of 32, an f16 scale: 8.5 bits per weight); q4 is MLX's affine 4-bit with \
            group 64 (f16 scale and minimum: 4.5 bits per weight), stored with eight rows interleaved where the rows \
            come in eights. Routers, norms and the embedding keep their \
            precision. The result loads with --model like any checkpoint.
            """)

    @Option(help: "Model directory (config.json and safetensors).") var model: String
    @Option(help: "Block format: q8 or q4.") var to: String
    @Option(help: "Output directory (must not exist).") var out: String
    @Option(help: "Which matrices: experts (the routed experts) or all (also attention, shared experts, dense MLPs and the head).")
    var matrices = "experts"

    func run() throws {
        guard let format = BlockFormat(rawValue: to), BlockFormat.choices.contains(format) else {
            throw UsageError("invalid --to \(to): use \(BlockFormat.choices.map(\.rawValue).joined(separator: " or "))")
        }
        guard let scope = Quantizer.Scope(rawValue: matrices) else {
            throw UsageError("invalid --matrices \(matrices): use \(Quantizer.Scope.allCases.map(\.rawValue).joined(separator: " or "))")
        }
        let start = Date()
        let s = try Quantizer.quantize(model: model, to: format, scope: scope, out: out) { line in
            warn("quantize: \(line)")
        }
        say(String(format: "wrote %@: %d of %d tensors as %@, %.2f GB -> %.2f GB, %.1f s", out, s.quantized, s.tensors, format.rawValue,
                   Double(s.inputBytes) / 1e9, Double(s.outputBytes) / 1e9, Date().timeIntervalSince(start)))
    }
}
