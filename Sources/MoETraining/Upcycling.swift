import Foundation

/// Sparse upcycling (Komatsuzaki et al. 2022, arXiv:2212.05055): a trained dense model becomes an MoE whose
/// experts start as copies of its FFNs, so that before any training it computes the same function.
///
/// With granularity G (Megatron-Core's and OLMo-core's "virtual group" upcycling), each dense FFN of width F is
/// cut into G shards of width F/G along its hidden units; the E experts are E/G virtual groups of those G
/// shards. The router is new, but the G experts of a group share one router row, so a token's top-K choice
/// takes whole groups (K is a multiple of G), and the renormalized weights of a group's shards sum to
/// p_group / G; the shards' down projections are scaled by G, so Σ over the group = p_group · FFN(x), and
/// over the groups, whose weights sum to one, = FFN(x). Every other weight is copied.
///
/// Legend: D model dim, F dense FFN width, E experts, G granularity, K experts per token.
public enum Upcycling {
    public enum Placement: String, CaseIterable, Sendable {
        /// Every layer's FFN becomes an MoE block.
        case every
        /// Every other layer, from the second (layers 1, 3, ...), as Komatsuzaki et al. upcycle.
        case everyOther = "every-other"
    }

    public struct Options: Sendable, Equatable {
        public var experts: Int
        public var topK: Int?
        public var granularity = 1
        public var placement: Placement = .every
        /// Seed of the new router rows.
        public var seed: UInt64 = 1
        public init(experts: Int) { self.experts = experts }
        /// K: given, or top-2 groups (2·G).
        public var k: Int { topK ?? 2 * granularity }
    }

    public struct UpcycleError: Error, CustomStringConvertible {
        public let description: String
        init(_ d: String) { description = d }
    }

    /// The MoE model's config: the dense one with renormalized softmax top-K experts of width F/G in the chosen
    /// layers and the default model's per-layer Switch loss (0.1) for the training that follows.
    public static func config(dense c: TransformerConfig, _ o: Options) throws -> TransformerConfig {
        guard c.moe == nil else { throw UpcycleError("the model is already an MoE (\(c.moe!.numExperts) experts); upcycle a dense run (moe train --dense)") }
        guard c.peer == nil else { throw UpcycleError("the model has PEER layers; upcycle a plain dense run") }
        let f = c.intermediateSize, g = o.granularity
        guard g >= 1 && f % g == 0 else {
            let divisors = (1...max(1, min(f, 64))).filter { f % $0 == 0 }.map(String.init).joined(separator: ", ")
            throw UpcycleError("granularity \(g) does not divide the FFN width \(f); use one of \(divisors)")
        }
        guard o.experts >= g && o.experts % g == 0 && o.experts <= 4096 else {
            throw UpcycleError("\(o.experts) experts do not form groups of \(g) shards; use a multiple of the granularity (at most 4096), such as \(g * 8)")
        }
        let k = o.k
        guard k >= g && k % g == 0 && k <= o.experts else {
            throw UpcycleError("top-k \(k) must be a multiple of the granularity \(g) and at most the \(o.experts) experts (a token takes whole groups of shards)")
        }
        guard o.placement == .every || c.numLayers >= 2 else {
            throw UpcycleError("every-other places MoE blocks in layers 1, 3, ...; a 1-layer model has none: use --layers every")
        }
        var out = c
        var m = MoEConfig(hiddenSize: c.hiddenSize, expertHiddenSize: f / g, numExperts: o.experts, expertsPerToken: k)
        m.normalizeTopK = true
        m.auxLossCoef = 0.1
        m.auxLossScope = .perLayer
        out.moe = m
        (out.moeEvery, out.firstDenseLayers) = o.placement == .every ? (1, 0) : (2, 1)
        try out.validate()
        return out
    }

