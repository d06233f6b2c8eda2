import Foundation
import MoEIO
import MoEModels
import MoETensor

/// `moe quantize`: writes a checkpoint whose expert matrices (or, with `.all`, every large matrix but the
/// embedding and the routers) are stored in one of swift-moe's block formats, everything else as it was. Routers,
/// norms and the embedding keep their precision: a quantized router changes which experts are chosen.
///
/// The output is written into a temporary directory beside OUT and renamed to OUT at the end, so a failure
/// leaves no half-written model behind.
public enum Quantizer {
    public enum Scope: String, CaseIterable, Sendable {
        /// The routed experts only.
        case experts
        /// Every matrix except the embedding, the routers and the shared-expert gates.
        case all
    }

    public struct Summary: Sendable {
        public let tensors: Int, quantized: Int
        public let inputBytes: Int, outputBytes: Int
    }

    public struct QuantizeError: Error, CustomStringConvertible {
        public let description: String
        init(_ d: String) { description = d }
    }

    /// Whether the tensor `name` of rank >= 2 is quantized in `scope`.
    public static func selects(_ name: String, rank: Int, scope: Scope) -> Bool {
        guard rank >= 2 else { return false }
        if name.contains(".experts.") { return true }
        guard scope == .all else { return false }
        let keep = ["embed", "wte", "router", ".gate.weight", ".gate.wg.", "shared_expert_gate", "e_score_correction"]
        return !keep.contains { name.contains($0) }
    }

