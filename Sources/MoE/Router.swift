/// A reference to a random generator, so that forwards deep in a model can draw from the run's one seeded
/// stream (noise, jitter, random routing) without threading `inout` through every call.
public final class RandomSource {
    public var generator: RandomGenerator
    public init(seed: UInt64) { generator = RandomGenerator(seed: seed) }
    public init(_ generator: RandomGenerator) { self.generator = generator }
}

/// What a forward needs beyond its input.
public struct RouteOptions {
    /// Training turns on noise, jitter, GShard's random second expert and the training capacity factor.
    public var training: Bool
    /// Source of random draws; required when `training` uses randomness.
    public var random: RandomSource?
    /// Token ids of the N tokens (hash routing).
    public var tokenIDs: [Int]?
    /// Tokens per sequence, for the sequence-wise balance loss (the N tokens are N / T sequences).
    public var sequenceLength: Int?

    public init(training: Bool = false, random: RandomSource? = nil, tokenIDs: [Int]? = nil, sequenceLength: Int? = nil) {
        self.training = training
        self.random = random
        self.tokenIDs = tokenIDs
        self.sequenceLength = sequenceLength
    }

    public static var inference: RouteOptions { RouteOptions() }
}

/// A router: score -> (biased) selection -> gather the unbiased scores -> normalize -> scale.
///
/// The strategy is chosen by `config.router`; each strategy is a function in its own `Router+Name.swift`.
/// Parameters: `gate.weight` [E, D] (the router's linear map, as Hugging Face names it), `noise.weight`
/// [E, D] for noisy top-k, and the selection-only bias `e_score_correction_bias` [E] (a buffer, updated by
/// `SelectionBiasBalancer`, never by gradients).
public final class Router<T: TensorScalar>: Module {
    public let config: MoEConfig
    public let gate: Linear<T>?
    public let noise: Linear<T>?
    public let selectionBias: Parameter<T>?
    /// Soft MoE's learned scale of the normalized slot logits (`slot_scale` [1]); its slot parameters are `gate`,
    /// one row per slot [E·S, D].
    public let slotScale: Parameter<T>?

    public init(config: MoEConfig, path: String, rng: inout RandomGenerator) {
        self.config = config
        let (d, e) = (config.hiddenSize, config.numExperts)
        let outputs = config.router == .soft ? e * config.slotsPerExpert : e
        gate = config.router == .hash ? nil : Linear(d, outputs, bias: config.routerBias, path: joinPath(path, "gate"), rng: &rng)
        slotScale = config.router == .soft ? Parameter(joinPath(path, "slot_scale"), .ones([1])) : nil
        if config.router == .noisyTopK {
            // Zero-initialized noise projection, as Shazeer et al. recommend (starts with softplus(0) noise).
            let n = Linear<T>(d, e, bias: false, path: joinPath(path, "noise"), rng: &rng)
            n.weight.value = .zeros([e, d])
            noise = n
        } else {
            noise = nil
        }
        selectionBias = config.selectionBias ? Parameter(joinPath(path, "e_score_correction_bias"), .zeros([e])) : nil
    }

    public var parameters: [Parameter<T>] { (gate?.parameters ?? []) + (noise?.parameters ?? []) + (slotScale.map { [$0] } ?? []) }
    /// State that is saved but not trained by gradients.
    public var buffers: [Parameter<T>] { selectionBias.map { [$0] } ?? [] }

    /// Routes x [N, D].
    public func route(_ x: Variable<T>, _ ctx: ForwardContext<T>, _ options: RouteOptions) -> Routing<T> {
        Shape.require(x.rank == 2 && x.shape[1] == config.hiddenSize, "router", "input \(Shape.describe(x.shape)) should be [N, \(config.hiddenSize)]")
        var input = x
        if options.training && config.jitterEps > 0 {
            input = x * Variable(jitter(x.shape, options))
        }
        switch config.router {
        case .softmaxTopK: return softmaxTopK(input, ctx, k: config.expertsPerToken, normalize: config.normalizeTopK)
        case .switchTop1: return softmaxTopK(input, ctx, k: 1, normalize: false)
        case .topKSoftmax: return topKSoftmax(input, ctx)
        case .noisyTopK: return noisyTopK(input, ctx, options)
        case .gshard: return gshard(input, ctx, options)
        case .grouped: return grouped(input, ctx)
        case .expertChoice: return expertChoice(input, ctx)
        case .hash: return hash(input, options)
        case .dense: return dense(input, ctx)
        case .sparseMixer: return sparseMixer(input, ctx)
        case .soft: return soft(input, ctx, options).routing
        case .base: return base(input, ctx, options)
        }
    }

    /// Multiplicative noise U(1 - eps, 1 + eps) for the router's input (Switch Transformer's jitter).
    func jitter(_ shape: [Int], _ options: RouteOptions) -> Tensor<T> {
        let r = requireRandom(options, "router_jitter_noise")
        let eps = T(config.jitterEps)
        return Tensor.uniform(shape, low: 1 - eps, high: 1 + eps, rng: &r.generator)
    }

    func requireRandom(_ options: RouteOptions, _ what: String) -> RandomSource {
        guard let r = options.random else {
            preconditionFailure("[router] \(what) in training needs RouteOptions.random (a seeded RandomSource)")
        }
        return r
    }

    /// Token-major assignment lists for K experts per token.
    static func tokenMajor(_ n: Int, _ k: Int) -> [Int] { (0..<(n * k)).map { $0 / k } }
}
