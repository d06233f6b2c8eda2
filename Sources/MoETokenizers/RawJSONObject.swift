import Foundation

/// The entries of one nested JSON object with their keys exactly as written.
///
/// Foundation's parser returns `[String: Any]`, and Swift strings that are canonically equivalent ("é" and
/// "e\u{301}") are one dictionary key, so a vocabulary holding both would silently lose one. This walks the
/// (already validated) JSON text to find the object at `path`, collects each key's string literal and its
/// scalar value, and lets Foundation unescape the literals as one array, which keeps every scalar.
enum RawJSONObject {
    static func entries(_ data: Data, path: [String]) -> [(key: String, value: String)]? {
        let b = [UInt8](data)
        let target = path.map { Array($0.utf8) }
        // One frame per open container: is it an object, the key path to it, and (for objects) the last key.
        var stack: [(object: Bool, path: [[UInt8]]?, key: [UInt8]?)] = []
        var literals: [[UInt8]] = [], values: [[UInt8]] = []
        var expectKey = false
        var i = 0
        func atTarget() -> Bool { stack.last.map { $0.object && $0.path == target } ?? false }
        while i < b.count {
            let c = b[i]
            switch c {
            case UInt8(ascii: "\""):
                var j = i + 1
                while j < b.count && b[j] != UInt8(ascii: "\"") { j += b[j] == UInt8(ascii: "\\") ? 2 : 1 }
                let literal = Array(b[i..<min(j + 1, b.count)])
                if expectKey, !stack.isEmpty {
                    stack[stack.count - 1].key = Array(literal.dropFirst().dropLast())
                    if atTarget() { literals.append(literal) }
                    expectKey = false
                } else if atTarget() {
                    values.append(literal)
                }
                i = j + 1
                continue
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                var childPath: [[UInt8]]? = nil
                if let top = stack.last {
                    if top.object, let p = top.path, let k = top.key { childPath = p + [k] }
                } else {
                    childPath = []
                }
                if atTarget() { return nil }  // the target's values must be scalars
                stack.append((c == UInt8(ascii: "{"), childPath, nil))
                expectKey = c == UInt8(ascii: "{")
            case UInt8(ascii: "}"), UInt8(ascii: "]"):
                if atTarget() { return decode(literals, values) }
                stack.removeLast()
                expectKey = false
            case UInt8(ascii: ","):
                expectKey = stack.last?.object ?? false
            case UInt8(ascii: ":"), UInt8(ascii: " "), UInt8(ascii: "\n"), UInt8(ascii: "\r"), UInt8(ascii: "\t"):
                break
            default:
                // A number or literal value.
                var j = i
                while j < b.count && !",}] \n\r\t".utf8.contains(b[j]) { j += 1 }
                if atTarget() { values.append(Array(b[i..<j])) }
                i = j
                continue
            }
            i += 1
        }
        return nil
    }

    private static func decode(_ literals: [[UInt8]], _ values: [[UInt8]]) -> [(key: String, value: String)]? {
        guard literals.count == values.count else { return nil }
        var text: [UInt8] = [UInt8(ascii: "[")]
        for (n, l) in literals.enumerated() {
            if n > 0 { text.append(UInt8(ascii: ",")) }
            text += l
        }
        text.append(UInt8(ascii: "]"))
        guard let keys = (try? JSONSerialization.jsonObject(with: Data(text))) as? [String], keys.count == values.count else {
            return nil
        }
        return zip(keys, values).map { ($0, String(decoding: $1, as: UTF8.self)) }
    }
}
