/// Expert capacity (GShard, Switch Transformer): an expert takes at most C assignments per batch,
/// C = max(min_capacity, ceil(capacity_factor * A / E)) with A the router's active assignments (N K for
/// token choice). Over-full experts drop assignments by position (top-1 choices of all tokens first, then
/// the second choices, each in token order) or by router probability (highest first). A dropped
/// assignment contributes nothing; a token with every assignment dropped passes through the residual
/// connection unchanged.
public enum Capacity {
    public static func capacity(assignments: Int, experts: Int, factor: Double, minimum: Int) -> Int {
        max(minimum, Int((factor * Double(assignments) / Double(experts)).rounded(.up)))
    }

    /// Marks the assignments that fit; returns the routing with `kept` updated.
    public static func apply<T>(_ routing: Routing<T>, factor: Double, minimum: Int, policy: DropPolicy) -> Routing<T> {
        var r = routing
        let a = r.assignmentCount
        let active = (0..<a).filter { r.active[$0] }
        let cap = capacity(assignments: active.count, experts: r.numExperts, factor: factor, minimum: minimum)
        var kept = [Bool](repeating: false, count: a)
        var used = [Int](repeating: 0, count: r.numExperts)
        let order: [Int]
        switch policy {
        case .position:
            // Slot-major: every token's first choice before any second choice (GShard's priority).
            let k = r.k ?? 1
            order = active.sorted { ($0 % k, $0 / k) < ($1 % k, $1 / k) }
        case .probability:
            let w = r.weights.value
            let priority: [Double] = (0..<a).map { i in
                if let s = r.scores?.value { return Double(s[r.tokens[i], r.experts[i]]) }
                return Double(w[i])
            }
            order = active.sorted { priority[$0] > priority[$1] || (priority[$0] == priority[$1] && $0 < $1) }
        }
        for i in order where used[r.experts[i]] < cap {
            used[r.experts[i]] += 1
            kept[i] = true
        }
        r.kept = kept
        return r
    }
}

/// The dispatch plan: the kept assignments sorted by expert with a counting sort, so each expert's tokens
/// form one contiguous block of rows (MegaBlocks' permute step).
public struct DispatchPlan: Sendable {
    public let numTokens: Int
    public let numExperts: Int
    /// Assignment index of each sorted row [M].
    public let assignment: [Int]
    /// Token of each sorted row [M].
    public let token: [Int]
    /// Rows of expert e are offsets[e] ..< offsets[e + 1].
    public let offsets: [Int]
    /// Rows of each token (CSR): token n owns rows tokenRows[tokenStart[n] ..< tokenStart[n + 1]].
    public let tokenStart: [Int]
    public let tokenRows: [Int]

    public init<T>(_ r: Routing<T>) {
        self.init(numTokens: r.numTokens, numExperts: r.numExperts, tokens: r.tokens, experts: r.experts, kept: r.kept)
    }

    public init(numTokens: Int, numExperts: Int, tokens: [Int], experts: [Int], kept: [Bool]) {
        self.numTokens = numTokens
        self.numExperts = numExperts
        var counts = [Int](repeating: 0, count: numExperts + 1)
        for a in 0..<tokens.count where kept[a] { counts[experts[a] + 1] += 1 }
        for e in 0..<numExperts { counts[e + 1] += counts[e] }
        offsets = counts
        var next = counts
        var assignment = [Int](repeating: 0, count: counts[numExperts])
        var token = assignment
        for a in 0..<tokens.count where kept[a] {
            let row = next[experts[a]]
            next[experts[a]] += 1
            assignment[row] = a
            token[row] = tokens[a]
        }
        self.assignment = assignment
        self.token = token
        var start = [Int](repeating: 0, count: numTokens + 1)
        for t in token { start[t + 1] += 1 }
        for n in 0..<numTokens { start[n + 1] += start[n] }
        var fill = start
        var rows = [Int](repeating: 0, count: token.count)
        for (row, t) in token.enumerated() {
            rows[fill[t]] = row
            fill[t] += 1
        }
        tokenStart = start
        tokenRows = rows
    }

    public var rowCount: Int { token.count }
    public func rows(of e: Int) -> Range<Int> { offsets[e]..<offsets[e + 1] }
}
