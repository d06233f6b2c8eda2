import Foundation

/// tokenizer.json's `added_tokens`: whole strings (specials like `<s>` or `<|im_end|>`) matched in the text
/// before anything else, leftmost-longest as the `tokenizers` library's Aho-Corasick automaton does. Tokens with
/// `normalized: false` are found in the raw text, the others in the normalized text.
struct AddedTokens {
    struct Token {
        var id: Int
        var content: [Unicode.Scalar]
        var pattern: [Unicode.Scalar]  // the content, normalized for `normalized` tokens
        var singleWord, lstrip, rstrip, normalized, special: Bool
    }
    struct Segment {
        var text: [Unicode.Scalar]
        var token: Int?
        var atStart: Bool
    }

    private(set) var tokens: [Token] = []
    private(set) var byID: [Int: Token] = [:]

    init(_ value: Any?, _ spec: Spec) throws {
        guard let value, !(value is NSNull) else { return }
        let list = try spec.at("added_tokens").array(value)
        for (i, item) in list.enumerated() {
            let s = spec.at("added_tokens[\(i)]")
            let o = try s.object(item)
            let content = scalars(try s.string(o, "content"))
            guard !content.isEmpty else { throw s.error("empty content; remove the entry") }
            let id = try s.at("id").int(o["id"])
            guard id >= 0 && id < Tokenizer.maxID else { throw s.at("id").error("\(id) is not an id between 0 and \(Tokenizer.maxID - 1); the file is corrupt") }
            let t = Token(
                id: id, content: content, pattern: content,
                singleWord: try s.bool(o, "single_word", default: false), lstrip: try s.bool(o, "lstrip", default: false),
                rstrip: try s.bool(o, "rstrip", default: false), normalized: try s.bool(o, "normalized", default: true),
                special: try s.bool(o, "special", default: false))
            tokens.append(t)
            byID[t.id] = t
        }
    }

    /// Normalized tokens are matched in their normalized form.
    mutating func prepare(normalizer: Normalizer?) {
        guard let normalizer else { return }
        for i in tokens.indices where tokens[i].normalized {
            normalizer.apply(&tokens[i].pattern)
        }
    }

    /// Splits `text` around the added tokens of one kind (`normalized` or not).
    func split(_ text: [Unicode.Scalar], atStart: Bool, normalized: Bool) -> [Segment] {
        let candidates = tokens.filter { $0.normalized == normalized }
        if text.isEmpty || candidates.isEmpty { return [Segment(text: text, token: nil, atStart: atStart)] }
        var out: [Segment] = []
        var offset = 0  // end of the previous accepted match
        var i = 0
        func emit(_ range: Range<Int>, _ token: Int?) {
            guard !range.isEmpty else { return }
            out.append(Segment(text: Array(text[range]), token: token, atStart: atStart && range.lowerBound == 0))
        }
        while i < text.count {
            // Leftmost-longest: the longest token starting at the first position where any starts.
            var best: Token?
            for t in candidates where t.pattern.count > (best?.pattern.count ?? 0) && i + t.pattern.count <= text.count
                && text[i..<(i + t.pattern.count)].elementsEqual(t.pattern)
            {
                best = t
            }
            guard let t = best else { i += 1; continue }
            var start = i, stop = i + t.pattern.count
            i = stop
            if t.singleWord {
                let leftOK = start == 0 || !isWord(text[start - 1])
                let rightOK = stop == text.count || !isWord(text[stop])
                if !leftOK || !rightOK { continue }
            }
            if t.lstrip {
                var s = start
                while s > 0 && text[s - 1].properties.isWhitespace { s -= 1 }
                start = max(s, offset)
            }
            if t.rstrip {
                while stop < text.count && text[stop].properties.isWhitespace { stop += 1 }
            }
            emit(offset..<start, nil)
            emit(start..<stop, t.id)
            offset = stop
            i = max(i, stop)
        }
        emit(offset..<text.count, nil)
        return out
    }

    /// Rust regex's `\w`: alphabetic, marks, decimal digits, connector punctuation, join controls.
    private func isWord(_ c: Unicode.Scalar) -> Bool {
        let p = c.properties
        switch p.generalCategory {
        case .nonspacingMark, .spacingMark, .enclosingMark, .decimalNumber, .connectorPunctuation: return true
        default: return p.isAlphabetic || p.isJoinControl
        }
    }
}
