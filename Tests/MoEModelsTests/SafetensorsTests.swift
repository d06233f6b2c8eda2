import Foundation
import MoETestSupport
import Testing

@Suite("safetensors")
struct SafetensorsTests {
    let dir = TestSupport.temporaryDirectory()

    func write(_ bytes: [UInt8], _ name: String) -> String {
        let path = dir.appendingPathComponent(name).path
        FileManager.default.createFile(atPath: path, contents: Data(bytes))
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
}
