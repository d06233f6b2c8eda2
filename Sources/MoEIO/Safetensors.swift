import Foundation
import MoETensor

#if !canImport(Accelerate)
import CMoEBLAS
#endif

/// A strictly checked safetensors file, memory-mapped read-only: nothing is read until it is used, pages are
/// touched lazily (so a file larger than RAM can be inspected), and `bytes(of:)` gives a tensor's stored bytes in
/// place for the inference engine's zero-copy weights. The mapping lives as long as this object.
///
/// Block-quantized tensors (swift-moe's `moe quantize`) are U8 tensors of shape [rows, row bytes] named in the
/// metadata key `swift_moe.quantization`: a JSON object {tensor name: {"format": "q8" | "q4" | "q4x8", "shape": [...]}} whose
/// shape is the tensor's logical shape (rows = all axes but the last).
///
/// MXFP4 tensors (the OCP microscaling format the released gpt-oss checkpoints store their experts in) are a
/// pair: `X_blocks` U8 [..., rows, G, 16] (two FP4 E2M1 codes per byte, the even element in the low nibble) and
/// `X_scales` U8 [..., rows, G] (an E8M0 power of two, 2^(s - 127), per block of 32). The pair is the logical
/// tensor `X` [..., rows, 32 G] in `mxfp4`; `tensor("X")` dequantizes it.
public final class SafetensorsFile: @unchecked Sendable {
    public static let maxHeaderBytes = SafetensorsHeader.maxHeaderBytes
    /// The metadata key that lists block-quantized tensors.
    public static let quantizationKey = "swift_moe.quantization"

    public let path: String
    let data: Data
    /// The first byte of the mapping (nil for an empty file).
    let base: UnsafeRawPointer?
    let dataStart: Int
    /// Tensors in file order.
    public let tensors: [TensorInfo]
    public let metadata: [String: String]
    /// Block-quantized tensors: name -> (format, logical shape; rows are all axes but the last).
    public let quantized: [String: (format: BlockFormat, shape: [Int])]
    /// MXFP4 pairs by logical name.
    public let mxfp4: [String: MXFP4Tensor]
    private let index: [String: Int]
    /// Identity of the file when it was mapped, to notice a file replaced or truncated under the mapping.
    private let identity: FileIdentity?

    public init(path: String) throws {
        self.path = path
        guard FileManager.default.fileExists(atPath: path) else {
            throw SafetensorsError(path, "file not found", hint: "check the path")
        }
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else {
            throw SafetensorsError(path, "cannot be read (\(String(cString: strerror(errno))))", hint: "check the file's permissions")
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else {
            throw SafetensorsError(path, "is not a regular file", hint: "point at a .safetensors file")
        }
        let size = Int(st.st_size)
        if size == 0 {
            data = Data()
            base = nil
        } else {
            guard let m = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), m != MAP_FAILED else {
                throw SafetensorsError(path, "cannot be mapped (\(String(cString: strerror(errno))))", hint: "check the file and the address space")
            }
            base = UnsafeRawPointer(m)
            data = Data(bytesNoCopy: m, count: size, deallocator: .custom { p, n in munmap(p, n) })
        }
        identity = FileIdentity(st)
        (dataStart, tensors, metadata) = try SafetensorsHeader.parse(data, path: path)
        index = Dictionary(uniqueKeysWithValues: tensors.enumerated().map { ($0.element.name, $0.offset) })
        quantized = try Self.quantizedTensors(metadata, tensors: tensors, index: index, path: path)
        mxfp4 = try Self.mxfp4Pairs(tensors, index: index, path: path)
    }

    public var names: [String] { tensors.map(\.name) }
    /// The names a model refers to: the stored names, with each MXFP4 pair as its logical name.
    public var logicalNames: [String] {
        names.filter { n in !mxfp4.keys.contains { n == $0 + "_blocks" || n == $0 + "_scales" } } + mxfp4.keys.sorted()
    }
    public func info(_ name: String) -> TensorInfo? { index[name].map { tensors[$0] } }

