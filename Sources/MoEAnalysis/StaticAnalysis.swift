import Foundation
import MoEInference

/// The weight-only analyses of Lo et al. 2024 over a model's MoE layers, one layer at a time (its experts widened
/// to f32 from the mapped file, analysed, released): expert similarity at matrix and neuron level, neuron-aligned
/// similarity, the router's similarity and its regression on the experts', and PCA of experts and neurons.
public struct StaticAnalysis: Codable, Sendable {
    /// The matrices analysed: gate, up, down (up and down for experts without a gate).
    public static let matrixNames = ["gate", "up", "down"]

    public struct Similarity: Codable, Sendable {
        public let layer: Int
        public let matrix: String
        public let cosine: [[Double]]
    }

    public struct Aligned: Codable, Sendable {
        public let layer: Int
        public let matrix: String
        /// Cosine similarity after the second expert's neurons are permuted to match the first's (1 on the diagonal).
        public let cosine: [[Double]]
        /// Kendall's tau between that permutation and the identity.
        public let kendallTau: [[Double]]
        enum CodingKeys: String, CodingKey { case layer, matrix, cosine, kendallTau = "kendall_tau" }
    }

    public struct RouterSimilarity: Codable, Sendable {
        public let layer: Int
        public let cosine: [[Double]]
    }

    public struct RouterRegression: Codable, Sendable {
        public let layer: Int
        public let matrix: String
        /// Router similarity (y) on neuron-level expert similarity (x), over the pairs of distinct experts.
        public let slope: Double, intercept: Double, r2: Double
    }

    public struct PCA: Codable, Sendable {
        public let layer: Int
        public let matrix: String
        public let points: [[Double]]  // [points][2]
        /// The expert of each point (the experts themselves for the expert projection).
        public let expert: [Int]
        public let explained: [Double]
    }

    public var layers: [Int] = []
    public var experts = 0
    /// With a dense model (--dense): its FFN is the last row and column (index `experts`) of the weight and neuron
    /// similarity matrices.
    public var denseIndex: Int?
    public var weightSimilarity: [Similarity] = []
    public var neuronSimilarity: [Similarity] = []
    public var alignedSimilarity: [Aligned] = []
    /// Why the alignment was not run (the width limit), or nil.
    public var alignmentSkipped: String?
    public var routerSimilarity: [RouterSimilarity] = []
    public var routerRegression: [RouterRegression] = []
    public var pcaExperts: [PCA] = []
    public var pcaNeurons: [PCA] = []

    enum CodingKeys: String, CodingKey {
        case layers, experts, denseIndex = "dense_index"
        case weightSimilarity = "weight_similarity", neuronSimilarity = "neuron_similarity", alignedSimilarity = "aligned_similarity"
        case alignmentSkipped = "alignment_skipped", routerSimilarity = "router_similarity", routerRegression = "router_regression"
        case pcaExperts = "pca_experts", pcaNeurons = "pca_neurons"
    }

