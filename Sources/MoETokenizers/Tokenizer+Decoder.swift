import Foundation

/// tokenizer.json's `decoder`: a chain of steps, each turning the list of token strings into another list,
/// joined at the end.
indirect enum TokenDecoder {
    case byteLevel
    case metaspace(replacement: Unicode.Scalar, prependsSpace: Bool)
    case replace(Pattern, [Unicode.Scalar])
    case byteFallback
    case fuse
    case strip(Unicode.Scalar, start: Int, stop: Int)
    case sequence([TokenDecoder])

    static let supported = ["ByteLevel", "Metaspace", "Replace", "ByteFallback", "Fuse", "Strip", "Sequence"]

    static func parse(_ value: Any?, _ spec: Spec) throws -> TokenDecoder? {
        guard let value, !(value is NSNull) else { return nil }
        let o = try spec.object(value)
        switch try spec.type(o) {
        case "ByteLevel": return .byteLevel
        case "Metaspace":
            guard case .metaspace(let r, let scheme, _)? = try PreTokenizer.parse(o, spec) else { throw spec.error("bad Metaspace") }
            return .metaspace(replacement: r, prependsSpace: scheme != .never)
        case "Replace": return .replace(try Pattern(o["pattern"], spec.at("pattern")), scalars(try spec.string(o, "content")))
        case "ByteFallback": return .byteFallback
        case "Fuse": return .fuse
        case "Strip":
            let c = scalars(try spec.string(o, "content"))
            guard c.count == 1 else { throw spec.at("content").error("must be one character") }
            return .strip(c[0], start: try spec.at("start").int(o["start"]), stop: try spec.at("stop").int(o["stop"]))
        case "Sequence":
            let list = try spec.at("decoders").array(o["decoders"])
            return .sequence(try list.enumerated().compactMap { try parse($1, spec.at("decoders[\($0)]")) })
        case let t: throw spec.unsupported(t, supported)
        }
    }

    func decode(_ tokens: [[Unicode.Scalar]]) -> [[Unicode.Scalar]] {
        switch self {
        case .byteLevel:
            var bytes: [UInt8] = []
            for t in tokens {
                let mapped = t.compactMap { ByteAlphabet.backward[$0.value] }
                bytes += mapped.count == t.count ? mapped : Array(string(t).utf8)
            }
            return [scalars(String(decoding: bytes, as: UTF8.self))]
        case .metaspace(let r, let prependsSpace):
            return tokens.enumerated().map { i, t in
                t.compactMap { c in c != r ? c : (i == 0 && prependsSpace ? nil : " ") }
            }
        case .replace(let pattern, let content): return tokens.map { Normalizer.replacing($0, pattern, content) }
        case .byteFallback:
            var out: [[Unicode.Scalar]] = []
            var pending: [UInt8] = []
            func flush() {
                guard !pending.isEmpty else { return }
                if let s = String(validating: pending, as: UTF8.self) {
                    out.append(scalars(s))
                } else {
                    // Bytes that are not UTF-8 give one U+FFFD each.
                    out += pending.map { _ in ["\u{FFFD}"] }
                }
                pending = []
            }
            for t in tokens {
                if let b = TokenDecoder.byteToken(t) {
                    pending.append(b)
                } else {
                    flush()
                    out.append(t)
                }
            }
            flush()
            return out
        case .fuse: return [tokens.flatMap { $0 }]
        case .strip(let c, let start, let stop):
            return tokens.map { t in
                var lo = 0, hi = t.count
                while lo < min(start, t.count) && t[lo] == c { lo += 1 }
                var n = 0
                while n < stop && hi > lo && t[hi - 1] == c { hi -= 1; n += 1 }
                return Array(t[lo..<hi])
            }
        case .sequence(let steps): return steps.reduce(tokens) { $1.decode($0) }
        }
    }

    /// `<0xAB>` -> 0xAB.
    static func byteToken(_ t: [Unicode.Scalar]) -> UInt8? {
        guard t.count == 6, t[0] == "<", t[1] == "0", t[2] == "x", t[5] == ">" else { return nil }
        return UInt8(string(Array(t[3..<5])), radix: 16)
    }
}

/// tokenizer.json's `post_processor`: the special tokens around an encoded sequence.
indirect enum PostProcessor {
    case template(single: [Int?])  // nil marks the sequence itself
    case byteLevel
    case sequence([PostProcessor])

    static let supported = ["TemplateProcessing", "ByteLevel", "BertProcessing", "RobertaProcessing", "Sequence"]

    static func parse(_ value: Any?, _ spec: Spec) throws -> PostProcessor? {
        guard let value, !(value is NSNull) else { return nil }
        let o = try spec.object(value)
        switch try spec.type(o) {
        case "ByteLevel": return .byteLevel
        case "TemplateProcessing":
            let specials = (o["special_tokens"] as? [String: Any]) ?? [:]
            var single: [Int?] = []
            for (i, item) in try spec.at("single").array(o["single"]).enumerated() {
                let s = spec.at("single[\(i)]")
                let piece = try s.object(item)
                if piece["Sequence"] != nil { single.append(nil); continue }
                guard let special = piece["SpecialToken"] as? [String: Any], let name = special["id"] as? String else {
                    throw s.error("a template piece is {\"Sequence\": ...} or {\"SpecialToken\": {\"id\": ...}}")
                }
                guard let entry = specials[name] as? [String: Any], let ids = entry["ids"] as? [Any] else {
                    throw s.error("special token \(name) is not in special_tokens; add it there")
                }
                single += try ids.map { try s.int($0) }
            }
            return .template(single: single)
        case "BertProcessing", "RobertaProcessing":
            func id(_ key: String) throws -> Int {
                guard let pair = o[key] as? [Any], pair.count == 2 else { throw spec.at(key).error("is [token, id]") }
                return try spec.at(key).int(pair[1])
            }
            return .template(single: [try id("cls"), nil, try id("sep")])
        case "Sequence":
            let list = try spec.at("processors").array(o["processors"])
            return .sequence(try list.enumerated().compactMap {
                try parse($1, spec.at("processors[\($0)]"))
            })
        case let t: throw spec.unsupported(t, supported)
        }
    }

    func apply(_ ids: [Int]) -> [Int] {
        switch self {
        case .byteLevel: return ids
        case .template(let single): return single.flatMap { $0.map { [$0] } ?? ids }
        case .sequence(let steps): return steps.reduce(ids) { $1.apply($0) }
        }
    }
}
