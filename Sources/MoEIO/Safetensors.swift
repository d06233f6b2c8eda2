import Foundation
import MoETensor

/// The safetensors format (Hugging Face): an 8-byte little-endian header length N, N bytes of UTF-8 JSON
/// mapping each tensor name to {dtype, shape, data_offsets: [begin, end]} (offsets relative to the byte
/// buffer after the header) plus an optional "__metadata__" string map, then the byte buffer.
public enum DType: String, Sendable, CaseIterable {
    case F64, F32, F16, BF16, I64, I32, I16, I8, U64, U32, U16, U8, BOOL

    public var size: Int {
        switch self {
        case .F64, .I64, .U64: return 8
        case .F32, .I32, .U32: return 4
        case .F16, .BF16, .I16, .U16: return 2
        case .I8, .U8, .BOOL: return 1
        }
    }

    public var isFloatingPoint: Bool { [.F64, .F32, .F16, .BF16].contains(self) }
}

/// A problem with a safetensors file: names the file, the tensor (when there is one) and the fix.
public struct SafetensorsError: Error, CustomStringConvertible, Equatable {
    public let path: String
    public let tensor: String?
    public let problem: String
    public let hint: String

    public init(_ path: String, tensor: String? = nil, _ problem: String, hint: String) {
        self.path = path
        self.tensor = tensor
        self.problem = problem
        self.hint = hint
    }

    public var description: String {
        "\(path)\(tensor.map { ": tensor '\($0)'" } ?? ""): \(problem); \(hint)"
    }
}

public struct TensorInfo: Sendable, Equatable {
    public let name: String
    public let dtype: DType
    public let shape: [Int]
    /// Byte range inside the data buffer.
    public let begin: Int
    public let end: Int
}

/// A strictly checked, memory-mapped safetensors file.
public final class SafetensorsFile: @unchecked Sendable {
    public static let maxHeaderBytes = 100 << 20

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
        guard data.count >= 8 else {
            throw SafetensorsError(path, "is \(data.count) bytes, shorter than the 8-byte header length", hint: "the file is truncated; re-download or re-export it")
        }
        let n = data.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: 0, as: UInt64.self)) }
        guard n <= UInt64(Self.maxHeaderBytes) else {
            throw SafetensorsError(path, "declares a \(n)-byte header, over the \(Self.maxHeaderBytes)-byte limit", hint: "the file is corrupt or not safetensors")
        }
        guard 8 + Int(n) <= data.count else {
            throw SafetensorsError(path, "declares a \(n)-byte header but has only \(data.count - 8) bytes after the length", hint: "the file is truncated; re-download or re-export it")
        }
        dataStart = 8 + Int(n)
        let headerBytes = data.subdata(in: 8..<dataStart)
        guard String(data: headerBytes, encoding: .utf8) != nil else {
            throw SafetensorsError(path, "header is not valid UTF-8", hint: "the file is corrupt or not safetensors")
        }
        let header: [String: Any]
        do {
            guard let obj = try JSONSerialization.jsonObject(with: headerBytes) as? [String: Any] else {
                throw SafetensorsError(path, "header is not a JSON object", hint: "the file is corrupt or not safetensors")
            }
            header = obj
        } catch let e as SafetensorsError {
            throw e
        } catch {
            throw SafetensorsError(path, "header is not valid JSON", hint: "the file is corrupt or not safetensors")
        }
        if let dup = JSONKeys.firstDuplicateTopLevelKey(headerBytes) {
            throw SafetensorsError(path, tensor: dup, "appears twice in the header", hint: "the file is corrupt; re-export it")
        }
        var meta: [String: String] = [:]
        var infos: [TensorInfo] = []
        let bufferLength = data.count - dataStart
        for (name, value) in header {
            if name == "__metadata__" {
                guard let m = value as? [String: Any], m.values.allSatisfy({ $0 is String }) else {
                    throw SafetensorsError(path, "__metadata__ is not a map of strings", hint: "the file is corrupt")
                }
                meta = m.mapValues { $0 as! String }
                continue
            }
            guard let entry = value as? [String: Any] else {
                throw SafetensorsError(path, tensor: name, "entry is not an object", hint: "the file is corrupt")
            }
            guard let dt = entry["dtype"] as? String, let dtype = DType(rawValue: dt) else {
                throw SafetensorsError(path, tensor: name, "has unknown dtype \(entry["dtype"] ?? "none")", hint: "supported: \(DType.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            guard let shapeAny = entry["shape"] as? [Any], let shape = Self.integers(shapeAny), shape.allSatisfy({ $0 >= 0 }) else {
                throw SafetensorsError(path, tensor: name, "has a shape that is not a list of non-negative integers", hint: "the file is corrupt")
            }
            guard let offAny = entry["data_offsets"] as? [Any], let off = Self.integers(offAny), off.count == 2 else {
                throw SafetensorsError(path, tensor: name, "has data_offsets that are not two integers", hint: "the file is corrupt")
            }
            let (begin, end) = (off[0], off[1])
            guard begin >= 0, end >= begin, end <= bufferLength else {
                throw SafetensorsError(path, tensor: name, "data_offsets [\(begin), \(end)] fall outside the \(bufferLength)-byte buffer", hint: "the file is truncated or corrupt")
            }
            let count = shape.reduce(1, *)
            guard end - begin == count * dtype.size else {
                throw SafetensorsError(path, tensor: name, "holds \(end - begin) bytes but \(dtype.rawValue) \(Shape.describe(shape)) needs \(count * dtype.size)", hint: "the file is corrupt")
            }
            infos.append(TensorInfo(name: name, dtype: dtype, shape: shape, begin: begin, end: end))
        }
        infos.sort { ($0.begin, $0.end, $0.name) < ($1.begin, $1.end, $1.name) }
        var expected = 0
        for t in infos {
            guard t.begin == expected else {
                let what = t.begin < expected ? "overlaps the tensor before it" : "leaves a gap of \(t.begin - expected) bytes before it"
                throw SafetensorsError(path, tensor: t.name, what, hint: "the file is corrupt; offsets must be contiguous")
            }
            expected = t.end
        }
        guard expected == bufferLength else {
            throw SafetensorsError(path, "has \(bufferLength - expected) bytes after the last tensor", hint: "the file is corrupt; no trailing bytes are allowed")
        }
        tensors = infos
        metadata = meta
        index = Dictionary(uniqueKeysWithValues: infos.enumerated().map { ($0.element.name, $0.offset) })
    }

    static func integers(_ a: [Any]) -> [Int]? {
        var out: [Int] = []
        for v in a {
            guard let n = v as? NSNumber, n.doubleValue == n.doubleValue.rounded(), abs(n.doubleValue) < 9e15 else { return nil }
            out.append(n.intValue)
        }
        return out
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
