import Foundation

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


/// The header parser, on bytes alone (Foundation only, so the fuzz target builds it by itself).
public enum SafetensorsHeader {
    public static let maxHeaderBytes = 100 << 20

    /// Parses and checks the whole layout of a safetensors file held in `data`: header length, UTF-8 JSON,
    /// duplicate keys, dtypes, shapes, offsets contiguous and in bounds, no trailing bytes. `path` only names
    /// the file in errors. Returns where the data buffer starts, the tensors in offset order and the metadata.
    public static func parse(_ data: Data, path: String) throws -> (dataStart: Int, tensors: [TensorInfo], metadata: [String: String]) {
        guard data.count >= 8 else {
            throw SafetensorsError(path, "is \(data.count) bytes, shorter than the 8-byte header length", hint: "the file is truncated; re-download or re-export it")
        }
        let n = data.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: 0, as: UInt64.self)) }
        guard n <= UInt64(maxHeaderBytes) else {
            throw SafetensorsError(path, "declares a \(n)-byte header, over the \(maxHeaderBytes)-byte limit", hint: "the file is corrupt or not safetensors")
        }
        guard 8 + Int(n) <= data.count else {
            throw SafetensorsError(path, "declares a \(n)-byte header but has only \(data.count - 8) bytes after the length", hint: "the file is truncated; re-download or re-export it")
        }
        let dataStart = 8 + Int(n)
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
            guard let shapeAny = entry["shape"] as? [Any], let shape = integers(shapeAny), shape.allSatisfy({ $0 >= 0 }) else {
                throw SafetensorsError(path, tensor: name, "has a shape that is not a list of non-negative integers", hint: "the file is corrupt")
            }
            guard let offAny = entry["data_offsets"] as? [Any], let off = integers(offAny), off.count == 2 else {
                throw SafetensorsError(path, tensor: name, "has data_offsets that are not two integers", hint: "the file is corrupt")
            }
            let (begin, end) = (off[0], off[1])
            guard begin >= 0, end >= begin, end <= bufferLength else {
                throw SafetensorsError(path, tensor: name, "data_offsets [\(begin), \(end)] fall outside the \(bufferLength)-byte buffer", hint: "the file is truncated or corrupt")
            }
            var count = 1
            for s in shape {
                let (m, overflow) = count.multipliedReportingOverflow(by: s)
                guard !overflow, m <= Int(Int32.max) * 64 else {
                    throw SafetensorsError(path, tensor: name, "has a shape \(shape) too large to address", hint: "the file is corrupt")
                }
                count = m
            }
            guard end - begin == count * dtype.size else {
                throw SafetensorsError(path, tensor: name, "holds \(end - begin) bytes but \(dtype.rawValue) \("[" + shape.map(String.init).joined(separator: ", ") + "]") needs \(count * dtype.size)", hint: "the file is corrupt")
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
        return (dataStart, infos, meta)
    }

    static func integers(_ a: [Any]) -> [Int]? {
        var out: [Int] = []
        for v in a {
            guard let n = v as? NSNumber, n.doubleValue == n.doubleValue.rounded(), abs(n.doubleValue) < 9e15 else { return nil }
            out.append(n.intValue)
        }
        return out
    }
}
