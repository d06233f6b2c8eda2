import Foundation

/// Anything that turns text into token ids and back: the byte tokenizer of swift-moe's own models and the
/// Hugging Face tokenizers read from tokenizer.json.
public protocol TextTokenizer: Sendable {
    /// The ids for `text`, with the special tokens the tokenizer adds around a sequence (a BOS, say).
    func encode(_ text: String) -> [Int]
    /// The text for `ids`; special tokens are left out and bytes that do not form UTF-8 become U+FFFD.
    func decode(_ ids: [Int]) -> String
}

/// A bad tokenizer.json: names the file, the part and the fix.
public struct TokenizerError: Error, CustomStringConvertible, Sendable {
    public let description: String
    init(_ path: String, _ message: String) { description = "\(path): \(message)" }
}

/// A Hugging Face tokenizer read from tokenizer.json, matching the `tokenizers` library on encode and decode.
///
/// The pipeline is the library's: added (special) tokens are split out of the raw text first; each remaining
/// piece is normalized, split again on the added tokens that match normalized text, pre-tokenized into words,
/// and each word is run through the BPE model; a post-processor adds the sequence's special tokens. Decoding
/// maps ids to token strings and runs the decoder chain. Supported: BPE models (byte-level as in GPT-2, Qwen,
/// Llama 3 and DeepSeek; SentencePiece-style with byte fallback as in Llama 2 and Mixtral); the normalizers,
/// pre-tokenizers, decoders and post-processors those checkpoints use. Anything else is refused by name.
///
/// Text is handled as Unicode scalars and vocabulary keys as UTF-8 bytes throughout, because Swift's `String`
/// compares by canonical equivalence ("é" == "e\u{301}") while a tokenizer must tell those apart.
public struct Tokenizer: TextTokenizer {
    /// Ids past this are refused as corrupt (tables are indexed by id; no vocabulary is near 2^24).
    public static let maxID = 1 << 24
    let addedTokens: AddedTokens
    let normalizer: Normalizer?
    let preTokenizer: PreTokenizer?
    let model: BPE
    let decoder: TokenDecoder?
    let postProcessor: PostProcessor?

    /// The largest id plus one, over the model's vocabulary and the added tokens.
    public var vocabularySize: Int { max(model.tokens.count, (addedTokens.byID.keys.max() ?? -1) + 1) }