    public static func quantize(
        model dir: String, to format: BlockFormat, scope: Scope, out: String, progress: @escaping (String) -> Void = { _ in }
    ) throws -> Summary {
        let fm = FileManager.default
        guard BlockFormat.choices.contains(format) else {
            throw QuantizeError("\(format.rawValue) is a storage layout, not a target; quantize --to \(BlockFormat.choices.map(\.rawValue).joined(separator: " or "))")
        }
        guard !fm.fileExists(atPath: out) else {
            throw QuantizeError("\(out): already exists; choose another --out or remove it")
        }
        let checkpoint = try SafetensorsCheckpoint(directory: dir)
        var config = try HuggingFace.readConfig(dir).json
        if config["quantization_config"] != nil || checkpoint.files.contains(where: { !$0.quantized.isEmpty || !$0.mxfp4.isEmpty }) {
            throw QuantizeError("\(dir): is already quantized; quantize the original 16- or 32-bit checkpoint")
        }
        if config["model_type"] as? String == "gpt_oss" {
            throw QuantizeError("\(dir): gpt_oss stores its experts transposed ([in, out]), which q8/q4 rows cannot represent yet; run the released MXFP4 checkpoint, or this one as it is")
        }
        // Plan every tensor first, so a matrix that cannot be represented stops the run before anything is written.
        struct Item { let file: SafetensorsFile; let info: TensorInfo; let quantize: Bool }
        var items: [Item] = []
        for f in checkpoint.files {
            for t in f.tensors {
                let q = selects(t.name, rank: t.shape.count, scope: scope)
                if q {
                    guard t.dtype.isFloatingPoint else {
                        throw QuantizeError("\(f.path): tensor '\(t.name)' has dtype \(t.dtype.rawValue); only floating-point matrices can be quantized")
                    }
                    let cols = t.shape[t.shape.count - 1]
                    guard cols % format.blockSize == 0 else {
                        throw QuantizeError("\(f.path): tensor '\(t.name)' has \(cols) columns, not a multiple of \(format.rawValue)'s block of \(format.blockSize), so it cannot be represented; use \(format == .q4 ? "q8 or " : "")--matrices experts, or keep the model unquantized")
                    }
                }
                items.append(Item(file: f, info: t, quantize: q))
            }
        }
        let parent = (out as NSString).deletingLastPathComponent
        let temp = (parent.isEmpty ? "." : parent) + "/." + (out as NSString).lastPathComponent + ".partial-\(getpid())"
        try? fm.removeItem(atPath: temp)
        do {
            try fm.createDirectory(atPath: temp, withIntermediateDirectories: true)
        } catch {
            throw QuantizeError("\(out): cannot create the output directory (\(error.localizedDescription)); check the path and permissions")
        }
        do {
            // The small files beside the weights (tokenizer, generation config...) are copied as they are.
            for name in try fm.contentsOfDirectory(atPath: dir).sorted()
            where !name.hasSuffix(".safetensors") && name != "model.safetensors.index.json" && name != "config.json" {
                var isDir: ObjCBool = false
                if fm.fileExists(atPath: dir + "/" + name, isDirectory: &isDir), !isDir.boolValue {
                    try fm.copyItem(atPath: dir + "/" + name, toPath: temp + "/" + name)
                }
            }
            config["quantization_config"] = ["quant_method": "swift_moe", "format": format.rawValue, "matrices": scope.rawValue]
            try AtomicFile.write(try JSONSerialization.data(withJSONObject: config, options: [.prettyPrinted, .sortedKeys]), to: temp + "/config.json")

            var quantizedMeta: [String: Any] = [:]
            var payloads: [(String, SafetensorsWriter.Payload)] = []
            var outputBytes = 0, done = 0
            let count = items.count
            for item in items {
                let t = item.info
                if item.quantize {
                    let cols = t.shape[t.shape.count - 1], rows = t.shape.dropLast().reduce(1, *), rowBytes = format.rowBytes(cols)
                    let stored = format.storage(rows: t.shape[t.shape.count - 2])
                    quantizedMeta[t.name] = ["format": stored.rawValue, "shape": t.shape]
                    outputBytes += rows * rowBytes
                    payloads.append((t.name, .stream(dtype: "U8", shape: [rows, rowBytes], byteCount: rows * rowBytes) { emit in
                        // Rows per piece: 8 MB of f32, in whole blocks of the stored format's rows.
                        let unit = stored.rowBlock
                        let block = Swift.max(1, (8 << 20) / Swift.max(cols * 4 * unit, 1)) * unit
                        let floats = UnsafeMutablePointer<Float>.allocate(capacity: block * cols)
                        let codes = UnsafeMutableRawPointer.allocate(byteCount: block * rowBytes, alignment: 64)
                        defer {
                            floats.deallocate()
                            codes.deallocate()
                        }
                        for r0 in stride(from: 0, to: rows, by: block) {
                            let n = Swift.min(block, rows - r0)
                            item.file.floats(t, (r0 * cols)..<((r0 + n) * cols), into: floats)
                            // f16 scales and minimums reach 65504: larger weights (or NaN, infinity) cannot be stored.
                            if let i = (0..<(n * cols)).first(where: { !floats[$0].isFinite || abs(floats[$0]) > 60000 }) {
                                let (row, v) = (r0 + i / cols, floats[i])
                                throw QuantizeError("\(item.file.path): tensor '\(t.name)' has the value \(v) in row \(row), which \(format.rawValue)'s f16 scales cannot represent; keep this tensor unquantized (--matrices experts) or fix the weights")
                            }
                            Parallel.forRange(n / unit, grain: Swift.max(1, 8 / unit)) { r in
                                let first = r.lowerBound * unit
                                stored.quantize(floats + first * cols, rows: r.count * unit, into: codes + first * rowBytes, cols: cols)
                            }
                            try emit(UnsafeRawBufferPointer(start: codes, count: n * rowBytes))
                        }
                        done += 1
                        if done % 32 == 0 || done == count { progress("\(done)/\(count) tensors") }
                    }))
                } else {
                    outputBytes += t.end - t.begin
                    payloads.append((t.name, .stream(dtype: t.dtype.rawValue, shape: t.shape, byteCount: t.end - t.begin) { emit in
                        try emit(UnsafeRawBufferPointer(start: item.file.bytes(of: t), count: t.end - t.begin))
                        done += 1
                        if done % 32 == 0 || done == count { progress("\(done)/\(count) tensors") }
                    }))
                }
            }
            let meta = String(decoding: try JSONSerialization.data(withJSONObject: quantizedMeta, options: [.sortedKeys]), as: UTF8.self)
            try SafetensorsWriter.write(payloads, metadata: ["format": "pt", SafetensorsFile.quantizationKey: meta], to: temp + "/model.safetensors")
            try fm.moveItem(atPath: temp, toPath: out)
            AtomicFile.syncDirectory(parent.isEmpty ? "." : parent)
            let inputBytes = items.reduce(0) { $0 + $1.info.end - $1.info.begin }
            return Summary(tensors: items.count, quantized: items.filter(\.quantize).count, inputBytes: inputBytes, outputBytes: outputBytes)
        } catch {
            try? fm.removeItem(atPath: temp)
            throw error
        }
    }
}
