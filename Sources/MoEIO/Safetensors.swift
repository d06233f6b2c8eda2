import Foundation
import MoETensor

/// A strictly checked, memory-mapped safetensors file.
public final class SafetensorsFile: @unchecked Sendable {
    public static let maxHeaderBytes = SafetensorsHeader.maxHeaderBytes

    public let path: String
    let data: Data
    let dataStart: Int
    /// Tensors in file order.
    public let tensors: [TensorInfo]
    public let metadata: [String: String]
    private let index: [String: Int]

    public init(path: String) throws {
        self.path = path
        let url = URL(fileURLWithPath: path)
        guard FileManager.default.fileExists(atPath: path) else {
            throw SafetensorsError(path, "file not found", hint: "check the path")
        }
        do { data = try Data(contentsOf: url, options: .alwaysMapped) } catch {
            throw SafetensorsError(path, "cannot be read (\(error.localizedDescription))", hint: "check the file's permissions")
        }
        (dataStart, tensors, metadata) = try SafetensorsHeader.parse(data, path: path)
        index = Dictionary(uniqueKeysWithValues: tensors.enumerated().map { ($0.element.name, $0.offset) })
    }

    public var names: [String] { tensors.map(\.name) }
    public func info(_ name: String) -> TensorInfo? { index[name].map { tensors[$0] } }

    /// A floating-point tensor converted to T (F16 and BF16 widen exactly; F64 -> Float rounds).
    public func tensor<T: TensorScalar>(_ name: String, as: T.Type = T.self) throws -> Tensor<T> {
        guard let info = info(name) else {
            throw SafetensorsError(path, tensor: name, "is missing", hint: "the checkpoint does not match the model; check the config")
        }
        guard info.dtype.isFloatingPoint else {
            throw SafetensorsError(path, tensor: name, "has dtype \(info.dtype.rawValue), not a floating-point type", hint: "expected F32, F16, BF16 or F64")
        }
        let out = Tensor<T>(uninitializedShape: info.shape)
        let dst = out.storage.base
        let count = info.shape.reduce(1, *)
        data.withUnsafeBytes { raw in
            let src = raw.baseAddress! + dataStart + info.begin
            switch info.dtype {
            case .F32: for i in 0..<count { dst[i] = T(src.loadUnaligned(fromByteOffset: 4 * i, as: Float.self)) }
            case .F64: for i in 0..<count { dst[i] = T(src.loadUnaligned(fromByteOffset: 8 * i, as: Double.self)) }
            case .BF16:
                for i in 0..<count {
                    let bits = UInt32(src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) << 16
                    dst[i] = T(Float(bitPattern: bits))
                }
            case .F16: for i in 0..<count { dst[i] = T(Half.toFloat(src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) }
            default: break
            }
        }
        return out
    }

    /// A 16-bit floating-point tensor kept as it is stored (F16 or BF16 bit patterns, no conversion), for
    /// half-precision inference.
    public func halfBits(_ name: String) throws -> (dtype: DType, shape: [Int], bits: [UInt16]) {
        guard let info = info(name) else {
            throw SafetensorsError(path, tensor: name, "is missing", hint: "the checkpoint does not match the model; check the config")
        }
        guard info.dtype == .F16 || info.dtype == .BF16 else {
            throw SafetensorsError(path, tensor: name, "has dtype \(info.dtype.rawValue), not F16 or BF16", hint: "read it with tensor(_:as:) instead")
        }
        let count = info.shape.reduce(1, *)
        let bits: [UInt16] = data.withUnsafeBytes { raw in
            let src = raw.baseAddress! + dataStart + info.begin
            return (0..<count).map { UInt16(littleEndian: src.loadUnaligned(fromByteOffset: 2 * $0, as: UInt16.self)) }
        }
        return (info.dtype, info.shape, bits)
    }

    /// An integer tensor's values as Int (for ids, counts, state).
    public func integers(_ name: String) throws -> (values: [Int], shape: [Int]) {
        guard let info = info(name) else {
            throw SafetensorsError(path, tensor: name, "is missing", hint: "the file does not match what reads it")
        }
        let count = info.shape.reduce(1, *)
        let values: [Int] = data.withUnsafeBytes { raw in
            let src = raw.baseAddress! + dataStart + info.begin
            return (0..<count).map { i -> Int in
                switch info.dtype {
                case .I64: return Int(src.loadUnaligned(fromByteOffset: 8 * i, as: Int64.self))
                case .U64: return Int(truncatingIfNeeded: src.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self))
                case .I32: return Int(src.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self))
                case .U32: return Int(src.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))
                case .I16: return Int(src.loadUnaligned(fromByteOffset: 2 * i, as: Int16.self))
                case .U16: return Int(src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))
                case .I8: return Int(src.loadUnaligned(fromByteOffset: i, as: Int8.self))
                case .U8, .BOOL: return Int(src.loadUnaligned(fromByteOffset: i, as: UInt8.self))
                default: return Int(src.loadUnaligned(fromByteOffset: 4 * i, as: Float.self))
                }
            }
        }
        return (values, info.shape)
    }
}