    /// Reads `path` (a tokenizer.json file).
    public init(contentsOf path: String) throws {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw TokenizerError(path, "cannot be read; check the path")
        }
        try self.init(data: data, path: path)
    }

    /// Parses tokenizer.json text; `path` only names the file in errors.
    public init(data: Data, path: String = "tokenizer.json") throws {
        let object: Any
        do { object = try JSONSerialization.jsonObject(with: data) } catch {
            throw TokenizerError(path, "not valid JSON (\(error.localizedDescription)); re-save it with tokenizers' Tokenizer.save")
        }
        guard let root = object as? [String: Any] else { throw TokenizerError(path, "the top level is not a JSON object") }
        let spec = Spec(path: path)
        normalizer = try Normalizer.parse(root["normalizer"], spec.at("normalizer"))
        var added = try AddedTokens(root["added_tokens"], spec)
        added.prepare(normalizer: normalizer)
        addedTokens = added
        preTokenizer = try PreTokenizer.parse(root["pre_tokenizer"], spec.at("pre_tokenizer"))
        model = try BPE(root["model"], rawJSON: data, spec.at("model"))
        decoder = try TokenDecoder.parse(root["decoder"], spec.at("decoder"))
        postProcessor = try PostProcessor.parse(root["post_processor"], spec.at("post_processor"))
    }

    public func encode(_ text: String) -> [Int] { encode(text, addSpecialTokens: true) }
    public func decode(_ ids: [Int]) -> String { decode(ids, skipSpecialTokens: true) }

    /// The ids for `text`; with `addSpecialTokens` the post-processor's template (a BOS, say) is applied.
    public func encode(_ text: String, addSpecialTokens: Bool) -> [Int] {
        var ids: [Int] = []
        for raw in addedTokens.split(scalars(text), atStart: true, normalized: false) {
            if let id = raw.token { ids.append(id); continue }
            var piece = raw.text
            normalizer?.apply(&piece)
            for part in addedTokens.split(piece, atStart: raw.atStart, normalized: true) {
                if let id = part.token { ids.append(id); continue }
                if part.text.isEmpty { continue }  // the library drops empty pieces before pre-tokenizing
                let words = preTokenizer?.split([Piece(text: part.text, atStart: part.atStart)])
                    ?? [Piece(text: part.text, atStart: part.atStart)]
                for word in words where !word.text.isEmpty { ids += model.tokenize(word.text) }
            }
        }
        if addSpecialTokens, let p = postProcessor { ids = p.apply(ids) }
        return ids
    }

    /// The text for `ids`; ids outside the vocabulary are skipped, as the `tokenizers` library does.
    public func decode(_ ids: [Int], skipSpecialTokens: Bool) -> String {
        let tokens = ids.compactMap { id in
            skipSpecialTokens && addedTokens.byID[id]?.special == true ? nil : tokenScalars(id)
        }
        guard let decoder else { return tokens.map { string($0) }.joined(separator: " ") }
        return decoder.decode(tokens).map { string($0) }.joined()
    }

    /// The token string for one id (nil outside the vocabulary), as stored: byte-level tokens stay in their
    /// printable byte alphabet.
    public func token(_ id: Int) -> String? { tokenScalars(id).map(string) }

    /// An added token's content, else the model's token; nil outside the vocabulary.
    private func tokenScalars(_ id: Int) -> [Unicode.Scalar]? {
        if let a = addedTokens.byID[id] { return a.content }
        return id >= 0 && id < model.tokens.count ? model.tokens[id] : nil
    }
}

/// A stretch of text between splits; `atStart` says it begins at the start of the original text (the
/// Metaspace pre-tokenizer's `prepend_scheme: first` looks at that).
struct Piece {
    var text: [Unicode.Scalar]
    var atStart: Bool
}

/// Where in tokenizer.json a value sits, for error messages.
struct Spec {
    let path: String
    var where_: String = ""
    func at(_ key: String) -> Spec { Spec(path: path, where_: where_.isEmpty ? key : where_ + "." + key) }
    func error(_ message: String) -> TokenizerError { TokenizerError(path, "\(where_): \(message)") }
    func unsupported(_ type: String, _ supported: [String]) -> TokenizerError {
        error("type \(type) is not supported (supported: \(supported.joined(separator: ", "))); use a tokenizer.json with those components")
    }
    func string(_ object: [String: Any], _ key: String) throws -> String {
        guard let s = object[key] as? String else { throw at(key).error("missing or not a string") }
        return s
    }
    func bool(_ object: [String: Any], _ key: String, default d: Bool) throws -> Bool {
        guard let v = object[key], !(v is NSNull) else { return d }
        guard let b = v as? Bool else { throw at(key).error("not true or false") }
        return b
    }
    func int(_ value: Any?) throws -> Int {
        guard let n = value as? NSNumber, let i = Int(exactly: n.doubleValue) else { throw error("not an integer") }
        return i
    }
    func object(_ value: Any?) throws -> [String: Any] {
        guard let o = value as? [String: Any] else { throw error("not a JSON object") }
        return o
    }
    func array(_ value: Any?) throws -> [Any] {
        guard let a = value as? [Any] else { throw error("not a JSON array") }
        return a
    }
    func type(_ object: [String: Any]) throws -> String { try string(object, "type") }
}

func scalars(_ s: String) -> [Unicode.Scalar] { Array(s.unicodeScalars) }

func string(_ s: [Unicode.Scalar]) -> String { String(String.UnicodeScalarView(s)) }
