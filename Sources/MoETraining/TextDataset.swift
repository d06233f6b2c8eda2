import Foundation

/// Training and validation token streams with a deterministic split, from the built-in corpus or a
/// user's file (UTF-8 text, or JSONL with a "text" field per line).
public struct TextDataset: Sendable {
    public let train: [Int]
    public let validation: [Int]
    /// Validation documents by domain (built-in corpus only), for the specialization table.
    public let validationDocuments: [SyntheticCorpus.Document]
    public let source: String

    public struct DataError: Error, CustomStringConvertible {
        public let description: String
    }

    /// The built-in corpus: every 20th document goes to validation. `domains` keeps only those domains' documents
    /// (the lifelong experiment's distributions).
    public init(seed: UInt64, documents: Int = 60_000, domains: [Domain]? = nil) {
        let corpus = SyntheticCorpus(seed: seed, count: documents)
        let tok = ByteTokenizer()
        var train: [Int] = [], val: [Int] = []
        var valDocs: [SyntheticCorpus.Document] = []
        for (i, d) in corpus.documents.enumerated() where domains.map({ $0.contains(d.domain) }) ?? true {
            let ids = tok.encode(d.text + "\n")
            if i % 20 == 19 {
                val += ids
                valDocs.append(d)
            } else {
                train += ids
            }
        }
        self.train = train
        self.validation = val
        validationDocuments = valDocs
        source = "built-in synthetic corpus (seed \(seed), \(documents) documents: \((domains ?? Domain.allCases).map(\.rawValue).joined(separator: ", ")))"
    }

    /// A user's file: the last 5% of its bytes (at least one sequence) is the validation set.
    public init(file path: String, minimumValidation: Int) throws {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw DataError(description: "\(path): file not found; pass a UTF-8 text file or a JSONL file with a \"text\" field")
        }
        guard !isDir.boolValue else {
            throw DataError(description: "\(path): is a directory; pass a UTF-8 text file or a JSONL file with a \"text\" field")
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw DataError(description: "\(path): cannot be read; check its permissions")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw DataError(description: "\(path): not valid UTF-8; convert the file to UTF-8 text")
        }
        var body = text
        if path.hasSuffix(".jsonl") {
            var docs: [String] = []
            for (n, line) in text.split(separator: "\n", omittingEmptySubsequences: true).enumerated() {
                guard let obj = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                      let t = obj["text"] as? String else {
                    throw DataError(description: "\(path):\(n + 1): not a JSON object with a string \"text\" field; fix the line or pass plain text")
                }
                docs.append(t)
            }
            body = docs.joined(separator: "\n") + "\n"
        }
        let ids = ByteTokenizer().encode(body)
        let valCount = max(minimumValidation, ids.count / 20)
        guard ids.count >= 2 * valCount + 2 else {
            throw DataError(description: "\(path): only \(ids.count) bytes; the training data needs at least \(2 * valCount + 2) for this sequence length")
        }
        train = Array(ids[..<(ids.count - valCount)])
        validation = Array(ids[(ids.count - valCount)...])
        validationDocuments = []
        source = "\(path) (\(ids.count) bytes)"
    }
}

/// Draws training batches: B windows of T + 1 tokens at random offsets. Its RNG is the data position,
/// saved in checkpoints so a resumed run sees exactly the batches an uninterrupted one would.
public struct BatchSampler: Sendable, Codable, Equatable {
    public var rng: RandomGenerator
    public init(seed: UInt64) { rng = RandomGenerator(seed: seed ^ 0xDA7A) }

    /// (inputs [B T], targets [B T]) row-major.
    public mutating func next(_ tokens: [Int], batch: Int, length: Int) -> (inputs: [Int], targets: [Int]) {
        var x: [Int] = [], y: [Int] = []
        x.reserveCapacity(batch * length)
        y.reserveCapacity(batch * length)
        for _ in 0..<batch {
            let start = rng.int(below: tokens.count - length - 1)
            x += tokens[start..<(start + length)]
            y += tokens[(start + 1)...(start + length)]
        }
        return (x, y)
    }
}