    /// A tensor's stored bytes, in place in the mapping (valid while this file is alive).
    public func bytes(of info: TensorInfo) -> UnsafeRawPointer {
        // A zero-byte tensor at the end of the file has no byte to point at; nothing is read through it.
        guard let base else { return UnsafeRawPointer(bitPattern: 64)! }
        return base + dataStart + info.begin
    }

    /// Throws when the file on disk is no longer the one mapped (replaced, truncated or rewritten in place):
    /// reading a truncated mapping would fault, and a rewritten one would give other weights.
    public func checkUnchanged() throws {
        var st = stat()
        guard stat(path, &st) == 0, let identity, identity == FileIdentity(st) else {
            throw SafetensorsError(path, "changed on disk while it was mapped (replaced, truncated or rewritten)", hint: "do not modify a model while it is in use; load it again")
        }
    }

    /// A floating-point (or block-quantized) tensor converted to T: F16 and BF16 widen exactly, F64 -> Float
    /// rounds, q8/q4 blocks and MXFP4 pairs are dequantized. Large tensors convert in parallel, a vector loop per
    /// chunk.
    public func tensor<T: TensorScalar>(_ name: String, as: T.Type = T.self) throws -> Tensor<T> {
        if let m = mxfp4[name] {
            let pb = bytes(of: m.blocks).assumingMemoryBound(to: UInt8.self), ps = bytes(of: m.scales).assumingMemoryBound(to: UInt8.self)
            let cols = m.cols
            return Self.dequantized(m.shape) { i, dst in moe_dequantize_row_mxfp4(pb + i * cols / 2, ps + i * cols / 32, dst, cols) }
        }
        guard let info = info(name) else {
            throw SafetensorsError(path, tensor: name, "is missing", hint: "the checkpoint does not match the model; check the config")
        }
        if let q = quantized[name] {
            let cols = q.shape[q.shape.count - 1], src = bytes(of: info)
            return Self.dequantized(q.shape) { i, dst in q.format.dequantize(src, row: i, into: dst, cols: cols) }
        }
        guard info.dtype.isFloatingPoint else {
            throw SafetensorsError(path, tensor: name, "has dtype \(info.dtype.rawValue), not a floating-point type", hint: "expected F32, F16, BF16 or F64")
        }
        let out = Tensor<T>(uninitializedShape: info.shape)
        let count = info.shape.reduce(1, *)
        let src = bytes(of: info), dst = out.storage.base
        Parallel.forRange(count, grain: 1 << 18) { r in
            Self.convert(src, info.dtype, r, into: dst)
        }
        return out
    }

    /// A [..., rows, cols] tensor built one row at a time by `row(i, dst)` (dequantizing into f32), rows in parallel.
    static func dequantized<T: TensorScalar>(_ shape: [Int], row: (Int, UnsafeMutablePointer<Float>) -> Void) -> Tensor<T> {
        let out = Tensor<Float>(uninitializedShape: shape)
        let cols = shape[shape.count - 1], rows = shape.dropLast().reduce(1, *), dst = out.storage.base
        Parallel.forRange(rows, grain: max(1, (1 << 16) / max(cols, 1))) { r in
            for i in r { row(i, dst + i * cols) }
        }
        return T.self == Float.self ? out as! Tensor<T> : Tensor<T>(converting: out)
    }

