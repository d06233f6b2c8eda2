@_exported import MoETraining

/// How a mixture divides its inputs among experts: per (vowel, speaker group) cell, which expert holds
/// the most gate mass; and, over all inputs, how concentrated each input's gate is.
public struct LocalizationReport: Sendable, Codable {
    public struct Cell: Sendable, Codable {
        public let vowel: Int
        public let group: Int
        /// Mean gate probability of each expert over the cell's samples.
        public let meanGate: [Double]
        public var winner: Int { meanGate.indices.max { meanGate[$0] < meanGate[$1] } ?? 0 }
        public var share: Double { meanGate[winner] }
    }

    public let experts: Int
    public let cells: [Cell]
    /// Mean over inputs of the largest gate probability (1 = every input handled by one expert).
    public let meanMaxGate: Double
    /// Mean over inputs of exp(entropy of the gate): the effective number of experts per input.
    public let effectiveExpertsPerInput: Double
    /// Fraction of inputs that one expert dominates (largest gate >= 0.9).
    public let dominatedFraction: Double
    /// Fraction of inputs each expert wins (largest gate).
    public let winShare: [Double]

    public init(gates: [[Double]], samples: [VowelData.Sample], experts: Int) {
        self.experts = experts
        var cells: [Cell] = []
        for v in VowelData.vowels.indices {
            for g in VowelData.groups.indices {
                let rows = samples.indices.filter { samples[$0].vowel == v && samples[$0].group == g }
                let mean = (0..<experts).map { e in rows.reduce(0) { $0 + gates[$1][e] } / Double(max(rows.count, 1)) }
                cells.append(Cell(vowel: v, group: g, meanGate: mean))
            }
        }
        self.cells = cells
        let n = Double(max(gates.count, 1))
        meanMaxGate = gates.reduce(0) { $0 + ($1.max() ?? 0) } / n
        effectiveExpertsPerInput = gates.reduce(0) { acc, p in
            acc + Double.exp(-p.reduce(0) { $1 > 0 ? $0 + $1 * Double.log($1) : $0 })
        } / n
        dominatedFraction = Double(gates.filter { ($0.max() ?? 0) >= 0.9 }.count) / n
        var wins = [Double](repeating: 0, count: experts)
        for p in gates { wins[p.indices.max { p[$0] < p[$1] } ?? 0] += 1 }
        winShare = wins.map { $0 / n }
    }

    public func cell(vowel: Int, group: Int) -> Cell { cells[vowel * VowelData.groups.count + group] }

    /// Experts that win at least `minShare` of the inputs.
    public func expertsInUse(minShare: Double = 0.05) -> Int { winShare.filter { $0 >= minShare }.count }

    /// A text table: one row per vowel, one column per speaker group, "E<winner> <share>%".
    public func table() -> String {
        var lines: [String] = []
        let w = 12
        func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s : s + String(repeating: " ", count: n - s.count) }
        lines.append(pad("vowel", w) + VowelData.groups.map { pad($0, w) }.joined())
        for v in VowelData.vowels.indices {
            var line = pad(VowelData.vowels[v], w)
            for g in VowelData.groups.indices {
                let c = cell(vowel: v, group: g)
                line += pad("E\(c.winner) \(Int((c.share * 100).rounded()))%", w)
            }
            lines.append(line)
        }
        return lines.joined(separator: "\n")
    }
}
