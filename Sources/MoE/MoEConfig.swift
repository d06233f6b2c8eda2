/// How a router scores, selects and weights experts. One case per strategy; each lives in its own
/// `Router+Name.swift` file.
public enum RouterKind: String, Codable, Sendable, CaseIterable {
    /// softmax over all experts, then top-k, optionally renormalized (Mixtral; Qwen's `norm_topk_prob`; OLMoE).
    case softmaxTopK = "softmax_topk"
    /// top-k on the logits, then softmax over the k (GPT-OSS, JetMoE).
    case topKSoftmax = "topk_softmax"
    /// Switch Transformer top-1: the chosen expert's softmax probability scales its output.
    case switchTop1 = "switch"
    /// Shazeer et al. 2017 noisy top-k gating with a learned softplus noise scale.
    case noisyTopK = "noisy_topk"
    /// GShard top-2: the second expert is kept only when 2 * g2 > u, u ~ U(0, 1) (training).
    case gshard
    /// DeepSeek-V2/V3: softmax or sigmoid scores, a selection-only bias, group-limited selection, scaling.
    case grouped
    /// Expert Choice (Zhou et al. 2022): each expert takes its top c * N / E tokens. Non-causal.
    case expertChoice = "expert_choice"
    /// Hash layers (Roller et al. 2021): a fixed hash of the token id picks the expert; no parameters.
    case hash
    /// Dense soft mixing: every expert runs on every token, weighted by a softmax over all experts.
    case dense
    /// PhiMoE's SparseMixer, top-2: each pick is the argmax (of the logits, then of the rest), weighted by a
    /// softmax over only the logits within a relative margin 2·eps of that pick.
    case sparseMixer = "sparsemixer"
    /// Soft MoE (Puigcerver et al. 2023): each expert processes `slots_per_expert` slots, each slot a softmax-over-
    /// tokens mixture of the group's tokens; each token takes a softmax-over-slots mixture of the slot outputs.
    /// Non-causal (a slot mixes every token of the sequence).
    case soft
    /// BASE layers (Lewis et al. 2021): balanced assignment (every expert the same number of tokens, by auction) in
    /// training, greedy in inference; output σ(x·c_e)·f_e(x) + x; no balancing loss.
    case base

    /// Routers whose gate rows belong to experts one to one (row e scores expert e), so experts can be frozen or
    /// added row by row.
    public var hasOneRowPerExpert: Bool { [.softmaxTopK, .topKSoftmax, .switchTop1, .noisyTopK, .gshard, .dense].contains(self) }
}

public enum ScoreFunction: String, Codable, Sendable { case softmax, sigmoid }
/// How a group of experts is scored for group-limited routing: its best expert (DeepSeek-V2) or the sum
/// of its best two (DeepSeek-V3).
public enum GroupScore: String, Codable, Sendable { case max, top2Sum = "top2_sum" }
/// Which assignments an over-full expert keeps: the earliest (by slot, then token position) or the most
/// probable.
public enum DropPolicy: String, Codable, Sendable { case position, probability = "probs" }
/// Expert network: gated SwiGLU (gate and up fused into one product) or a plain two-layer FFN.
/// The experts' nonlinearity. `clampedSwiglu` is gpt-oss's: gate clamped above at `swiglu_limit`, up clamped to
/// +-limit, a = gate sigmoid(alpha gate) (up + 1).
public enum ExpertActivation: String, Codable, Sendable { case swiglu, relu, gelu, geluTanh = "gelu_tanh", silu, clampedSwiglu = "swiglu_clamped" }

