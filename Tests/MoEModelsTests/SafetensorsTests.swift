import Foundation
import MoETestSupport
import Testing

@Suite("safetensors")
struct SafetensorsTests {
    let dir = TestSupport.temporaryDirectory()

    func write(_ bytes: [UInt8], _ name: String) -> String {
        let path = dir.appendingPathComponent(name).path
        _ = FileManager.default.createFile(atPath: path, contents: Data(bytes))
        return path
    }

    /// A file from a raw header and data bytes.
    func file(header: String, data: [UInt8], name: String) -> String {
        var bytes: [UInt8] = []
        withUnsafeBytes(of: UInt64(header.utf8.count).littleEndian) { bytes += $0 }
        bytes += Array(header.utf8) + data
        return write(bytes, name)
    }

    func error(_ path: String) -> String? {
        do { _ = try SafetensorsFile(path: path) } catch { return "\(error)" }
        return nil
    }

    @Test func roundTrip() throws {
        let a = TestSupport.randnF([3, 5], seed: 1), b = TestSupport.randn([2], seed: 2)
        let path = dir.appendingPathComponent("rt.safetensors").path
        try SafetensorsWriter.write([("a.weight", .float(a)), ("b", .double(b)), ("ids", .int64([1, -2, 3], shape: [3]))], metadata: ["k": "v"], to: path)
        let f = try SafetensorsFile(path: path)
        #expect(f.names.sorted() == ["a.weight", "b", "ids"])
        #expect(f.metadata == ["k": "v"])
        #expect(try f.tensor("a.weight", as: Float.self) == a)
        #expect(try f.tensor("b", as: Double.self) == b)
        #expect(try f.integers("ids").values == [1, -2, 3])
    }

    @Test func halfAndBFloat16Widen() throws {
        // F16 1.0 = 0x3C00, -2.5 = 0xC100; BF16 1.5 = 0x3FC0.
        let data: [UInt8] = [0x00, 0x3C, 0x00, 0xC1, 0xC0, 0x3F]
        let header = #"{"h":{"dtype":"F16","shape":[2],"data_offsets":[0,4]},"b":{"dtype":"BF16","shape":[1],"data_offsets":[4,6]}}"#
        let f = try SafetensorsFile(path: file(header: header, data: data, name: "half.safetensors"))
        #expect(try f.tensor("h", as: Float.self).scalars == [1, -2.5])
        #expect(try f.tensor("b", as: Float.self).scalars == [1.5])
    }

    @Test func rejectsBadFiles() {
        #expect(error(write([1, 2, 3], "short.safetensors"))!.contains("shorter than the 8-byte header length"))
        let ok = #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#
        #expect(error(file(header: ok, data: [UInt8](repeating: 0, count: 4), name: "trunc.safetensors"))!.contains("fall outside"))
        #expect(error(file(header: ok, data: [UInt8](repeating: 0, count: 12), name: "trail.safetensors"))!.contains("bytes after the last tensor"))
        let overlap = #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#
        #expect(error(file(header: overlap, data: [UInt8](repeating: 0, count: 8), name: "ov.safetensors"))!.contains("overlaps"))
        let dup = #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#
        #expect(error(file(header: dup, data: [UInt8](repeating: 0, count: 8), name: "dup.safetensors"))!.contains("appears twice"))
        let badType = #"{"a":{"dtype":"F8","shape":[1],"data_offsets":[0,1]}}"#
        #expect(error(file(header: badType, data: [0], name: "dt.safetensors"))!.contains("unknown dtype"))
        #expect(error(file(header: "{not json", data: [], name: "json.safetensors"))!.contains("not valid JSON"))
        let size = #"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#
        #expect(error(file(header: size, data: [UInt8](repeating: 0, count: 8), name: "sz.safetensors"))!.contains("needs 12"))
        var huge: [UInt8] = []
        withUnsafeBytes(of: UInt64(1 << 40).littleEndian) { huge += $0 }
        #expect(error(write(huge, "huge.safetensors"))!.contains("over the"))
        #expect(error(dir.appendingPathComponent("none.safetensors").path)!.contains("file not found"))
    }