/// IEEE half precision to single (exact).
enum Half {
    static func toFloat(_ h: UInt16) -> Float {
        let sign = UInt32(h & 0x8000) << 16
        let exp = Int((h >> 10) & 0x1F), mant = UInt32(h & 0x3FF)
        if exp == 0 {
            if mant == 0 { return Float(bitPattern: sign) }
            // Subnormal half: mant * 2^-24.
            let v = Float(mant) * Float(sign: .plus, exponent: -24, significand: 1)
            return sign != 0 ? -v : v
        }
        if exp == 31 { return Float(bitPattern: sign | 0x7F80_0000 | (mant << 13)) }
        return Float(bitPattern: sign | UInt32(exp - 15 + 127) << 23 | (mant << 13))
    }
}

/// Writes safetensors files: tensors in the given order, header padded with spaces to a multiple of 8 bytes.
public enum SafetensorsWriter {
    public enum Payload {
        case float(Tensor<Float>)
        case double(Tensor<Double>)
        case int64([Int], shape: [Int])
    }

    public static func write(_ tensors: [(String, Payload)], metadata: [String: String] = [:], to path: String) throws {
        var header: [String: Any] = [:]
        if !metadata.isEmpty { header["__metadata__"] = metadata }
        var offset = 0
        for (name, p) in tensors {
            let (dtype, shape, bytes): (String, [Int], Int)
            switch p {
            case .float(let t): (dtype, shape, bytes) = ("F32", t.shape, t.count * 4)
            case .double(let t): (dtype, shape, bytes) = ("F64", t.shape, t.count * 8)
            case .int64(let v, let s): (dtype, shape, bytes) = ("I64", s, v.count * 8)
            }
            header[name] = ["dtype": dtype, "shape": shape, "data_offsets": [offset, offset + bytes]]
            offset += bytes
        }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        while json.count % 8 != 0 { json.append(0x20) }
        try AtomicFile.write(to: path) { fd in
            var n = UInt64(json.count).littleEndian
            try withUnsafeBytes(of: &n) { try AtomicFile.writeAll(fd, $0, path: path) }
            try json.withUnsafeBytes { try AtomicFile.writeAll(fd, $0, path: path) }
            for (_, p) in tensors {
                switch p {
                case .float(let t): try t.withUnsafeBufferPointer { try AtomicFile.writeAll(fd, UnsafeRawBufferPointer($0), path: path) }
                case .double(let t): try t.withUnsafeBufferPointer { try AtomicFile.writeAll(fd, UnsafeRawBufferPointer($0), path: path) }
                case .int64(let v, _):
                    let w = v.map { Int64($0).littleEndian }
                    try w.withUnsafeBufferPointer { try AtomicFile.writeAll(fd, UnsafeRawBufferPointer($0), path: path) }
                }
            }
        }
    }
}

