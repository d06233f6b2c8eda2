/// PEER, "Mixture of A Million Experts" (He 2024, arXiv:2407.04153): N = n² single-neuron experts
/// e_i(x) = σ(u_iᵀ x) v_i, found by product-key retrieval and mixed by a softmax over the k retrieved.
///
/// Legend: N tokens, D model dim, H heads, K experts per head, n sub-keys per half (n² experts), d key dim
/// per half.
public struct PEERConfig: Codable, Sendable, Equatable {
    public var hiddenSize: Int
    /// n² single-neuron experts.
    public var numExperts: Int
    public var heads = 8
    /// Experts each head keeps (and the top-k taken in each half of the product keys).
    public var expertsPerHead = 16
    /// Width d of each half of a head's query and of a sub-key.
    public var keyDim = 64
    /// σ of the experts.
    public var activation: ExpertActivation = .gelu
    /// Batch norm on the queries (the paper's option that evened out expert use).
    public var queryBatchNorm = false

    enum CodingKeys: String, CodingKey {
        case hiddenSize = "hidden_size", numExperts = "num_experts", heads = "num_heads", expertsPerHead = "experts_per_head"
        case keyDim = "key_dim", activation, queryBatchNorm = "query_batch_norm"
    }

    public init(hiddenSize: Int, numExperts: Int, heads: Int = 8, expertsPerHead: Int = 16, keyDim: Int = 64) {
        self.hiddenSize = hiddenSize
        self.numExperts = numExperts
        self.heads = heads
        self.expertsPerHead = expertsPerHead
        self.keyDim = keyDim
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        hiddenSize = try c.decode(Int.self, forKey: .hiddenSize)
        numExperts = try c.decode(Int.self, forKey: .numExperts)
        heads = try c.decodeIfPresent(Int.self, forKey: .heads) ?? heads
        expertsPerHead = try c.decodeIfPresent(Int.self, forKey: .expertsPerHead) ?? expertsPerHead
        keyDim = try c.decodeIfPresent(Int.self, forKey: .keyDim) ?? keyDim
        activation = try c.decodeIfPresent(ExpertActivation.self, forKey: .activation) ?? activation
        queryBatchNorm = try c.decodeIfPresent(Bool.self, forKey: .queryBatchNorm) ?? false
    }

    /// The largest supported expert count: 2^26 (8192²), so N·D stays far from overflow for any sane D.
    public static let maxExperts = 1 << 26

    /// n, the sub-keys per half: √N.
    public var subKeys: Int { Self.exactSquareRoot(numExperts) ?? 0 }

    /// √v when v is a perfect square.
    public static func exactSquareRoot(_ v: Int) -> Int? {
        guard v >= 0 else { return nil }
        var r = Int(Double(v).squareRoot())
        while r * r > v { r -= 1 }
        while (r + 1) * (r + 1) <= v { r += 1 }
        return r * r == v ? r : nil
    }

    /// Query width: two halves of `keyDim` per head.
    public var queryWidth: Int { heads * 2 * keyDim }

    public func validate() throws(ConfigError) {
        try ConfigError.check(hiddenSize >= 1 && hiddenSize <= 1 << 16, "hidden_size", hiddenSize, "use a model dimension between 1 and 65536")
        try ConfigError.check(numExperts >= 4 && numExperts <= Self.maxExperts, "num_experts", numExperts,
                              "use between 4 and \(Self.maxExperts) experts (a square n², such as 16384 = 128²)")
        if Self.exactSquareRoot(numExperts) == nil {
            let r = Int(Double(numExperts).squareRoot())
            throw ConfigError("num_experts", numExperts, "PEER's product keys need a square n²; use \(r * r) (\(r)²) or \((r + 1) * (r + 1)) (\(r + 1)²)")
        }
        try ConfigError.check(heads >= 1 && heads <= 256, "num_heads", heads, "use between 1 and 256 heads")
        try ConfigError.check(expertsPerHead >= 1 && expertsPerHead <= subKeys, "experts_per_head", expertsPerHead,
                              "k must be between 1 and n = √num_experts (\(subKeys)): each half keeps its top k of n sub-keys")
        try ConfigError.check(keyDim >= 1 && keyDim <= 4096, "key_dim", keyDim, "use a key width between 1 and 4096")
        try ConfigError.check([.gelu, .geluTanh, .relu, .silu].contains(activation), "activation", activation.rawValue,
                              "a PEER expert is one neuron: use gelu, gelu_tanh, relu or silu")
    }

    /// Multiply-adds per token: the query, the 2·H·n sub-key scores, and H·K experts of 2·D each.
    public var flopsPerToken: Int {
        2 * (hiddenSize * queryWidth + heads * 2 * subKeys * keyDim + heads * expertsPerHead * 2 * hiddenSize)
    }
}

/// What a PEER layer returns: its output and the experts it retrieved ([N, H, K], flattened).
public struct PEEROutput<T: TensorScalar> {
    public let output: Variable<T>
    public let experts: [Int]
}

