import Foundation

/// A `{"String": ...}` or `{"Regex": ...}` pattern as Split and Replace use it, found in a run of scalars.
/// Regexes run on ICU (NSRegularExpression); `\s` and `\S` are rewritten to the Unicode White_Space property,
/// which is what Oniguruma (the `tokenizers` library's engine) means by them and ICU does not quite.
struct Pattern: @unchecked Sendable {
    enum Kind {
        case literal([Unicode.Scalar])
        case regex(NSRegularExpression)
    }
    let kind: Kind

    init(_ value: Any?, _ spec: Spec) throws {
        let o = try spec.object(value)
        if let s = o["String"] as? String {
            guard !s.isEmpty else { throw spec.error("empty String pattern; give at least one character") }
            kind = .literal(scalars(s))
        } else if let r = o["Regex"] as? String {
            do { kind = .regex(try NSRegularExpression(pattern: Pattern.oniguruma(r))) } catch {
                throw spec.error("regex \(r) does not compile (\(error)); fix the pattern")
            }
        } else {
            throw spec.error("a pattern is {\"String\": ...} or {\"Regex\": ...}")
        }
    }

    init(literal: [Unicode.Scalar]) { kind = .literal(literal) }

    /// Rewrites `\s`/`\S` outside escapes (`\\s` stays a backslash and an s).
    static func oniguruma(_ pattern: String) -> String {
        var out = "", escaped = false
        for c in pattern {
            if escaped {
                switch c {
                case "s": out += "\\p{White_Space}"
                case "S": out += "\\P{White_Space}"
                default: out += "\\" + String(c)
                }
                escaped = false
            } else if c == "\\" {
                escaped = true
            } else {
                out.append(c)
            }
        }
        if escaped { out += "\\" }
        return out
    }

    /// Non-overlapping matches, left to right, as scalar index ranges.
    func matches(in text: [Unicode.Scalar]) -> [Range<Int>] {
        switch kind {
        case .literal(let p):
            var out: [Range<Int>] = []
            var i = 0
            while i + p.count <= text.count {
                if text[i..<(i + p.count)].elementsEqual(p) {
                    out.append(i..<(i + p.count))
                    i += p.count
                } else {
                    i += 1
                }
            }
            return out
        case .regex(let re):
            let s = string(text)
            // UTF-16 offset -> scalar index.
            var index = [Int](repeating: 0, count: s.utf16.count + 1)
            var u = 0
            for (k, c) in text.enumerated() {
                index[u] = k
                u += c.utf16.count
            }
            index[u] = text.count
            return re.matches(in: s, range: NSRange(location: 0, length: u)).compactMap { m in
                let r = index[m.range.location]..<index[m.range.location + m.range.length]
                return r.isEmpty ? nil : r
            }
        }
    }

    /// The text cut into stretches, each marked as a match or not.
    func segments(_ text: [Unicode.Scalar]) -> [(Range<Int>, Bool)] {
        if text.isEmpty { return [(0..<0, false)] }
        var out: [(Range<Int>, Bool)] = []
        var previous = 0
        for m in matches(in: text) {
            if previous != m.lowerBound { out.append((previous..<m.lowerBound, false)) }
            out.append((m, true))
            previous = m.upperBound
        }
        if previous != text.count { out.append((previous..<text.count, false)) }
        return out
    }
}

/// tokenizer.json's `normalizer`.
indirect enum Normalizer {
    case nfc, nfd, nfkc, nfkd, lowercase
    case prepend([Unicode.Scalar])
    case replace(Pattern, [Unicode.Scalar])
    case strip(left: Bool, right: Bool)
    case sequence([Normalizer])

    static let supported = ["NFC", "NFD", "NFKC", "NFKD", "Lowercase", "Prepend", "Replace", "Strip", "Sequence"]

    static func parse(_ value: Any?, _ spec: Spec) throws -> Normalizer? {
        guard let value, !(value is NSNull) else { return nil }
        let o = try spec.object(value)
        switch try spec.type(o) {
        case "NFC": return .nfc
        case "NFD": return .nfd
        case "NFKC": return .nfkc
        case "NFKD": return .nfkd
        case "Lowercase": return .lowercase
        case "Prepend": return .prepend(scalars(try spec.string(o, "prepend")))
        case "Replace": return .replace(try Pattern(o["pattern"], spec.at("pattern")), scalars(try spec.string(o, "content")))
        case "Strip":
            return .strip(left: try spec.bool(o, "strip_left", default: true), right: try spec.bool(o, "strip_right", default: true))
        case "Sequence":
            let list = try spec.at("normalizers").array(o["normalizers"])
            return .sequence(try list.enumerated().compactMap { try parse($1, spec.at("normalizers[\($0)]")) })
        case let t: throw spec.unsupported(t, supported)
        }
    }

    func apply(_ text: inout [Unicode.Scalar]) {
        switch self {
        case .nfc: text = scalars(string(text).precomposedStringWithCanonicalMapping)
        case .nfd: text = scalars(string(text).decomposedStringWithCanonicalMapping)
        case .nfkc: text = scalars(string(text).precomposedStringWithCompatibilityMapping)
        case .nfkd: text = scalars(string(text).decomposedStringWithCompatibilityMapping)
        case .lowercase: text = text.flatMap { scalars($0.properties.lowercaseMapping) }
        case .prepend(let p): if !text.isEmpty { text = p + text }
        case .replace(let pattern, let content): text = Normalizer.replacing(text, pattern, content)
        case .strip(let left, let right):
            var lo = 0, hi = text.count
            if left { while lo < hi && text[lo].properties.isWhitespace { lo += 1 } }
            if right { while hi > lo && text[hi - 1].properties.isWhitespace { hi -= 1 } }
            text = Array(text[lo..<hi])
        case .sequence(let list): for n in list { n.apply(&text) }
        }
    }

    static func replacing(_ text: [Unicode.Scalar], _ pattern: Pattern, _ content: [Unicode.Scalar]) -> [Unicode.Scalar] {
        var out: [Unicode.Scalar] = []
        out.reserveCapacity(text.count)
        var previous = 0
        for m in pattern.matches(in: text) {
            out += text[previous..<m.lowerBound]
            out += content
            previous = m.upperBound
        }
        out += text[previous...]
        return out
    }
}