    /// Elements `r` of a stored tensor at `src` as T (the mapping's bytes may be unaligned for a type: a
    /// header length that is not a multiple of 8 is legal).
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    static func convert<T: TensorScalar>(_ src: UnsafeRawPointer, _ dtype: DType, _ r: Range<Int>, into dst: UnsafeMutablePointer<T>) {
        switch dtype {
        case .F32:
            if T.self == Float.self {
                UnsafeMutableRawPointer(dst + r.lowerBound).copyMemory(from: src + 4 * r.lowerBound, byteCount: 4 * r.count)
            } else {
                for i in r { dst[i] = T(src.loadUnaligned(fromByteOffset: 4 * i, as: Float.self)) }
            }
        case .F64:
            if T.self == Double.self {
                UnsafeMutableRawPointer(dst + r.lowerBound).copyMemory(from: src + 8 * r.lowerBound, byteCount: 8 * r.count)
            } else {
                for i in r { dst[i] = T(src.loadUnaligned(fromByteOffset: 8 * i, as: Double.self)) }
            }
        case .BF16, .F16:
            // Float out of aligned 16-bit data: the vector widening kernels that decode uses; else one at a time.
            if T.self == Float.self && Int(bitPattern: src) % 2 == 0 {
                let from = (src + 2 * r.lowerBound).assumingMemoryBound(to: UInt16.self)
                let to = UnsafeMutableRawPointer(dst + r.lowerBound).assumingMemoryBound(to: Float.self)
                if dtype == .BF16 { moe_widen_bf16(from, to, r.count) } else { moe_widen_f16(from, to, r.count) }
            } else {
                for i in r {
                    let h = src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)
                    dst[i] = T(dtype == .BF16 ? Float(bitPattern: UInt32(h) << 16) : moe_f16_to_f32(h))
                }
            }
        default: break
        }
    }

    /// Elements `r` of the floating-point tensor `info` as Float into `dst` (dst[0] is element r.lowerBound).
    public func floats(_ info: TensorInfo, _ r: Range<Int>, into dst: UnsafeMutablePointer<Float>) {
        Self.convert(bytes(of: info), info.dtype, r, into: dst - r.lowerBound)
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
        let src = bytes(of: info)
        let bits = (0..<count).map { UInt16(littleEndian: src.loadUnaligned(fromByteOffset: 2 * $0, as: UInt16.self)) }
        return (info.dtype, info.shape, bits)
    }

    /// An integer tensor's values as Int (for ids, counts, state).
    public func integers(_ name: String) throws -> (values: [Int], shape: [Int]) {
        guard let info = info(name) else {
            throw SafetensorsError(path, tensor: name, "is missing", hint: "the file does not match what reads it")
        }
        let count = info.shape.reduce(1, *)
        let src = bytes(of: info)
        let values: [Int] = (0..<count).map { i -> Int in
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
        return (values, info.shape)
    }

    /// Pairs `X_blocks` with `X_scales`: both U8, blocks [..., rows, G, 16] and scales [..., rows, G]. A blocks
    /// tensor of that form without its scales (or with scales of another shape) is a malformed file.
    static func mxfp4Pairs(_ tensors: [TensorInfo], index: [String: Int], path: String) throws -> [String: MXFP4Tensor] {
        var out: [String: MXFP4Tensor] = [:]
        for b in tensors where b.name.hasSuffix("_blocks") && b.dtype == .U8 {
            let name = String(b.name.dropLast("_blocks".count))
            guard b.shape.count >= 3, b.shape.last == 16 else {
                throw SafetensorsError(path, tensor: b.name, "is U8 \(b.shape), not MXFP4 blocks [..., rows, groups, 16]", hint: "the file is corrupt or not a gpt-oss MXFP4 checkpoint")
            }
            guard let si = index[name + "_scales"] else {
                throw SafetensorsError(path, tensor: b.name, "has no \(name)_scales beside it: an MXFP4 tensor needs both", hint: "the file is incomplete; re-download it")
            }
            let sc = tensors[si]
            guard sc.dtype == .U8, sc.shape == Array(b.shape.dropLast()) else {
                throw SafetensorsError(path, tensor: sc.name, "holds \(sc.dtype.rawValue) \(sc.shape) but the blocks \(b.shape) need U8 \(Array(b.shape.dropLast())): a truncated or malformed MXFP4 tensor", hint: "the file is corrupt; re-download it")
            }
            out[name] = MXFP4Tensor(blocks: b, scales: sc, shape: Array(b.shape.dropLast(2)) + [b.shape[b.shape.count - 2] * 32])
        }
        return out
    }

    /// Reads and checks the quantization metadata: a known format per listed tensor, stored as U8 with exactly
    /// the bytes its logical shape needs.
    static func quantizedTensors(
        _ metadata: [String: String], tensors: [TensorInfo], index: [String: Int], path: String
    ) throws -> [String: (format: BlockFormat, shape: [Int])] {
        guard let text = metadata[quantizationKey] else { return [:] }
        guard let obj = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] else {
            throw SafetensorsError(path, "metadata \(quantizationKey) is not a JSON object", hint: "re-run moe quantize")
        }
        var out: [String: (BlockFormat, [Int])] = [:]
        for (name, value) in obj {
            guard let i = index[name] else {
                throw SafetensorsError(path, tensor: name, "is listed as quantized but is not in the file", hint: "the file is corrupt; re-run moe quantize")
            }
            guard let entry = value as? [String: Any], let f = entry["format"] as? String,
                let shape = (entry["shape"] as? [Any]).flatMap(SafetensorsHeader.integers), shape.count >= 2, shape.allSatisfy({ $0 > 0 }),
                shape.dropLast().reduce(1, { $0.multipliedReportingOverflow(by: $1).overflow ? Int.max : $0 * $1 }) < Int(Int32.max)
            else {
                throw SafetensorsError(path, tensor: name, "has a quantization entry without a format and a shape of rank >= 2", hint: "the file is corrupt; re-run moe quantize")
            }
            guard let format = BlockFormat(rawValue: f) else {
                throw SafetensorsError(path, tensor: name, "has the unknown block format \"\(f)\"", hint: "supported: \(BlockFormat.allCases.map(\.rawValue).joined(separator: ", ")); re-quantize with this version of moe")
            }
            let t = tensors[i], rows = shape.dropLast().reduce(1, *), cols = shape[shape.count - 1]
            guard cols % format.blockSize == 0 else {
                throw SafetensorsError(path, tensor: name, "has \(cols) columns, not a multiple of the \(format.rawValue) block of \(format.blockSize)", hint: "the file is corrupt; re-run moe quantize")
            }
            guard shape[shape.count - 2] % format.rowBlock == 0 else {
                throw SafetensorsError(path, tensor: name, "has \(shape[shape.count - 2]) rows, not a multiple of the \(format.rawValue) block of \(format.rowBlock) rows", hint: "the file is corrupt; re-run moe quantize")
            }
            guard t.dtype == .U8, t.shape == [rows, format.rowBytes(cols)] else {
                throw SafetensorsError(path, tensor: name, "holds \(t.dtype.rawValue) \(t.shape) but \(format.rawValue) \(shape) needs U8 [\(rows), \(format.rowBytes(cols))]: a truncated or malformed block", hint: "the file is corrupt; re-run moe quantize")
            }
            out[name] = (format, shape)
        }
        return out
    }
}

