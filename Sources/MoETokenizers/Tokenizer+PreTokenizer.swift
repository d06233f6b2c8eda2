import Foundation

/// tokenizer.json's `pre_tokenizer`: cuts normalized text into the words the model tokenizes one by one.
indirect enum PreTokenizer {
    enum Behavior: String { case Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous }
    enum Prepend: String { case always, first, never }

    case byteLevel(addPrefixSpace: Bool, regex: Pattern?)
    case split(Pattern, Behavior, invert: Bool)
    case metaspace(replacement: Unicode.Scalar, prepend: Prepend, split: Bool)
    case digits(individual: Bool)
    case sequence([PreTokenizer])

    static let supported = ["ByteLevel", "Split", "Metaspace", "Digits", "Sequence"]
    /// GPT-2's word pattern, which ByteLevel applies when `use_regex` is true.
    static let gpt2Pattern = #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#

    static func parse(_ value: Any?, _ spec: Spec) throws -> PreTokenizer? {
        guard let value, !(value is NSNull) else { return nil }
        let o = try spec.object(value)
        switch try spec.type(o) {
        case "ByteLevel":
            let regex = try spec.bool(o, "use_regex", default: true) ? try Pattern(["Regex": gpt2Pattern], spec) : nil
            return .byteLevel(addPrefixSpace: try spec.bool(o, "add_prefix_space", default: true), regex: regex)
        case "Split":
            let name = try spec.string(o, "behavior")
            guard let behavior = Behavior(rawValue: name) else {
                throw spec.at("behavior").error("\(name) is not one of Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous")
            }
            return .split(try Pattern(o["pattern"], spec.at("pattern")), behavior, invert: try spec.bool(o, "invert", default: false))
        case "Metaspace":
            let r = scalars(try spec.string(o, "replacement"))
            guard r.count == 1 else { throw spec.at("replacement").error("must be one character") }
            var scheme = Prepend.always
            if let s = o["prepend_scheme"] as? String {
                guard let p = Prepend(rawValue: s) else { throw spec.at("prepend_scheme").error("\(s) is not always, first or never") }
                scheme = p
            }
            if try !spec.bool(o, "add_prefix_space", default: true) { scheme = .never }
            return .metaspace(replacement: r[0], prepend: scheme, split: try spec.bool(o, "split", default: true))
        case "Digits": return .digits(individual: try spec.bool(o, "individual_digits", default: false))
        case "Sequence":
            let list = try spec.at("pretokenizers").array(o["pretokenizers"])
            return .sequence(try list.enumerated().compactMap { try parse($1, spec.at("pretokenizers[\($0)]")) })
        case let t: throw spec.unsupported(t, supported)
        }
    }

    /// Applies this step to every piece; empty pieces are dropped, as the library drops them.
    func split(_ pieces: [Piece]) -> [Piece] {
        switch self {
        case .sequence(let steps): return steps.reduce(pieces) { $1.split($0) }
        default: return pieces.flatMap { splitOne($0) }.filter { !$0.text.isEmpty }
        }
    }

    private func splitOne(_ piece: Piece) -> [Piece] {
        switch self {
        case .byteLevel(let addPrefixSpace, let regex):
            var p = piece
            if addPrefixSpace && p.text.first != " " { p.text.insert(" ", at: 0) }
            let words = regex.map { PreTokenizer.cut(p, $0, .Isolated, invert: false) } ?? [p]
            return words.map { Piece(text: ByteAlphabet.encode($0.text), atStart: $0.atStart) }
        case .split(let pattern, let behavior, let invert):
            return PreTokenizer.cut(piece, pattern, behavior, invert: invert)
        case .metaspace(let r, let scheme, let split):
            var p = piece
            p.text = p.text.map { $0 == " " ? r : $0 }
            let prepend = scheme == .always || (scheme == .first && p.atStart)
            if prepend && p.text.first != r { p.text.insert(r, at: 0) }
            return split ? PreTokenizer.cut(p, Pattern(literal: [r]), .MergedWithNext, invert: false) : [p]
        case .digits(let individual):
            // Runs of decimal digits, as the library's `char::is_numeric` sees them.
            var out: [Piece] = []
            var start = 0
            for i in 0...piece.text.count {
                let boundary = i == piece.text.count || i == 0
                    || isDigit(piece.text[i]) != isDigit(piece.text[i - 1])
                    || (individual && isDigit(piece.text[i]))
                if boundary && i > start {
                    out.append(Piece(text: Array(piece.text[start..<i]), atStart: piece.atStart && start == 0))
                    start = i
                }
            }
            return out
        case .sequence: return split([piece])
        }
    }

    /// Rust's `char::is_numeric`: general category Nd, Nl or No.
    private func isDigit(_ c: Unicode.Scalar) -> Bool {
        switch c.properties.generalCategory {
        case .decimalNumber, .letterNumber, .otherNumber: return true
        default: return false
        }
    }

    /// The library's `NormalizedString::split`: matches and the text between them, combined by `behavior`.
    static func cut(_ piece: Piece, _ pattern: Pattern, _ behavior: Behavior, invert: Bool) -> [Piece] {
        let segments = pattern.segments(piece.text).map { ($0.0, $0.1 != invert) }
        var kept: [(Range<Int>, remove: Bool)] = []
        switch behavior {
        case .Isolated: kept = segments.map { ($0.0, false) }
        case .Removed: kept = segments.map { ($0.0, $0.1) }
        case .Contiguous, .MergedWithPrevious:
            var previousMatch = false
            for (r, isMatch) in segments {
                let merge = behavior == .Contiguous ? isMatch == previousMatch : isMatch && !previousMatch
                if merge, let last = kept.last {
                    kept[kept.count - 1] = (last.0.lowerBound..<r.upperBound, false)
                } else {
                    kept.append((r, false))
                }
                previousMatch = isMatch
            }
        case .MergedWithNext:
            var previousMatch = false
            for (r, isMatch) in segments.reversed() {
                if isMatch && !previousMatch, let last = kept.last {
                    kept[kept.count - 1] = (r.lowerBound..<last.0.upperBound, false)
                } else {
                    kept.append((r, false))
                }
                previousMatch = isMatch
            }
            kept.reverse()
        }
        return kept.compactMap { r, remove in
            remove || r.isEmpty ? nil : Piece(text: Array(piece.text[r]), atStart: piece.atStart && r.lowerBound == 0)
        }
    }
}

/// GPT-2's reversible map from the 256 byte values to printable characters: printable Latin-1 bytes stand for
/// themselves, the others take the characters from U+0100 on, in byte order.
enum ByteAlphabet {
    static let forward: [Unicode.Scalar] = {
        var printable = Array(UInt32(33)...126) + Array(UInt32(161)...172) + Array(UInt32(174)...255)
        var chars = printable
        var n: UInt32 = 0
        for b in UInt32(0)...255 where !printable.contains(b) {
            printable.append(b)
            chars.append(256 + n)
            n += 1
        }
        var table = [Unicode.Scalar](repeating: " ", count: 256)
        for (b, c) in zip(printable, chars) { table[Int(b)] = Unicode.Scalar(c)! }
        return table
    }()
    static let backward: [UInt32: UInt8] = {
        var m: [UInt32: UInt8] = [:]
        for (b, c) in forward.enumerated() { m[c.value] = UInt8(b) }
        return m
    }()

    static func encode(_ text: [Unicode.Scalar]) -> [Unicode.Scalar] {
        string(text).utf8.map { forward[Int($0)] }
    }
}
