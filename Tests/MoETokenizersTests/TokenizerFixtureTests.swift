import Foundation
import MoETestSupport
import Testing

/// Tests/Fixtures/tokenizers (written by scripts/make_tokenizer_fixtures.py with the `tokenizers` library):
/// four tokenizer.json files set up as Qwen2, GPT-2, Llama 2/Mixtral and Metaspace checkpoints set theirs up,
/// each with the library's own encodings and decodings of a varied set of texts; and `converted`, the gpt2 one
/// as transformers' converters write it (`"continuing_subword_prefix": ""`, `"end_of_word_suffix": ""`).
@Suite struct TokenizerFixtureTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/tokenizers")
    static let names = ["qwen2", "gpt2", "llama", "metaspace", "converted"]

    struct Cases {
        let encode: [[String: Any]]
        let decode: [[String: Any]]
    }

    static func load(_ name: String) throws -> (Tokenizer, Cases) {
        let dir = root.appendingPathComponent(name)
        let tok = try Tokenizer(contentsOf: dir.appendingPathComponent("tokenizer.json").path)
        let data = try Data(contentsOf: dir.appendingPathComponent("cases.json"))
        let o = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        return (tok, Cases(encode: try #require(o["encode"] as? [[String: Any]]), decode: try #require(o["decode"] as? [[String: Any]])))
    }

    /// Compares by scalars: `String ==` would accept a canonically equivalent but different text.
    static func same(_ a: String, _ b: String) -> Bool { Array(a.unicodeScalars) == Array(b.unicodeScalars) }

    @Test(arguments: names) func encodesAsTheLibraryDoes(name: String) throws {
        let (tok, cases) = try Self.load(name)
        #expect(cases.encode.count >= 30)
        for c in cases.encode {
            let text = try #require(c["text"] as? String)
            let ids = try #require(c["ids"] as? [Int])
            let plain = try #require(c["ids_without_special"] as? [Int])
            #expect(tok.encode(text, addSpecialTokens: true) == ids, "\(name): \(text.debugDescription)")
            #expect(tok.encode(text, addSpecialTokens: false) == plain, "\(name): \(text.debugDescription)")
            let tokens = try #require(c["tokens"] as? [String])
            #expect(ids.map { tok.token($0) ?? "?" } == tokens, "\(name): \(text.debugDescription)")
        }
    }

    @Test(arguments: names) func decodesAsTheLibraryDoes(name: String) throws {
        let (tok, cases) = try Self.load(name)
        for c in cases.encode + cases.decode {
            let ids = try #require(c["ids"] as? [Int])
            let decoded = try #require(c["decoded"] as? String)
            let withSpecial = try #require(c["decoded_with_special"] as? String)
            let got = tok.decode(ids, skipSpecialTokens: true)
            #expect(Self.same(got, decoded), "\(name): \(ids) -> \(got.debugDescription), expected \(decoded.debugDescription)")
            let gotAll = tok.decode(ids, skipSpecialTokens: false)
            #expect(Self.same(gotAll, withSpecial), "\(name): \(ids) -> \(gotAll.debugDescription), expected \(withSpecial.debugDescription)")
        }
    }

    @Test func byteLevelTextRoundTrips() throws {
        // Byte-level BPE without a normalizer loses nothing: every text decodes back to itself.
        let (tok, cases) = try Self.load("gpt2")
        for c in cases.encode {
            let text = try #require(c["text"] as? String)
            #expect(Self.same(tok.decode(tok.encode(text), skipSpecialTokens: false), text))
        }
    }

    @Test func canonicallyEquivalentTokensStayApart() throws {
        // "é" (U+00E9) and "e" + U+0301 are equal as Swift strings but are two tokens here.
        let json = #"""
        {"added_tokens": [], "normalizer": null, "pre_tokenizer": null, "post_processor": null, "decoder": null,
         "model": {"type": "BPE", "vocab": {"\u00e9": 0, "e\u0301": 1, "e": 2, "\u0301": 3}, "merges": [["e", "\u0301"]]}}
        """#
        let tok = try Tokenizer(data: Data(json.utf8))
        #expect(tok.encode("\u{E9}") == [0])
        #expect(tok.encode("e\u{301}") == [1])
        #expect(Array(tok.decode([1]).unicodeScalars) == ["e", "\u{301}"])
    }

    @Test func badTokenizerFilesSayWhatToFix() throws {
        func message(_ json: String) -> String {
            do {
                _ = try Tokenizer(data: Data(json.utf8), path: "dir/tokenizer.json")
                return "accepted"
            } catch { return "\(error)" }
        }
        let model = #""model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": []}"#
        #expect(message("{\"model\": ").hasPrefix("dir/tokenizer.json: not valid JSON"))
        #expect(message(#"{"model": {"type": "Unigram", "vocab": []}}"#)
            == "dir/tokenizer.json: model: type Unigram is not supported (supported: BPE); use a tokenizer.json with those components")
        #expect(message(#"{\#(model), "pre_tokenizer": {"type": "BertPreTokenizer"}}"#).contains("pre_tokenizer: type BertPreTokenizer is not supported"))
        #expect(message(#"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [["a", "b"]]}}"#)
            .contains("model.merges[0]: [\"a\", \"b\"] or its merge is not in the vocabulary"))
        #expect(message(#"{"model": {"type": "BPE", "vocab": {"a": 0, "b": 0}, "merges": []}}"#).contains("id 0 is given to two tokens"))
        #expect(message(#"{\#(model), "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "("}, "behavior": "Isolated"}}"#)
            .contains("pre_tokenizer.pattern: regex ( does not compile"))
        #expect(message(#"{\#(model), "added_tokens": [{"content": "<s>"}]}"#).contains("added_tokens[0].id: not an integer"))
        // An empty affix is no affix; a real one is refused by name.
        let affix = ###""model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": [], "continuing_subword_prefix": "##", "end_of_word_suffix": ""}"###
        #expect(message("{\(affix.replacingOccurrences(of: "\"##\"", with: "\"\""))}") == "accepted")
        #expect(message("{\(affix)}") == "dir/tokenizer.json: model.continuing_subword_prefix: is \"##\"; a non-empty continuing_subword_prefix (WordPiece-style BPE) is not supported yet, only null or \"\"")
        #expect(message("{\(affix.replacingOccurrences(of: "\"\"}", with: "\"</w>\"}").replacingOccurrences(of: "\"##\"", with: "null"))}").contains("model.end_of_word_suffix: is \"</w>\""))
    }
}
