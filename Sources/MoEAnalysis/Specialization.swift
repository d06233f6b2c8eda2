/// Which domains each expert takes: the validation documents of each domain of the built-in corpus run
/// through the model, counting every token's first-choice expert per MoE layer.
public struct SpecializationReport: Codable, Sendable {
    /// counts[layer][expert][domain]
    public let counts: [[[Int]]]
    public let domains: [String]

    public init(model: MoETransformer<Float>, documents: [SyntheticCorpus.Document], perDomain: Int = 40) {
        let tok = ByteTokenizer()
        domains = Domain.allCases.map(\.rawValue)
        var counts = model.moeLayers.map { l in [[Int]](repeating: [Int](repeating: 0, count: Domain.allCases.count), count: l.config.numExperts) }
        for (d, domain) in Domain.allCases.enumerated() {
            let docs = documents.filter { $0.domain == domain }.prefix(perDomain)
            guard !docs.isEmpty else { continue }
            let ids = tok.encode(docs.map { $0.text + "\n" }.joined())
            let out = model(ids: ids, batch: 1, .inference)
            for (layer, o) in out.moe.enumerated() {
                let r = o.routing
                let k = r.k ?? 1
                for n in 0..<r.numTokens where r.kept[n * k] { counts[layer][r.experts[n * k]][d] += 1 }
            }
        }
        self.counts = counts
    }

    /// Share of an expert's tokens that come from each domain.
    public func shares(layer: Int, expert: Int) -> [Double] {
        let c = counts[layer][expert]
        let total = Double(max(c.reduce(0, +), 1))
        return c.map { Double($0) / total }
    }

    /// Mean over experts of the largest domain share (1 = every expert serves one domain; 0.2 = none).
    public var meanTopShare: Double {
        var s = 0.0, n = 0
        for l in counts.indices {
            for e in counts[l].indices where counts[l][e].reduce(0, +) > 0 {
                s += shares(layer: l, expert: e).max() ?? 0
                n += 1
            }
        }
        return s / Double(max(n, 1))
    }

    /// A table per layer: each expert's share of the tokens and its domain mix.
    public func table() -> String {
        var lines: [String] = []
        func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s : s + String(repeating: " ", count: n - s.count) }
        for l in counts.indices {
            let total = Double(max(counts[l].flatMap { $0 }.reduce(0, +), 1))
            lines.append("layer \(l)  " + pad("expert", 8) + pad("load", 7) + domains.map { pad($0, 12) }.joined() + "main domain")
            for e in counts[l].indices {
                let sh = shares(layer: l, expert: e)
                let load = Double(counts[l][e].reduce(0, +)) / total
                let top = sh.indices.max { sh[$0] < sh[$1] } ?? 0
                lines.append("         " + pad("E\(e)", 8) + pad(String(format: "%.0f%%", load * 100), 7)
                             + sh.map { pad(String(format: "%.0f%%", $0 * 100), 12) }.joined()
                             + (counts[l][e].reduce(0, +) == 0 ? "(unused)" : domains[top]))
            }
        }
        return lines.joined(separator: "\n")
    }
}
