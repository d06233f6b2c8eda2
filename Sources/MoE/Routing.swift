/// The outcome of routing one batch: which expert each assignment goes to, with what weight, and the
/// router's raw outputs, as a value (STYLE rule 5: statistics and losses are return values, never globals).
///
/// Token-choice routers make K assignments per token, stored token-major (assignment a = n * K + k); Expert
/// Choice makes c per expert. Legend: N tokens, E experts, A assignments.
public struct Routing<T: TensorScalar> {
    public let numTokens: Int
    public let numExperts: Int
    /// Token of each assignment [A].
    public let tokens: [Int]
    /// Expert of each assignment [A].
    public let experts: [Int]
    /// Combine weight of each assignment [A] (differentiable back to the router).
    public let weights: Variable<T>
    /// Router logits [N, E]; nil for the parameter-free hash router.
    public let logits: Variable<T>?
    /// Score-function output [N, E] (softmax probabilities or sigmoid scores); nil for hash routing.
    public let scores: Variable<T>?
    /// Assignments per token (token-choice routers); nil for Expert Choice.
    public let k: Int?
    /// Assignments the router itself uses (GShard's random routing can skip a second expert).
    public let active: [Bool]
    /// Assignments that survived capacity (a subset of `active`; equal to it when dropless).
    public var kept: [Bool]
    /// Shazeer 2017's smooth, differentiable estimate of the load per expert [E] (noisy top-k in training).
    public let smoothLoad: Variable<T>?

    public init(
        numTokens: Int, numExperts: Int, tokens: [Int], experts: [Int], weights: Variable<T>,
        logits: Variable<T>?, scores: Variable<T>?, k: Int?, active: [Bool]? = nil, smoothLoad: Variable<T>? = nil
    ) {
        Shape.require(
            tokens.count == experts.count && weights.count == tokens.count, "routing",
            "\(tokens.count) tokens, \(experts.count) experts and \(weights.count) weights per assignment")
        self.numTokens = numTokens
        self.numExperts = numExperts
        self.tokens = tokens
        self.experts = experts
        self.weights = weights
        self.logits = logits
        self.scores = scores
        self.k = k
        let act = active ?? [Bool](repeating: true, count: tokens.count)
        self.active = act
        self.kept = act
        self.smoothLoad = smoothLoad
    }

    public var assignmentCount: Int { tokens.count }

    /// Kept assignments per expert.
    public var tokensPerExpert: [Int] {
        var c = [Int](repeating: 0, count: numExperts)
        for a in 0..<tokens.count where kept[a] { c[experts[a]] += 1 }
        return c
    }

    /// Expert indices as an [N, K] table (token-choice routers; -1 where an assignment was not kept).
    public var keptIndices: [[Int]] {
        guard let k else { return [] }
        return (0..<numTokens).map { n in (0..<k).map { kept[n * k + $0] ? experts[n * k + $0] : -1 } }
    }
}

/// Per-layer routing statistics, returned by every forward.
public struct RoutingStatistics: Sendable, Codable, Equatable {
    /// Kept assignments per expert.
    public let tokensPerExpert: [Int]
    /// Fraction of the router's assignments dropped by capacity.
    public let droppedFraction: Double
    /// Mean over tokens of the entropy (nats) of the router's distribution over experts (sigmoid scores are
    /// normalized per token first); 0 for hash routing.
    public let routerEntropy: Double
    /// Coefficient of variation (std / mean) of the load.
    public let loadCV: Double
    /// Largest load over the mean load.
    public let maxOverMean: Double
    /// Experts that received no token.
    public let unusedExperts: Int

    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public init<T>(_ r: Routing<T>) {
        let load = r.tokensPerExpert
        tokensPerExpert = load
        let active = r.active.filter { $0 }.count
        let kept = r.kept.filter { $0 }.count
        droppedFraction = active == 0 ? 0 : Double(active - kept) / Double(active)
        let mean = Double(load.reduce(0, +)) / Double(max(load.count, 1))
        let variance = load.reduce(0.0) { $0 + (Double($1) - mean) * (Double($1) - mean) } / Double(max(load.count, 1))
        loadCV = mean > 0 ? variance.squareRoot() / mean : 0
        maxOverMean = Self.maxOverMean(load)
        unusedExperts = load.filter { $0 == 0 }.count
        routerEntropy = r.scores.map { Self.meanEntropy($0.value) } ?? 0
    }

    /// The busiest expert's load over the mean load; 0 when no expert has a token.
    public static func maxOverMean(_ load: [Int]) -> Double {
        let mean = Double(load.reduce(0, +)) / Double(max(load.count, 1))
        return mean > 0 ? Double(load.max() ?? 0) / mean : 0
    }

    /// Mean over rows of the entropy of each row of `s` [N, E] normalized to sum to one.
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    static func meanEntropy<T: TensorScalar>(_ s: Tensor<T>) -> Double {
        let (n, e) = (s.shape[0], s.shape[1])
        return s.withUnsafePointer { p in
            var total = 0.0
            for row in 0..<n {
                let q = p + row * e
                let sum = Swift.max(VectorMath.sum(q, e), T.leastNormalMagnitude)
                var h: T = 0
                for i in 0..<e where q[i] > 0 {
                    let v = q[i] / sum
                    h -= v * T.log(v)
                }
                total += Double(h)
            }
            return total / Double(Swift.max(n, 1))
        }
    }
}
