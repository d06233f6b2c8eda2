/// Finds duplicated keys in a JSON object's top level. Foundation's parser keeps the last of two equal
/// keys silently; a strict safetensors reader must reject them. This scans the already-validated JSON text
/// (strings and nesting only), it does not parse values.
public enum JSONKeys {
    public static func firstDuplicateTopLevelKey(_ bytes: some Collection<UInt8>) -> String? {
        let b = Array(bytes)
        var depth = 0, i = 0
        var seen = Set<String>()
        var expectKey = false
        while i < b.count {
            let c = b[i]
            if c == UInt8(ascii: "\"") {
                var j = i + 1
                var raw: [UInt8] = []
                while j < b.count && b[j] != UInt8(ascii: "\"") {
                    if b[j] == UInt8(ascii: "\\") && j + 1 < b.count {
                        raw.append(b[j])
                        j += 1
                    }
                    raw.append(b[j])
                    j += 1
                }
                if depth == 1 && expectKey {
                    let key = String(decoding: raw, as: UTF8.self)
                    if !seen.insert(key).inserted { return key }
                    expectKey = false
                }
                i = j + 1
                continue
            }
            switch c {
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                depth += 1
                if depth == 1 && c == UInt8(ascii: "{") { expectKey = true }
            case UInt8(ascii: "}"), UInt8(ascii: "]"): depth -= 1
            case UInt8(ascii: ","): if depth == 1 { expectKey = true }
            default: break
            }
            i += 1
        }
        return nil
    }
}