    @Test func errorsNameTheFileAndTensor() {
        let badType = #"{"layers.0.w":{"dtype":"F8","shape":[1],"data_offsets":[0,1]}}"#
        let path = file(header: badType, data: [0], name: "named.safetensors")
        let e = error(path)!
        #expect(e.hasPrefix(path + ": tensor 'layers.0.w': has unknown dtype F8; supported: "))
    }

    @Test func halfPrecisionKeptAsStored() throws {
        let data: [UInt8] = [0x00, 0x3C, 0x00, 0xC1, 0xC0, 0x3F]
        let header = #"{"h":{"dtype":"F16","shape":[2],"data_offsets":[0,4]},"b":{"dtype":"BF16","shape":[1],"data_offsets":[4,6]}}"#
        let f = try SafetensorsFile(path: file(header: header, data: data, name: "keep.safetensors"))
        let h = try f.halfBits("h"), b = try f.halfBits("b")
        #expect(h.dtype == .F16 && h.shape == [2] && h.bits == [0x3C00, 0xC100])
        #expect(b.dtype == .BF16 && b.bits == [0x3FC0])
    }

    @Test func hugeShapesAreRejectedNotOverflowed() {
        let header = #"{"a":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,4]}}"#
        #expect(error(file(header: header, data: [0, 0, 0, 0], name: "big.safetensors"))!.contains("too large"))
    }

    /// A sharded checkpoint: the index maps each tensor to its shard; every tensor must be where it says.
    @Test func shardedIndex() throws {
        let shards = dir.appendingPathComponent("sharded")
        try FileManager.default.createDirectory(at: shards, withIntermediateDirectories: true)
        let a = TestSupport.randnF([2, 3], seed: 3), b = TestSupport.randnF([4], seed: 4)
        try SafetensorsWriter.write([("a", .float(a))], to: shards.appendingPathComponent("model-00001-of-00002.safetensors").path)
        try SafetensorsWriter.write([("b", .float(b))], to: shards.appendingPathComponent("model-00002-of-00002.safetensors").path)
        func index(_ map: String) throws {
            try #"{"metadata": {}, "weight_map": \#(map)}"#.write(to: shards.appendingPathComponent("model.safetensors.index.json"), atomically: true, encoding: .utf8)
        }
        try index(#"{"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}"#)
        let c = try SafetensorsCheckpoint(directory: shards.path)
        #expect(c.names.sorted() == ["a", "b"])
        #expect(try c.tensor("a", as: Float.self) == a && (try c.tensor("b", as: Float.self)) == b)
        #expect(c.file(of: "b").hasSuffix("model-00002-of-00002.safetensors"))
        func fails(_ map: String, _ message: String) throws {
            try index(map)
            do {
                _ = try SafetensorsCheckpoint(directory: shards.path)
                Issue.record("accepted \(map)")
            } catch { #expect("\(error)".contains(message), "\(error)") }
        }
        try fails(#"{"a": "model-00001-of-00002.safetensors", "b": "model-00001-of-00002.safetensors"}"#, "absent from the shard")
        try fails(#"{"a": "model-00002-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}"#, "tensor 'a': is listed in the index but absent")
        // A shard holding a tensor the index does not list.
        try SafetensorsWriter.write([("a", .float(a)), ("extra", .float(b))], to: shards.appendingPathComponent("model-00001-of-00002.safetensors").path)
        try fails(#"{"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}"#, "the index does not list it")
        try SafetensorsWriter.write([("a", .float(a))], to: shards.appendingPathComponent("model-00001-of-00002.safetensors").path)
        try fails(#"{"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors", "c": "model-00002-of-00002.safetensors"}"#, "absent from the shard")
        try fails(#"{"a": "../x.safetensors"}"#, "not a .safetensors file in the same directory")
        try fails(#"{"a": "model-00009-of-00009.safetensors"}"#, "not found")
        try "{oops".write(to: shards.appendingPathComponent("model.safetensors.index.json"), atomically: true, encoding: .utf8)
        #expect(throws: SafetensorsError.self) { try SafetensorsCheckpoint(directory: shards.path) }
    }
}