/// Configuration of one MoE block, mirroring the Hugging Face `config.json` keys where they exist.
///
/// Legend used across the MoE files: N tokens, D model dim, F expert hidden dim, E experts, K experts per
/// token, A assignments (token-expert pairs), M kept assignments.
public struct MoEConfig: Codable, Sendable, Equatable {
    public var hiddenSize: Int
    public var expertHiddenSize: Int
    public var numExperts: Int
    public var expertsPerToken: Int
    public var router: RouterKind = .softmaxTopK
    public var normalizeTopK = true
    public var scoreFunction: ScoreFunction = .softmax
    public var numGroups = 1
    public var topKGroups = 1
    public var groupScore: GroupScore = .top2Sum
    public var routedScalingFactor = 1.0
    /// A per-expert bias added to the scores for selection only (auxiliary-loss-free balancing).
    public var selectionBias = false
    public var expertActivation: ExpertActivation = .swiglu
    public var expertBias = false
    /// alpha and limit of the clamped SwiGLU (gpt-oss's swiglu_alpha and swiglu_limit).
    public var swigluAlpha = 1.702
    public var swigluLimit = 7.0
    /// A bias on the router's linear map (gpt-oss).
    public var routerBias = false
    /// Width of the always-active shared expert(s), 0 for none (DeepSeek: n_shared * F in one network).
    public var sharedExpertHiddenSize = 0
    /// Scale the shared expert's output by sigmoid(x · w) (Qwen2-MoE).
    public var sharedExpertGate = false
    /// Capacity factor in training; nil is dropless (the default).
    public var capacityFactor: Double? = nil
    /// Capacity factor in evaluation; nil is dropless.
    public var evalCapacityFactor: Double? = nil
    public var minCapacity = 0
    public var dropPolicy: DropPolicy = .position
    /// Multiplicative input jitter: the router sees x * U(1 - eps, 1 + eps) in training (Switch, Mixtral).
    public var jitterEps = 0.0
    /// Expert Choice capacity c: each expert takes c * N / E tokens.
    public var expertChoiceCapacity = 1.0
    /// The documented opt-in for Expert Choice inside a causal decoder (it sees future tokens).
    public var allowNonCausalRouting = false
    /// Coefficients of the balancing terms; 0 turns a term off.
    public var auxLossCoef = 0.0
    /// Over what the Switch loss counts loads: `pooled` concatenates every MoE layer's routing into one (as
    /// transformers' `load_balancing_loss_func` does, so expert 3 of layer 0 and expert 3 of layer 1 count as one
    /// expert; kept for matching it), `perLayer` takes the loss of each layer on its own and averages them (as
    /// the papers define it: an imbalanced layer cannot hide behind balanced ones).
    public var auxLossScope: AuxLossScope = .pooled
    public var zLossCoef = 0.0
    public var importanceLossCoef = 0.0
    public var loadLossCoef = 0.0
    public var sequenceAuxLossCoef = 0.0
    /// gamma of the auxiliary-loss-free bias update.
    public var biasUpdateRate = 0.001
    /// Seed of the hash router's fixed token -> expert table.
    public var hashSeed: UInt64 = 0
    /// SparseMixer's relative margin eps (PhiMoE's router_jitter_noise).
    public var sparseMixerEps = 0.01
    /// Soft MoE's slots per expert.
    public var slotsPerExpert = 1
    /// The first this many experts and their router rows take no updates in training (lifelong growth with the
    /// old experts frozen).
    public var frozenExperts = 0

    enum CodingKeys: String, CodingKey {
        case hiddenSize = "hidden_size", expertHiddenSize = "moe_intermediate_size", numExperts = "num_experts"
        case expertsPerToken = "num_experts_per_tok", router, normalizeTopK = "norm_topk_prob"
        case scoreFunction = "scoring_func", numGroups = "n_group", topKGroups = "topk_group"
        case groupScore = "group_score", routedScalingFactor = "routed_scaling_factor"
        case selectionBias = "selection_bias", expertActivation = "expert_activation", expertBias = "expert_bias"
        case swigluAlpha = "swiglu_alpha", swigluLimit = "swiglu_limit", routerBias = "router_bias"
        case sharedExpertHiddenSize = "shared_expert_intermediate_size", sharedExpertGate = "shared_expert_gate"
        case capacityFactor = "capacity_factor", evalCapacityFactor = "eval_capacity_factor"
        case minCapacity = "min_capacity", dropPolicy = "drop_policy", jitterEps = "router_jitter_noise"
        case expertChoiceCapacity = "expert_choice_capacity", allowNonCausalRouting = "allow_non_causal_routing"
        case auxLossCoef = "router_aux_loss_coef", zLossCoef = "router_z_loss_coef", auxLossScope = "aux_loss_scope"
        case importanceLossCoef = "importance_loss_coef", loadLossCoef = "load_loss_coef"
        case sequenceAuxLossCoef = "seq_aux_loss_coef", biasUpdateRate = "bias_update_speed", hashSeed = "hash_seed"
        case sparseMixerEps = "sparsemixer_eps", slotsPerExpert = "slots_per_expert", frozenExperts = "frozen_experts"
    }

    public init(hiddenSize: Int, expertHiddenSize: Int, numExperts: Int, expertsPerToken: Int, router: RouterKind = .softmaxTopK) {
        self.hiddenSize = hiddenSize
        self.expertHiddenSize = expertHiddenSize
        self.numExperts = numExperts
        self.expertsPerToken = expertsPerToken
        self.router = router
    }