/// A PEER layer: query network (optionally batch-normed), product-key retrieval per head, softmax over each
/// head's K scores, and the retrieved single-neuron experts summed over heads. Experts are gathered by index
/// (`PEERKernel`); the tables are never expanded.
///
/// Parameter paths under `path`: `query.weight` [H·2·d, D], `keys` [H·2·n, d] (row (h·2 + half)·n + i),
/// `down_embed` (the u_i) [n², D], `up_embed` (the v_i) [n², D], and with batch norm `query_norm.weight`,
/// `query_norm.bias` and the buffers `query_norm.running_mean`, `query_norm.running_var`.
public final class PEERLayer<T: TensorScalar>: Module {
    public let config: PEERConfig
    public let query: Linear<T>
    public let keys: Parameter<T>
    public let down: Parameter<T>
    public let up: Parameter<T>
    public let normWeight: Parameter<T>?
    public let normBias: Parameter<T>?
    public let runningMean: Parameter<T>?
    public let runningVar: Parameter<T>?
    /// Batch-norm momentum and epsilon (PyTorch's defaults).
    public static var normMomentum: Double { 0.1 }
    public static var normEps: Double { 1e-5 }

    public init(config: PEERConfig, path: String = "", rng: inout RandomGenerator) throws(ConfigError) {
        try config.validate()
        self.config = config
        let (d, n, w) = (config.hiddenSize, config.subKeys, config.queryWidth)
        query = Linear(d, w, bias: false, path: joinPath(path, "query"), rng: &rng)
        keys = Parameter(joinPath(path, "keys"), .normal([config.heads * 2 * n, config.keyDim], std: T(1 / Double(config.keyDim).squareRoot()), rng: &rng))
        // u_i and v_i as in a dense FFN of width H·K: fan-in scaled.
        down = Parameter(joinPath(path, "down_embed"), .normal([config.numExperts, d], std: T(1 / Double(d).squareRoot()), rng: &rng))
        up = Parameter(joinPath(path, "up_embed"), .normal([config.numExperts, d], std: T(1 / Double(config.heads * config.expertsPerHead).squareRoot()), rng: &rng))
        if config.queryBatchNorm {
            normWeight = Parameter(joinPath(path, "query_norm.weight"), .ones([w]))
            normBias = Parameter(joinPath(path, "query_norm.bias"), .zeros([w]))
            runningMean = Parameter(joinPath(path, "query_norm.running_mean"), .zeros([w]))
            runningVar = Parameter(joinPath(path, "query_norm.running_var"), .ones([w]))
        } else {
            (normWeight, normBias, runningMean, runningVar) = (nil, nil, nil, nil)
        }
    }

    public var parameters: [Parameter<T>] { query.parameters + [keys, down, up] + [normWeight, normBias].compactMap { $0 } }
    public var buffers: [Parameter<T>] { [runningMean, runningVar].compactMap { $0 } }

    /// Queries [N, H·2·d]: the query network, then batch norm with batch statistics in training (updating the
    /// running ones) and the running statistics in inference.
    func queries(_ x: Variable<T>, _ ctx: ForwardContext<T>, training: Bool) -> Variable<T> {
        let q = query(x, ctx)
        guard let normWeight, let normBias, let runningMean, let runningVar else { return q }
        let eps = T(Self.normEps)
        let normed: Variable<T>
        if training && q.shape[0] > 1 {
            let mean = q.mean(axis: 0, keepDims: true)  // [1, W]
            let centered = q - mean
            let variance = centered.square().mean(axis: 0, keepDims: true)  // biased, as batch norm normalizes
            normed = centered * (variance + eps).rsqrt()
            // Running statistics use the unbiased variance (PyTorch).
            let n = T(q.shape[0]), m = T(Self.normMomentum)
            let unbiased: T = m * n / Swift.max(n - 1, 1)
            runningMean.value = runningMean.value.scaled(by: 1 - m) + mean.value.reshaped([-1]).scaled(by: m)
            runningVar.value = runningVar.value.scaled(by: 1 - m) + variance.value.reshaped([-1]).scaled(by: unbiased)
        } else {
            let inv: Tensor<T> = runningVar.value.adding(eps).unary(.rsqrt)
            normed = (q - Variable(runningMean.value)) * Variable(inv)
        }
        return normed * ctx(normWeight) + ctx(normBias)
    }

    /// x [..., D] -> [..., D]. `reference: true` runs the composed (naive) expert computation instead of the
    /// fused kernel; both retrieve with the same product keys.
    public func callAsFunction(_ x: Variable<T>, _ ctx: ForwardContext<T>, training: Bool = false, reference: Bool = false) -> PEEROutput<T> {
        let c = config
        Shape.require(x.shape.last == c.hiddenSize, "peer", "input \(Shape.describe(x.shape)) should end in \(c.hiddenSize)")
        let flat = x.reshaped([-1, c.hiddenSize])  // [N, D]
        let n = flat.shape[0]
        let q = queries(flat, ctx, training: training)  // [N, H·2·d]
        let keysVar = ctx(keys)
        let picks = PEERKernel.retrieve(q.value, keys: keysVar.value, heads: c.heads, subKeys: c.subKeys, k: c.expertsPerHead)
        let scores = reference
            ? PEERKernel.referenceScores(q, keysVar, picks: picks, heads: c.heads, subKeys: c.subKeys, k: c.expertsPerHead)
            : PEERKernel.scores(q, keysVar, picks: picks, heads: c.heads, subKeys: c.subKeys, k: c.expertsPerHead)  // [N·H, K]
        let gates = scores.softmax().reshaped([n, c.heads * c.expertsPerHead])  // softmax over each head's K
        let y = reference
            ? PEERKernel.referenceExperts(flat, ctx(down), ctx(up), gates: gates, experts: picks.experts, activation: c.activation)
            : PEERKernel.experts(flat, ctx(down), ctx(up), gates: gates, experts: picks.experts, activation: c.activation)
        return PEEROutput(output: y.reshaped(x.shape), experts: picks.experts)
    }
}
