import Foundation
import MoEModels
import MoETokenizers

/// The fuzz targets: each takes one input and must return or throw its own typed error; a crash, trap, hang or
/// sanitizer report is a bug. `MOE_FUZZ_FIXTURES` (Tests/Fixtures/hf) supplies the weights the config target
/// loads against.
enum FuzzTargets {
    static let names = ["safetensors-header", "config", "tokenizer", "generation-config", "index", "blocks"]

    static func run(_ name: String, _ data: Data) {
        switch name {
        case "safetensors-header": safetensorsHeader(data)
        case "config": config(data)
        case "tokenizer": tokenizer(data)
        case "generation-config": _ = try? HuggingFace.endTokens(data, path: "generation_config.json")
        case "index": index(data)
        case "blocks": blocks(data)
        default: break
        }
    }

    /// The safetensors header: what the parser accepts must be self-consistent (contiguous, in bounds, sized by
    /// dtype and shape).
    static func safetensorsHeader(_ data: Data) {
        do {
            let (start, tensors, _) = try SafetensorsHeader.parse(data, path: "fuzz.safetensors")
            var expected = 0
            for t in tensors {
                precondition(t.begin == expected && t.end >= t.begin && start + t.end <= data.count)
                precondition(t.end - t.begin == t.shape.reduce(1, *) * t.dtype.size)
                expected = t.end
            }
            precondition(start + expected == data.count)
        } catch is SafetensorsError {
        } catch {
            preconditionFailure("unexpected error type: \(error)")
        }
    }

    static let fixtures = ProcessInfo.processInfo.environment["MOE_FUZZ_FIXTURES"] ?? "Tests/Fixtures/hf"

    /// config.json through its family's mapping, the header checks and, when they pass, the build, the install
    /// and a three-token forward, against the family's fixture weights.
    static func config(_ data: Data) {
        guard let j = try? HuggingFace.parseConfig(data, path: "config.json") else { return }
        let family = (j["model_type"] as? String) ?? "mixtral"
        let dir = fixtures + "/" + (HuggingFace.supported.contains(family) && family != "swift_moe" ? family : "mixtral")
        guard let model = try? HuggingFace.load(dir, config: j) else { return }
        let vocab = model.config.vocabSize
        _ = model(ids: [0, 1 % vocab, 2 % vocab], batch: 1, ForwardContext<Float>(tape: nil))
    }

    /// tokenizer.json: parse, then encode and decode a few texts, and decode ids outside the vocabulary.
    static func tokenizer(_ data: Data) {
        guard let t = try? Tokenizer(data: data) else { return }
        for text in ["", "Hello, world!", " the  cat\n\t", "héllo 🤖 中文", "<s>[INST] x [/INST]"] {
            let ids = t.encode(text)
            _ = t.decode(ids)
        }
        _ = t.decode([-1, Int.max, 1 << 40, 0])
    }

    /// model.safetensors.index.json: what the parser accepts names only plain shard files.
    static func index(_ data: Data) {
        guard let map = try? SafetensorsIndex.parse(data, path: "model.safetensors.index.json") else { return }
        for shard in map.values { precondition(!shard.contains("/") && shard.hasSuffix(".safetensors")) }
    }

    static let scratch = NSTemporaryDirectory() + "moe-fuzz-\(getpid()).safetensors"

    /// A safetensors file with block-quantized (q8, q4) and MXFP4 tensors: open it, then dequantize every tensor
    /// it accepts (NaN and infinity are values; a read out of bounds is the bug this looks for).
    static func blocks(_ data: Data) {
        guard (try? data.write(to: URL(fileURLWithPath: scratch))) != nil else { return }
        guard let f = try? SafetensorsFile(path: scratch) else { return }
        for name in f.logicalNames { _ = try? f.tensor(name, as: Float.self) }
    }
}
