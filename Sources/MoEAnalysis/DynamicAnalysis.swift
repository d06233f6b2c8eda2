import Foundation
import MoE
import MoEInference
import MoETensor

/// The analyses of Lo et al. 2024 that run a text through the model, and the basis for pruning beyond the paper.
/// The text runs once with the model's own routing; at each MoE layer every expert is also run on every token of
/// the layer's true input (as if all experts were chosen), which gives the experts' output similarity, the router
/// score rank against output norm rank, the gate activations, and REAP's saliency. Then the text runs again with
/// each expert removed, and with top-k set to 1 ... E in every layer, for the loss. The text runs in windows of
/// `context` tokens, each from an empty cache.
public struct DynamicAnalysis: Codable, Sendable {
    public struct OutputSimilarity: Codable, Sendable {
        public let layer: Int
        /// Mean over tokens of the cosine similarity between two experts' outputs on the same token [E][E].
        public let cosine: [[Double]]
        /// Mean over tokens of the angular similarity 1 - arccos(cos) / pi [E][E].
        public let angular: [[Double]]
        /// Mean of the off-diagonal angular similarities: lower is more diverse.
        public let meanAngular: Double
        enum CodingKeys: String, CodingKey { case layer, cosine, angular, meanAngular = "mean_angular" }
    }

    public struct RankCounts: Codable, Sendable {
        public let layer: Int
        /// counts[i][j]: tokens whose i-th highest router score went to the expert with the j-th largest output norm.
        public let counts: [[Int]]
        /// Fraction of tokens whose top-scored expert has the largest output norm.
        public let topScoreLargestNorm: Double
        enum CodingKeys: String, CodingKey { case layer, counts, topScoreLargestNorm = "top_score_largest_norm" }
    }

    public struct Activations: Codable, Sendable {
        public let layer: Int
        public let token: Int  // position in the text
        /// act(gate x) per expert [E][bins]: the neurons' mean in `bins` equal groups (all neurons when F <= 256).
        public let values: [[Double]]
        public let neuronsPerBin: Int
        enum CodingKeys: String, CodingKey { case layer, token, values, neuronsPerBin = "neurons_per_bin" }
    }

    public struct Routing: Codable, Sendable {
        public let layer: Int
        /// Combine weight per token and expert [T][E] (0 where not chosen).
        public let weights: [[Double]]
        /// Each token's first choice (highest weight).
        public let firstChoice: [Int]
        /// Tokens per expert.
        public let load: [Int]
        public let unused: [Int]
        /// Experts with more than twice the mean load.
        public let overloaded: [Int]
        /// REAP's saliency per expert: mean over the tokens routed to it of combine weight x output norm (0 unused).
        public let saliency: [Double]
        enum CodingKeys: String, CodingKey { case layer, weights, firstChoice = "first_choice", load, unused, overloaded, saliency }
    }

    public struct Removal: Codable, Sendable {
        public let layer: Int
        public let expert: Int
        public let loss: Double
    }

    public struct TopK: Codable, Sendable {
        public let k: Int
        public let loss: Double?  // nil: this router cannot take that k (the reason in `note`)
        public let note: String?
    }

    public var tokens: [Int] = []
    /// The text of each token, for the coloured text.
    public var pieces: [String] = []
    public var loss = 0.0
    public var outputSimilarity: [OutputSimilarity] = []
    public var rankCounts: [RankCounts] = []
    public var topScoreLargestNorm = 0.0
    public var activations: [Activations] = []
    public var routing: [Routing] = []
    public var removal: [Removal] = []
    public var topK: [TopK] = []

    enum CodingKeys: String, CodingKey {
        case tokens, pieces, loss
        case outputSimilarity = "output_similarity", rankCounts = "rank_counts", topScoreLargestNorm = "top_score_largest_norm"
        case activations = "gate_activations", routing, removal = "expert_removal", topK = "top_k"
    }

    /// Summed next-token cross-entropy (nats) of logits [T, V] on `tokens`, and the count of predictions.
    static func crossEntropy(_ logits: Tensor<Float>, _ tokens: [Int]) -> (sum: Double, count: Int) {
        let v = logits.shape[1]
        var total = 0.0
        logits.withUnsafeBufferPointer { p in
            for t in 0..<(tokens.count - 1) {
                total -= Perplexity.logSoftmax(UnsafeBufferPointer(rebasing: p[(t * v)..<((t + 1) * v)]))[tokens[t + 1]]
            }
        }
        return (total, tokens.count - 1)
    }