    /// Decodes with defaults for every optional key.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        hiddenSize = try c.decode(Int.self, forKey: .hiddenSize)
        expertHiddenSize = try c.decode(Int.self, forKey: .expertHiddenSize)
        numExperts = try c.decode(Int.self, forKey: .numExperts)
        expertsPerToken = try c.decode(Int.self, forKey: .expertsPerToken)
        func opt<V: Decodable>(_ k: CodingKeys, _ d: V) throws -> V { try c.decodeIfPresent(V.self, forKey: k) ?? d }
        router = try opt(.router, router)
        normalizeTopK = try opt(.normalizeTopK, normalizeTopK)
        scoreFunction = try opt(.scoreFunction, scoreFunction)
        numGroups = try opt(.numGroups, numGroups)
        topKGroups = try opt(.topKGroups, topKGroups)
        groupScore = try opt(.groupScore, groupScore)
        routedScalingFactor = try opt(.routedScalingFactor, routedScalingFactor)
        selectionBias = try opt(.selectionBias, selectionBias)
        expertActivation = try opt(.expertActivation, expertActivation)
        expertBias = try opt(.expertBias, expertBias)
        swigluAlpha = try opt(.swigluAlpha, swigluAlpha)
        swigluLimit = try opt(.swigluLimit, swigluLimit)
        routerBias = try opt(.routerBias, routerBias)
        sharedExpertHiddenSize = try opt(.sharedExpertHiddenSize, sharedExpertHiddenSize)
        sharedExpertGate = try opt(.sharedExpertGate, sharedExpertGate)
        capacityFactor = try c.decodeIfPresent(Double.self, forKey: .capacityFactor)
        evalCapacityFactor = try c.decodeIfPresent(Double.self, forKey: .evalCapacityFactor)
        minCapacity = try opt(.minCapacity, minCapacity)
        dropPolicy = try opt(.dropPolicy, dropPolicy)
        jitterEps = try opt(.jitterEps, jitterEps)
        expertChoiceCapacity = try opt(.expertChoiceCapacity, expertChoiceCapacity)
        allowNonCausalRouting = try opt(.allowNonCausalRouting, allowNonCausalRouting)
        auxLossCoef = try opt(.auxLossCoef, auxLossCoef)
        auxLossScope = try opt(.auxLossScope, auxLossScope)
        zLossCoef = try opt(.zLossCoef, zLossCoef)
        importanceLossCoef = try opt(.importanceLossCoef, importanceLossCoef)
        loadLossCoef = try opt(.loadLossCoef, loadLossCoef)
        sequenceAuxLossCoef = try opt(.sequenceAuxLossCoef, sequenceAuxLossCoef)
        biasUpdateRate = try opt(.biasUpdateRate, biasUpdateRate)
        hashSeed = try opt(.hashSeed, hashSeed)
        sparseMixerEps = try opt(.sparseMixerEps, sparseMixerEps)
        slotsPerExpert = try opt(.slotsPerExpert, slotsPerExpert)
        frozenExperts = try opt(.frozenExperts, frozenExperts)
    }

    /// Experts chosen per token (every expert for dense mixing and Soft MoE).
    public var effectiveK: Int { router == .dense || router == .soft ? numExperts : expertsPerToken }
    public var expertsPerGroup: Int { numExperts / max(numGroups, 1) }

    /// Fine-grained expert segmentation (DeepSeekMoE): each expert split into `m` experts of width F / m,
    /// and routing takes m * K of them, so parameters and compute per token stay the same.
    public func fineGrained(_ m: Int) throws(ConfigError) -> MoEConfig {
        try ConfigError.check(m >= 1, "granularity", m, "use a granularity of at least 1")
        try ConfigError.check(
            expertHiddenSize % m == 0, "granularity", m,
            "moe_intermediate_size \(expertHiddenSize) must be divisible by the granularity")
        var c = self
        c.numExperts *= m
        c.expertsPerToken *= m
        c.expertHiddenSize /= m
        try c.validate()
        return c
    }

    /// Upper bounds on the sizes (a corrupted config is refused before its products can overflow or its
    /// tensors be allocated); each is far above any released model.
    public static let maxDimension = 1 << 20, maxExperts = 1 << 16

    /// Throws a ConfigError naming the field, the value and what to change.
    public func validate() throws(ConfigError) {
        try ConfigError.check(hiddenSize >= 1 && hiddenSize <= Self.maxDimension, "hidden_size", hiddenSize, "use a model dimension between 1 and \(Self.maxDimension)")
        try ConfigError.check(expertHiddenSize >= 1 && expertHiddenSize <= Self.maxDimension, "moe_intermediate_size", expertHiddenSize, "use an expert width between 1 and \(Self.maxDimension)")
        try ConfigError.check(numExperts >= 1 && numExperts <= Self.maxExperts, "num_experts", numExperts, "use between 1 and \(Self.maxExperts) experts")
        try ConfigError.check(sharedExpertHiddenSize >= 0 && sharedExpertHiddenSize <= Self.maxDimension * 64, "shared_expert_intermediate_size", sharedExpertHiddenSize,
                              "use 0 (none) or a positive width up to \(Self.maxDimension * 64)")
        try ConfigError.check(swigluAlpha.isFinite && swigluLimit.isFinite, "swiglu_limit", swigluLimit, "use finite values")
        if router != .dense && router != .expertChoice && router != .soft {
            try ConfigError.check(
                expertsPerToken >= 1 && expertsPerToken <= numExperts, "num_experts_per_tok", expertsPerToken,
                "k must be between 1 and num_experts (\(numExperts))")
        }
        if router == .switchTop1 {
            try ConfigError.check(expertsPerToken == 1, "num_experts_per_tok", expertsPerToken, "the switch router is top-1: set it to 1")
        }
        if router == .gshard {
            try ConfigError.check(expertsPerToken == 2, "num_experts_per_tok", expertsPerToken, "the gshard router is top-2: set it to 2")
        }
        if router == .sparseMixer {
            try ConfigError.check(expertsPerToken == 2, "num_experts_per_tok", expertsPerToken, "sparsemixer picks exactly 2 experts: set it to 2")
            try ConfigError.check(sparseMixerEps >= 0 && sparseMixerEps.isFinite, "sparsemixer_eps", sparseMixerEps, "use a non-negative margin")
        }
        if router == .hash {
            try ConfigError.check(expertsPerToken == 1, "num_experts_per_tok", expertsPerToken, "the hash router sends each token to one expert: set it to 1")
        }
        if router == .base {
            try ConfigError.check(expertsPerToken == 1, "num_experts_per_tok", expertsPerToken, "BASE assigns each token to one expert: set it to 1")
            for (name, v) in [("router_aux_loss_coef", auxLossCoef), ("importance_loss_coef", importanceLossCoef),
                              ("load_loss_coef", loadLossCoef), ("seq_aux_loss_coef", sequenceAuxLossCoef)] {
                try ConfigError.check(v == 0, name, v, "BASE balances by assignment, with no balancing loss; set it to 0")
            }
            try ConfigError.check(!selectionBias && sharedExpertHiddenSize == 0, "router", "base",
                                  "BASE layers take no selection bias or shared expert; drop them")
        }
        if expertActivation == .clampedSwiglu {
            try ConfigError.check(swigluLimit > 0 && swigluLimit.isFinite, "swiglu_limit", swigluLimit, "use a positive clamp")
            try ConfigError.check(swigluAlpha.isFinite, "swiglu_alpha", swigluAlpha, "use a finite slope")
        }
        try ConfigError.check(frozenExperts >= 0 && frozenExperts < numExperts, "frozen_experts", frozenExperts,
                              "freeze between 0 and num_experts - 1 (\(numExperts - 1)) experts: some must still learn")
        try ConfigError.check(frozenExperts == 0 || router.hasOneRowPerExpert, "frozen_experts", frozenExperts,
                              "frozen experts need a router whose rows belong to experts one to one (not \(router.rawValue))")
        try ConfigError.check(numGroups >= 1, "n_group", numGroups, "use at least one group")
        try ConfigError.check(
            numExperts % numGroups == 0, "n_group", numGroups,
            "num_experts (\(numExperts)) must divide into n_group groups; choose a divisor of \(numExperts)")
        try ConfigError.check(
            topKGroups >= 1 && topKGroups <= numGroups, "topk_group", topKGroups,
            "topk_group must be between 1 and n_group (\(numGroups))")
        if numGroups > 1 {
            try ConfigError.check(
                router == .grouped, "n_group", numGroups, "group-limited selection needs router = grouped")
            try ConfigError.check(
                expertsPerToken <= topKGroups * expertsPerGroup, "num_experts_per_tok", expertsPerToken,
                "k exceeds the experts in the topk_group selected groups (\(topKGroups * expertsPerGroup)); raise topk_group")
            try ConfigError.check(
                groupScore != .top2Sum || expertsPerGroup >= 2, "group_score", groupScore.rawValue,
                "top2_sum needs at least 2 experts per group; use max")
        }
        try ConfigError.check(
            !selectionBias || router == .grouped, "selection_bias", selectionBias,
            "the selection-only bias belongs to the grouped (DeepSeek) router; set router = grouped")
        try ConfigError.check(routedScalingFactor > 0 && routedScalingFactor.isFinite, "routed_scaling_factor", routedScalingFactor, "use a positive factor")
        for (name, cf) in [("capacity_factor", capacityFactor), ("eval_capacity_factor", evalCapacityFactor)] {
            if let cf { try ConfigError.check(cf > 0 && cf.isFinite, name, cf, "use a positive factor, or omit it for dropless routing") }
        }
        try ConfigError.check(minCapacity >= 0, "min_capacity", minCapacity, "use 0 or more")
        try ConfigError.check(jitterEps >= 0 && jitterEps < 1, "router_jitter_noise", jitterEps, "use a value in [0, 1)")
        try ConfigError.check(
            expertChoiceCapacity > 0 && expertChoiceCapacity.isFinite, "expert_choice_capacity", expertChoiceCapacity,
            "use a positive capacity such as 1 or 2")
        try ConfigError.check(sharedExpertHiddenSize >= 0, "shared_expert_intermediate_size", sharedExpertHiddenSize, "use 0 (none) or a positive width")
        try ConfigError.check(
            !sharedExpertGate || sharedExpertHiddenSize > 0, "shared_expert_gate", sharedExpertGate,
            "a shared-expert gate needs a shared expert: set shared_expert_intermediate_size")
        for (name, v) in [("router_aux_loss_coef", auxLossCoef), ("router_z_loss_coef", zLossCoef),
                          ("importance_loss_coef", importanceLossCoef), ("load_loss_coef", loadLossCoef),
                          ("seq_aux_loss_coef", sequenceAuxLossCoef), ("bias_update_speed", biasUpdateRate)] {
            try ConfigError.check(v >= 0 && v.isFinite, name, v, "use 0 (off) or a positive coefficient")
        }
        if router == .soft {
            try ConfigError.check(slotsPerExpert >= 1 && slotsPerExpert <= 4096, "slots_per_expert", slotsPerExpert, "use between 1 and 4096 slots per expert")
            for (name, v) in [("router_aux_loss_coef", auxLossCoef), ("router_z_loss_coef", zLossCoef), ("importance_loss_coef", importanceLossCoef),
                              ("load_loss_coef", loadLossCoef), ("seq_aux_loss_coef", sequenceAuxLossCoef)] {
                try ConfigError.check(v == 0, name, v, "Soft MoE has no token choices to balance (every slot is a mixture of all tokens); set it to 0")
            }
            try ConfigError.check(!routerBias && !selectionBias && jitterEps == 0, "router", "soft",
                                  "Soft MoE's slot parameters take no router bias, selection bias or jitter; drop them")
        }
        if router == .hash || router == .dense || router == .expertChoice || router == .soft || router == .base {
            try ConfigError.check(
                capacityFactor == nil && evalCapacityFactor == nil, "capacity_factor", capacityFactor ?? evalCapacityFactor ?? 0,
                "the \(router.rawValue) router fixes its own load; remove the capacity factor")
        }
    }
}

/// What the Switch balancing loss pools over (see `MoEConfig.auxLossScope`).
public enum AuxLossScope: String, Codable, Sendable, CaseIterable {
    case perLayer = "per_layer", pooled
}

/// Where MoE blocks go in a stack: the first `firstDense` layers dense, then an MoE block at layer
/// `firstDense` and every `every` layers after it (DeepSeek's `first_k_dense_replace` with `moe_layer_freq`;
/// Qwen's `decoder_sparse_step` s is `every: s, firstDense: s - 1`).
public struct MoEPlacement: Codable, Sendable, Equatable {
    public var every: Int
    public var firstDense: Int

    public init(every: Int = 1, firstDense: Int = 0) {
        self.every = every
        self.firstDense = firstDense
    }

    /// Whether layer `i` (0-based) holds an MoE block.
    public func isMoE(layer i: Int) -> Bool { i >= firstDense && (i - firstDense) % max(every, 1) == 0 }
}