/// An MXFP4 tensor: its two stored parts and its logical shape [..., rows, cols].
public struct MXFP4Tensor: Sendable {
    public let blocks: TensorInfo
    public let scales: TensorInfo
    public let shape: [Int]
    public var cols: Int { shape[shape.count - 1] }
    public var rows: Int { shape.dropLast().reduce(1, *) }
}

/// Device, inode, size and modification time of a file.
struct FileIdentity: Equatable {
    let device: UInt64, inode: UInt64, size: Int64, seconds: Int, nanoseconds: Int
    init(_ st: stat) {
        device = UInt64(st.st_dev)
        inode = UInt64(st.st_ino)
        size = Int64(st.st_size)
        seconds = Int(st.st_mtim.tv_sec)
        nanoseconds = Int(st.st_mtim.tv_nsec)
    }
}

/// Writes safetensors files: tensors in the given order, header padded with spaces to a multiple of 8 bytes.
public enum SafetensorsWriter {
    public enum Payload {
        case float(Tensor<Float>)
        case double(Tensor<Double>)
        case int64([Int], shape: [Int])
        /// `byteCount` bytes of `dtype` produced in pieces by `produce`, which hands each piece to its argument
        /// (for tensors streamed from another file, converted or quantized on the way).
        case stream(dtype: String, shape: [Int], byteCount: Int, produce: ((UnsafeRawBufferPointer) throws -> Void) throws -> Void)
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
            case .stream(let dt, let s, let n, _): (dtype, shape, bytes) = (dt, s, n)
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
                case .stream(_, _, let n, let produce):
                    var written = 0
                    try produce { piece in
                        try AtomicFile.writeAll(fd, piece, path: path)
                        written += piece.count
                    }
                    guard written == n else {
                        throw SafetensorsError(path, "a streamed tensor gave \(written) bytes instead of \(n)", hint: "this is a bug in the writer's caller")
                    }
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
        var loc = location
        for (i, f) in files.enumerated() { for name in f.mxfp4.keys { loc[name] = i } }
        self.location = loc
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
        guard let data = FileManager.default.contents(atPath: indexPath) else {
            throw SafetensorsError(indexPath, "cannot be read", hint: "check the file's permissions")
        }
        let weightMap = try SafetensorsIndex.parse(data, path: indexPath)
        let shardNames = Array(Set(weightMap.values)).sorted()
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
    /// Stored names with MXFP4 pairs as their logical names (see `SafetensorsFile.logicalNames`).
    public var logicalNames: [String] { files.flatMap(\.logicalNames) }
    /// The file that holds `name` (for error messages), or the checkpoint's path.
    public func file(of name: String) -> String { location[name].map { files[$0].path } ?? path }
    public func info(_ name: String) -> TensorInfo? { location[name].flatMap { files[$0].info(name) } }
    /// The shard that holds `name`.
    public func shard(holding name: String) -> SafetensorsFile? { location[name].map { files[$0] } }