/// The weights of one checkpoint: `model.safetensors`, or the shards listed in
/// `model.safetensors.index.json` (its `weight_map` maps each tensor to a shard file in the same directory).
/// Each tensor must live in exactly the shard the index names, and every tensor of every shard must be listed.
public final class SafetensorsCheckpoint: @unchecked Sendable {
    public let files: [SafetensorsFile]
    private let location: [String: Int]
    /// What errors name when no single shard is at fault.
    public let path: String

    private init(files: [SafetensorsFile], location: [String: Int], path: String) {
        self.files = files
        self.location = location
        self.path = path
    }

    public convenience init(file: SafetensorsFile) {
        self.init(files: [file], location: Dictionary(uniqueKeysWithValues: file.names.map { ($0, 0) }), path: file.path)
    }

    /// Opens the weights of the model directory `dir`: the index when there is one, else model.safetensors.
    public convenience init(directory dir: String) throws {
        let indexPath = dir + "/model.safetensors.index.json"
        guard FileManager.default.fileExists(atPath: indexPath) else {
            self.init(file: try SafetensorsFile(path: dir + "/model.safetensors"))
            return
        }
        guard let data = FileManager.default.contents(atPath: indexPath),
            let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
        else {
            throw SafetensorsError(indexPath, "is not valid JSON", hint: "fix or re-download the index file")
        }
        guard let map = json["weight_map"] as? [String: Any], map.values.allSatisfy({ $0 is String }), !map.isEmpty else {
            throw SafetensorsError(indexPath, "has no \"weight_map\" of tensor names to shard files", hint: "fix or re-download the index file")
        }
        let weightMap = map.mapValues { $0 as! String }
        let shardNames = Array(Set(weightMap.values)).sorted()
        for name in shardNames where name.contains("/") || name.hasPrefix(".") || !name.hasSuffix(".safetensors") {
            throw SafetensorsError(indexPath, "names the shard \"\(name)\", which is not a .safetensors file in the same directory", hint: "fix the index file")
        }
        var opened: [SafetensorsFile] = []
        for name in shardNames {
            let shardPath = dir + "/" + name
            guard FileManager.default.fileExists(atPath: shardPath) else {
                throw SafetensorsError(shardPath, "is listed in model.safetensors.index.json but not found", hint: "download every shard")
            }
            opened.append(try SafetensorsFile(path: shardPath))
        }
        var loc: [String: Int] = [:]
        for (i, f) in opened.enumerated() {
            for n in f.names {
                guard weightMap[n] == shardNames[i] else {
                    let hint = weightMap[n].map { "the index places it in \($0); fix the index file" } ?? "the index does not list it; fix the index file"
                    throw SafetensorsError(f.path, tensor: n, "is in this shard", hint: hint)
                }
                loc[n] = i
            }
        }
        if let missing = weightMap.keys.sorted().first(where: { loc[$0] == nil }) {
            throw SafetensorsError(dir + "/" + weightMap[missing]!, tensor: missing, "is listed in the index but absent from the shard", hint: "the shard is incomplete; re-download it")
        }
        self.init(files: opened, location: loc, path: indexPath)
    }

    public var names: [String] { files.flatMap(\.names) }
    /// The file that holds `name` (for error messages), or the checkpoint's path.
    public func file(of name: String) -> String { location[name].map { files[$0].path } ?? path }
    public func info(_ name: String) -> TensorInfo? { location[name].flatMap { files[$0].info(name) } }

    public func tensor<T: TensorScalar>(_ name: String, as: T.Type = T.self) throws -> Tensor<T> {
        guard let i = location[name] else {
            throw SafetensorsError(path, tensor: name, "is missing", hint: "the checkpoint does not match the model; check the config")
        }
        return try files[i].tensor(name, as: T.self)
    }
}
