// libFuzzer target for the safetensors header parser. Built by scripts/fuzz.sh from this file and the
// parser's two Foundation-only sources; any crash, trap or sanitizer report is a bug (a malformed file must
// only ever throw SafetensorsError).
import Foundation

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSafetensorsHeader(_ bytes: UnsafePointer<UInt8>, _ count: Int) -> CInt {
    let data = Data(bytes: bytes, count: count)
    do {
        let (start, tensors, _) = try SafetensorsHeader.parse(data, path: "fuzz.safetensors")
        // What the parser accepts must be self-consistent: contiguous, in bounds, sized by dtype and shape.
        var expected = 0
        for t in tensors {
            precondition(t.begin == expected && t.end >= t.begin && start + t.end <= count)
            precondition(t.end - t.begin == t.shape.reduce(1, *) * t.dtype.size)
            expected = t.end
        }
        precondition(start + expected == count)
    } catch is SafetensorsError {
    } catch {
        preconditionFailure("unexpected error type: \(error)")
    }
    return 0
}