    /// The shape `tensor(name)` returns (an MXFP4 pair's or a block-quantized tensor's logical shape), read from
    /// the headers alone; nil when no shard holds `name`.
    public func logicalShape(_ name: String) -> [Int]? {
        guard let f = shard(holding: name) else { return nil }
        return f.mxfp4[name]?.shape ?? f.quantized[name]?.shape ?? f.info(name)?.shape
    }

    public func tensor<T: TensorScalar>(_ name: String, as: T.Type = T.self) throws -> Tensor<T> {
        guard let i = location[name] else {
            throw SafetensorsError(path, tensor: name, "is missing", hint: "the checkpoint does not match the model; check the config")
        }
        return try files[i].tensor(name, as: T.self)
    }
}

/// `model.safetensors.index.json`: its `weight_map` of tensor names to shard files.
public enum SafetensorsIndex {
    /// The weight map, checked: a JSON object whose `weight_map` maps at least one tensor to a shard, and every
    /// shard a `.safetensors` file in the same directory (no path, no hidden file).
    public static func parse(_ data: Data, path: String) throws -> [String: String] {
        guard let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw SafetensorsError(path, "is not valid JSON", hint: "fix or re-download the index file")
        }
        guard let map = json["weight_map"] as? [String: Any], !map.isEmpty else {
            throw SafetensorsError(path, "has no \"weight_map\" of tensor names to shard files", hint: "fix or re-download the index file")
        }
        var weightMap: [String: String] = [:]
        for (tensor, shard) in map {
            guard let name = shard as? String else {
                throw SafetensorsError(path, tensor: tensor, "maps to something other than a shard file name", hint: "fix the index file")
            }
            guard !name.contains("/"), !name.hasPrefix("."), name.hasSuffix(".safetensors") else {
                throw SafetensorsError(path, "names the shard \"\(name)\", which is not a .safetensors file in the same directory", hint: "fix the index file")
            }
            weightMap[tensor] = name
        }
        return weightMap
    }
}
