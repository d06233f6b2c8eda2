import Foundation

/// tokenizer.json's `model` of type BPE (Sennrich et al. 2016, as the `tokenizers` library runs it).
///
/// A word starts as one symbol per character (with `byte_fallback`, a character outside the vocabulary becomes
/// its UTF-8 bytes as `<0xAB>` tokens; otherwise `unk_token`, fused with a neighbouring unknown when `fuse_unk`),
/// then the adjacent pair with the lowest merge rank is merged, leftmost first among equals, until no pair of
/// the current symbols is a merge. With `ignore_merges` a word that is itself in the vocabulary is one token.
struct BPE {
    /// Token strings by id (nil where the vocabulary skips an id).
    let tokens: [[Unicode.Scalar]?]
    /// Ids by token, keyed by UTF-8 bytes (exact, unlike `String` keys).
    let ids: [[UInt8]: Int]
    /// (left id, right id) -> (rank, merged id).
    let merges: [UInt64: (rank: Int, id: Int)]
    let unknown: Int?
    let byteFallback: Bool
    let fuseUnknown: Bool
    let ignoreMerges: Bool
    /// `<0xAB>` token ids by byte, with byte fallback.
    let byteTokens: [Int?]

    init(_ value: Any?, rawJSON: Data, _ spec: Spec) throws {
        let o = try spec.object(value)
        let type = try spec.type(o)
        guard type == "BPE" else { throw spec.unsupported(type, ["BPE"]) }
        // transformers' converters write "" for both affixes in byte-level files (GPT-2, Qwen2, Llama 3):
        // an empty affix adds nothing to any symbol, so it is the same as none.
        for key in ["continuing_subword_prefix", "end_of_word_suffix"] {
            guard let v = o[key], !(v is NSNull) else { continue }
            guard let s = v as? String else { throw spec.at(key).error("is not a string or null") }
            guard s.isEmpty else {
                throw spec.at(key).error("is \(s.debugDescription); a non-empty \(key) (WordPiece-style BPE) is not supported yet, only null or \"\"")
            }
        }
        if let v = o["dropout"], !(v is NSNull) {
            throw spec.at("dropout").error("is set; BPE dropout is for training, set it to null to tokenize")
        }
        guard let entries = RawJSONObject.entries(rawJSON, path: ["model", "vocab"]) else {
            throw spec.at("vocab").error("missing or not an object of token: id")
        }
        var ids: [[UInt8]: Int] = [:]
        var maxID = -1
        for (key, value) in entries {
            guard let id = Int(value), id >= 0 else { throw spec.at("vocab").error("\(key): id \(value) is not a non-negative integer") }
            // The token table is indexed by id: a corrupt, huge id must not size it (found by fuzzing).
            guard id < Tokenizer.maxID else { throw spec.at("vocab").error("\(key): id \(value) is beyond \(Tokenizer.maxID - 1); the file is corrupt") }
            guard ids.updateValue(id, forKey: Array(key.utf8)) == nil else {
                throw spec.at("vocab").error("token \(key.debugDescription) is listed twice; keep one")
            }
            maxID = max(maxID, id)
        }
        var tokens = [[Unicode.Scalar]?](repeating: nil, count: maxID + 1)
        for (key, id) in ids {
            guard tokens[id] == nil else { throw spec.at("vocab").error("id \(id) is given to two tokens; make ids unique") }
            tokens[id] = scalars(String(decoding: key, as: UTF8.self))
        }
        self.ids = ids
        self.tokens = tokens

        let list = try spec.at("merges").array(o["merges"] ?? [Any]())
        var merges: [UInt64: (Int, Int)] = [:]
        for (rank, item) in list.enumerated() {
            let pair: [String]
            if let s = item as? String {
                pair = s.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
            } else if let a = item as? [String] {
                pair = a
            } else {
                throw spec.at("merges[\(rank)]").error("a merge is \"a b\" or [\"a\", \"b\"]")
            }
            guard pair.count == 2 else { throw spec.at("merges[\(rank)]").error("a merge has two parts") }
            guard let a = ids[Array(pair[0].utf8)], let b = ids[Array(pair[1].utf8)], let m = ids[Array((pair[0] + pair[1]).utf8)] else {
                throw spec.at("merges[\(rank)]").error("\(pair) or its merge is not in the vocabulary; the merges do not belong to this vocab")
            }
            merges[BPE.key(a, b)] = (rank, m)  // a repeated pair keeps its last rank, as in the library
        }
        self.merges = merges.mapValues { (rank: $0.0, id: $0.1) }

        if let unk = o["unk_token"] as? String {
            guard let id = ids[Array(unk.utf8)] else { throw spec.at("unk_token").error("\(unk) is not in the vocabulary") }
            unknown = id
        } else {
            unknown = nil
        }
        byteFallback = try spec.bool(o, "byte_fallback", default: false)
        fuseUnknown = try spec.bool(o, "fuse_unk", default: false)
        ignoreMerges = try spec.bool(o, "ignore_merges", default: false)
        byteTokens = (0..<256).map { ids[Array(String(format: "<0x%02X>", $0).utf8)] }
    }

    private static func key(_ a: Int, _ b: Int) -> UInt64 { UInt64(UInt32(a)) << 32 | UInt64(UInt32(b)) }

    /// The ids of one word.
    func tokenize(_ word: [Unicode.Scalar]) -> [Int] {
        if ignoreMerges, let id = ids[Array(string(word).utf8)] { return [id] }
        var symbols: [Int] = []
        var pendingUnknown = false
        for c in word {
            if let id = ids[Array(String(c).utf8)] {
                if pendingUnknown, let u = unknown { symbols.append(u) }
                pendingUnknown = false
                symbols.append(id)
                continue
            }
            if byteFallback {
                let bytes = Array(String(c).utf8).map { byteTokens[Int($0)] }
                if bytes.allSatisfy({ $0 != nil }) {
                    // The library adds byte tokens without flushing a pending unknown first.
                    symbols += bytes.map { $0! }
                    continue
                }
            }
            guard let u = unknown else { continue }  // no unk_token: the character is dropped, as in the library
            if pendingUnknown && !fuseUnknown { symbols.append(u) }
            pendingUnknown = true
        }
        if pendingUnknown, let u = unknown { symbols.append(u) }
        return merge(symbols)
    }

    /// Applies merges lowest rank first, leftmost among equal ranks (the library's heap order).
    private func merge(_ start: [Int]) -> [Int] {
        var s = start
        while s.count > 1 {
            var best: (rank: Int, at: Int, id: Int)?
            for i in 0..<(s.count - 1) {
                if let m = merges[BPE.key(s[i], s[i + 1])], m.rank < (best?.rank ?? Int.max) { best = (m.rank, i, m.id) }
            }
            guard let b = best else { break }
            s[b.at] = b.id
            s.remove(at: b.at + 1)
        }
        return s
    }
}
