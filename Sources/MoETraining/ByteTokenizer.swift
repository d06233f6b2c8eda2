import MoETokenizers

/// The default tokenizer: one token per UTF-8 byte (vocabulary 256), so any text round-trips exactly and
/// bits per byte is the loss in bits.
public struct ByteTokenizer: TextTokenizer {
    public static let vocabularySize = 256
    public init() {}
    public func encode(_ text: String) -> [Int] { text.utf8.map { Int($0) } }
    /// Decodes bytes; invalid UTF-8 (a sample cut inside a character) becomes U+FFFD.
    public func decode(_ ids: [Int]) -> String { String(decoding: ids.map { UInt8(clamping: $0) }, as: UTF8.self) }
}