    /// The text in windows of `context` tokens (each from an empty cache, as `moe perplexity` scores it): the mean
    /// next-token cross-entropy over the windows' predictions.
    static func loss(_ session: AnalysisRun, _ tokens: [Int], context window: Int) -> Double {
        var sum = 0.0, count = 0
        for start in stride(from: 0, to: tokens.count, by: window) {
            let part = Array(tokens[start..<Swift.min(tokens.count, start + window)])
            guard part.count >= 2 else { continue }
            let r = crossEntropy(session.logits(part), part)
            sum += r.sum
            count += r.count
        }
        return count > 0 ? sum / Double(count) : 0
    }

    static func loss(_ model: AnalysisSubject, _ tokens: [Int], context: Int, overrides: [Int: Router<Float>] = [:]) -> Double {
        let s = model.makeRun(context: context)
        s.routerOverrides = overrides
        return loss(s, tokens, context: context)
    }

    /// `activationTokens`: positions whose gate activations are kept. `removal` and `topK` switch the loss
    /// experiments (one forward of the text per removed expert and per k).
    public static func run(_ model: AnalysisSubject, tokens: [Int], pieces: [String], layers: [Int], activationTokens: [Int], context: Int,
                           removal: Bool = true, topK: Bool = true, progress: @escaping (String) -> Void = { _ in }) throws -> DynamicAnalysis {
        var out = DynamicAnalysis()
        out.tokens = tokens
        out.pieces = pieces
        let wanted = Set(layers)
        precondition(context >= 2, "[analysis] a context of \(context) tokens")
        let session = model.makeRun(context: context)
        // Sums per layer over the prompt's chunks (a long text reaches each layer in several calls).
        final class Sums {
            var tokens = 0, top = 0, scored = 0
            var cos: [[Double]], ang: [[Double]], counts: [[Int]]
            var weights: [[Double]] = []
            var load: [Int], saliency: [Double]
            var activations: [Activations] = []
            init(_ e: Int) {
                cos = [[Double]](repeating: [Double](repeating: 0, count: e), count: e)
                ang = cos
                counts = [[Int]](repeating: [Int](repeating: 0, count: e), count: e)
                load = [Int](repeating: 0, count: e)
                saliency = [Double](repeating: 0, count: e)
            }
        }
        var sums: [Int: Sums] = [:]
        session.moeObserver = { l, h, routing in
            guard wanted.contains(l) else { return }
            let t = h.shape[0], e = routing.numExperts, d = h.shape[1]
            let acc = sums[l] ?? Sums(e)
            sums[l] = acc
            let base = acc.tokens
            progress("dynamic analyses: layer \(l), tokens \(base)..<\(base + t), all \(e) experts")
            let outputs = (0..<e).map { session.expertOutput(layer: l, expert: $0, h).scalars }
            var norms = [[Double]](repeating: [Double](repeating: 0, count: e), count: t)
            for r in 0..<t {
                let vecs = (0..<e).map { x in outputs[x][(r * d)..<((r + 1) * d)].map(Double.init) }
                let c = WeightStatistics.cosineMatrix(vecs)
                for i in 0..<e {
                    norms[r][i] = vecs[i].reduce(0) { $0 + $1 * $1 }.squareRoot()
                    for j in 0..<e {
                        acc.cos[i][j] += c[i][j]
                        acc.ang[i][j] += 1 - Foundation.acos(Swift.min(1, Swift.max(-1, c[i][j]))) / Double.pi
                    }
                }
            }
            // Router score rank against output norm rank.
            if let scores = routing.scores?.value.scalars {
                for r in 0..<t {
                    let byScore = (0..<e).sorted { scores[r * e + $0] > scores[r * e + $1] }
                    let byNorm = (0..<e).sorted { norms[r][$0] > norms[r][$1] }
                    var normRank = [Int](repeating: 0, count: e)
                    for (rank, x) in byNorm.enumerated() { normRank[x] = rank }
                    for (i, x) in byScore.enumerated() { acc.counts[i][normRank[x]] += 1 }
                    if normRank[byScore[0]] == 0 { acc.top += 1 }
                }
                acc.scored += t
            }
            // Routing weights, load and REAP's saliency sums.
            let w = routing.weights.value.scalars
            var weights = [[Double]](repeating: [Double](repeating: 0, count: e), count: t)
            for a in 0..<routing.tokens.count where routing.kept[a] {
                let r = routing.tokens[a], x = routing.experts[a]
                weights[r][x] += Double(w[a])
                acc.load[x] += 1
                acc.saliency[x] += Double(w[a]) * norms[r][x]
            }
            acc.weights += weights
            // Gate activations of the chosen positions that fall in this chunk.
            let f = model.expertWidth(layer: l)
            let bins = Swift.min(f, 256), per = (f + bins - 1) / bins
            for p in activationTokens where p >= base && p < base + t {
                let row = h.rows((p - base)..<(p - base + 1))
                let values = (0..<e).map { x -> [Double] in
                    let a = session.expertGateActivations(layer: l, expert: x, row).scalars
                    return (0..<bins).map { b in
                        let lo = b * per, hi = Swift.min(f, lo + per)
                        return hi > lo ? a[lo..<hi].reduce(0) { $0 + Double($1) } / Double(hi - lo) : 0
                    }
                }
                acc.activations.append(Activations(layer: l, token: p, values: values, neuronsPerBin: per))
            }
            acc.tokens += t
        }
        progress("dynamic analyses: the text through the model (\(tokens.count) tokens)")
        out.loss = loss(session, tokens, context: context)
        var top = 0, scored = 0
        for l in layers {
            guard let acc = sums[l], acc.tokens > 0 else { continue }
            let e = acc.load.count, n = Double(acc.tokens)
            let angular = acc.ang.map { $0.map { $0 / n } }
            out.outputSimilarity.append(OutputSimilarity(layer: l, cosine: acc.cos.map { $0.map { $0 / n } }, angular: angular,
                                                         meanAngular: WeightStatistics.offDiagonalMean(angular)))
            if acc.scored > 0 {
                out.rankCounts.append(RankCounts(layer: l, counts: acc.counts, topScoreLargestNorm: Double(acc.top) / Double(acc.scored)))
                top += acc.top
                scored += acc.scored
            }
            let first = acc.weights.map { row in row.indices.max { row[$0] < row[$1] } ?? 0 }
            let mean = Double(acc.load.reduce(0, +)) / Double(e)
            out.routing.append(Routing(
                layer: l, weights: acc.weights, firstChoice: first, load: acc.load, unused: acc.load.indices.filter { acc.load[$0] == 0 },
                overloaded: acc.load.indices.filter { Double(acc.load[$0]) > 2 * mean },
                saliency: (0..<e).map { acc.load[$0] > 0 ? acc.saliency[$0] / Double(acc.load[$0]) : 0 }))
            out.activations += acc.activations
        }
        out.topScoreLargestNorm = scored > 0 ? Double(top) / Double(scored) : 0
        if removal {
            for l in layers {
                // A router without weights (hash routing) cannot have an expert taken out of its choice.
                guard let router = model.router(layer: l), router.gate != nil else { continue }
                for x in 0..<model.expertCount(layer: l) {
                    progress("expert removal: layer \(l), expert \(x)")
                    let r = try router.with(removed: [x])
                    out.removal.append(Removal(layer: l, expert: x, loss: loss(model, tokens, context: context, overrides: [l: r])))
                }
            }
        }
        if topK {
            let e = layers.map { model.expertCount(layer: $0) }.max() ?? 0
            for k in 1...Swift.max(1, e) {
                progress("top-k: k = \(k) in every MoE layer")
                do {
                    var overrides: [Int: Router<Float>] = [:]
                    for l in model.moeLayers { if let r = model.router(layer: l) { overrides[l] = try r.with(topK: k) } }
                    out.topK.append(TopK(k: k, loss: loss(model, tokens, context: context, overrides: overrides), note: nil))
                } catch {
                    out.topK.append(TopK(k: k, loss: nil, note: "\(error)"))
                }
            }
        }
        return out
    }
}