    /// Options: `alignWidth` bounds the expert width F for the neuron alignment, which costs O(F^3) per pair of
    /// experts (M1's F = 2816 would take hours); `neuronsPerExpert` bounds the neurons each expert contributes to
    /// the neuron PCA (evenly spaced; the projection's axes are fitted on those).
    /// `dense` gives the dense FFN of a layer (gate [F, D], up [F, D], down [D, F]) to compare with its experts.
    public static func run(_ model: AnalysisSubject, layers: [Int], dense: ((Int) throws -> [String: [Float]])? = nil, alignWidth: Int = 1024,
                           neuronsPerExpert: Int = 256, progress: (String) -> Void = { _ in }) throws -> StaticAnalysis {
        var out = StaticAnalysis()
        out.layers = layers
        for (n, l) in layers.enumerated() {
            let e = model.expertCount(layer: l)
            out.experts = Swift.max(out.experts, e)
            progress("static analyses: layer \(l) (\(n + 1) of \(layers.count)), \(e) experts")
            let weights = (0..<e).map { model.expertMatrices(layer: l, expert: $0) }
            let f = weights[0].width, d = weights[0].hidden
            let denseFFN = try dense?(l)
            if denseFFN != nil { out.denseIndex = e }
            var routerCos: [[Double]]? = nil
            if let r = model.routerWeights(layer: l) {
                let values = r.scalars
                routerCos = WeightStatistics.cosineMatrix((0..<r.shape[0]).map { i in Array(values[(i * d)..<((i + 1) * d)]) })
                out.routerSimilarity.append(RouterSimilarity(layer: l, cosine: routerCos!))
            }
            for name in weights[0].gate == nil ? ["up", "down"] : matrixNames {
                let axis: WeightStatistics.NeuronAxis = name == "down" ? .columns : .rows
                let (rows, cols) = name == "down" ? (d, f) : (f, d)
                let bank = WeightStatistics.Bank(weights.map { name == "gate" ? $0.gate! : name == "up" ? $0.up : $0.down }, rows: rows, cols: cols)
                let withDense = denseFFN.map { WeightStatistics.Bank(bank.matrices + [$0[name]!], rows: rows, cols: cols) } ?? bank
                out.weightSimilarity.append(Similarity(layer: l, matrix: name, cosine: WeightStatistics.matrixSimilarity(withDense)))
                let neuronAll = WeightStatistics.neuronSimilarity(withDense, axis: axis)
                out.neuronSimilarity.append(Similarity(layer: l, matrix: name, cosine: neuronAll))
                let neuron = Array(neuronAll.prefix(e).map { Array($0.prefix(e)) })  // the experts' pairs only
                if f <= alignWidth {
                    var sim = [[Double]](repeating: [Double](repeating: 1, count: e), count: e), tau = sim
                    for i in 0..<e {
                        for j in (i + 1)..<e {
                            let a = try WeightStatistics.align(bank.matrices[i], bank.matrices[j], rows: rows, cols: cols, axis: axis)
                            (sim[i][j], sim[j][i], tau[i][j], tau[j][i]) = (a.similarity, a.similarity, a.kendallTau, a.kendallTau)
                        }
                    }
                    out.alignedSimilarity.append(Aligned(layer: l, matrix: name, cosine: sim, kendallTau: tau))
                } else {
                    out.alignmentSkipped = "experts of width \(f) exceed --align-width \(alignWidth): the alignment costs O(F^3) per pair of experts"
                }
                if let rc = routerCos, let reg = WeightStatistics.regression(x: WeightStatistics.lowerTriangle(neuron), y: WeightStatistics.lowerTriangle(rc)) {
                    out.routerRegression.append(RouterRegression(layer: l, matrix: name, slope: reg.slope, intercept: reg.intercept, r2: reg.r2))
                }
                let experts = try WeightStatistics.pca(longRows: bank.matrices)
                out.pcaExperts.append(PCA(layer: l, matrix: name, points: experts.points, expert: Array(0..<e), explained: experts.explained))
                // The neuron projection: up to `neuronsPerExpert` evenly spaced neurons (D weights each) per expert.
                let keep = Swift.min(f, neuronsPerExpert)
                var sample: [Double] = [], owner: [Int] = []
                sample.reserveCapacity(e * keep * d)
                for (x, m) in bank.matrices.enumerated() {
                    for i in (0..<keep).map({ $0 * f / keep }) {
                        for j in 0..<d { sample.append(Double(axis == .rows ? m[i * d + j] : m[j * f + i])) }
                        owner.append(x)
                    }
                }
                let projected = try WeightStatistics.pca(sample, rows: owner.count, columns: d)
                out.pcaNeurons.append(PCA(layer: l, matrix: name, points: projected.points, expert: owner, explained: projected.explained))
            }
        }
        return out
    }
}