    /// The upcycled model: every weight of `dense` copied, each MoE layer's experts the G-way split of its FFN
    /// (down projections scaled by G), and new router rows shared within each group.
    public static func upcycle(_ dense: MoETransformer<Float>, _ o: Options) throws -> MoETransformer<Float> {
        let c = try config(dense: dense.config, o)
        let moe = try MoETransformer<Float>(c, seed: o.seed)
        let old = dense.namedParameters
        let g = o.granularity, f = dense.config.intermediateSize, d = c.hiddenSize, shard = f / g
        var used = Set<String>()
        for (i, layer) in moe.layers.enumerated() {
            guard let block = layer.moe else { continue }
            let p = "layers.\(i).mlp."
            guard let gate = old[p + "gate_proj.weight"]?.value, let up = old[p + "up_proj.weight"]?.value,
                  let down = old[p + "down_proj.weight"]?.value else {
                throw UpcycleError("layer \(i) has no dense SwiGLU (gate_proj, up_proj, down_proj) to upcycle")
            }
            used.formUnion([p + "gate_proj.weight", p + "up_proj.weight", p + "down_proj.weight"])
            let gs = gate.scalars, us = up.scalars, ds = down.scalars  // [F, D], [F, D], [D, F]
            var w1 = [Float](repeating: 0, count: o.experts * 2 * shard * d)  // [E, 2F/G, D]
            var w2 = [Float](repeating: 0, count: o.experts * d * shard)  // [E, D, F/G]
            for e in 0..<o.experts {
                let s = e % g  // the shard this expert holds
                for r in 0..<shard {
                    let src = (s * shard + r) * d
                    for j in 0..<d {
                        w1[(e * 2 * shard + r) * d + j] = gs[src + j]
                        w1[(e * 2 * shard + shard + r) * d + j] = us[src + j]
                    }
                }
                for row in 0..<d {
                    for r in 0..<shard { w2[(e * d + row) * shard + r] = ds[row * f + s * shard + r] * Float(g) }
                }
            }
            block.experts.w1.value = Tensor(shape: [o.experts, 2 * shard, d], w1)
            block.experts.w2.value = Tensor(shape: [o.experts, d, shard], w2)
            // The new router: one random row per group (the first of its experts' rows), shared by its shards.
            let router = block.router.gate!.weight
            var rows = router.value.scalars
            for e in 0..<o.experts where e % g != 0 {
                let lead = (e - e % g) * d
                for j in 0..<d { rows[e * d + j] = rows[lead + j] }
            }
            router.value = Tensor(shape: router.shape, rows)
        }
        let routed = Set(moe.moeLayers.flatMap { $0.parameters.map(\.path) })
        for p in moe.parameters + moe.buffers where !routed.contains(p.path) {
            guard let src = old[p.path], src.shape == p.shape else {
                throw UpcycleError("\(p.path) of the MoE model has no counterpart of shape \(p.shape) in the dense model")
            }
            p.value = src.value
            used.insert(p.path)
        }
        if let extra = old.keys.sorted().first(where: { !used.contains($0) }) {
            throw UpcycleError("\(extra) of the dense model has no place in the upcycled one")
        }
        return moe
    }

    /// The upcycled run that training continues: the dense run's trainer state (step, data position, random
    /// state, schedule) with a new optimizer for the upcycled model.
    public static func upcycle(
        _ dense: MoETransformer<Float>, state denseState: TrainerState, _ o: Options
    ) throws -> (model: MoETransformer<Float>, optimizer: AdamW<Float>, state: TrainerState) {
        let model = try upcycle(dense, o)
        let opt = Trainer.optimizer(for: model, weightDecay: denseState.train.weightDecay)
        var state = denseState
        state.adamSteps = 0
        return (model, opt, state)
    }

    /// The same from a dense checkpoint, which `moe train --resume` continues once saved; the dense model is
    /// returned too.
    public static func upcycle(checkpoint dir: String, _ o: Options) throws
        -> (dense: MoETransformer<Float>, model: MoETransformer<Float>, optimizer: AdamW<Float>, state: TrainerState)
    {
        let (dense, _, denseState) = try TrainCheckpoint.load(dir)
        let (model, opt, state) = try upcycle(dense, state: denseState, o)
        return (dense, model, opt, state)
    }
}
