/// What an MoE block returns: its output, the routing, the balancing terms and the statistics.
public struct MoEOutput<T: TensorScalar> {
    public let output: Variable<T>
    public let routing: Routing<T>
    public let losses: BalancingLosses<T>
    public let statistics: RoutingStatistics
}

/// The one MoE block every model uses: router -> capacity -> dispatch (counting sort by expert) -> experts
/// (one product per expert, gate and up fused) -> weighted combine, plus optional always-active shared
/// experts. Model files only configure it.
///
/// Parameter paths under `path`: `gate.weight`, `noise.weight`, `e_score_correction_bias` (router);
/// `experts.gate_up_proj` / `experts.up_proj`, `experts.down_proj` (+ `_bias`); `shared_expert.gate_up_proj`,
/// `shared_expert.down_proj`, `shared_expert_gate.weight`. The shared expert is an expert bank of one SwiGLU
/// expert that every token visits with weight 1 (or sigmoid(x · w_gate)), so it runs through the same fused
/// kernel (gate and up in one product).
public final class MoELayer<T: TensorScalar>: Module {
    public let config: MoEConfig
    public let router: Router<T>
    public let experts: ExpertBank<T>
    public let shared: ExpertBank<T>?
    public let sharedGate: Linear<T>?
    /// For analyses (`moe analyze`): called with the block's input [N, D] and the router's decision before the
    /// experts run; and a router used instead of `router` (experts removed, another top-k).
    public var observer: ((Tensor<T>, Routing<T>) -> Void)?
    public var routerOverride: Router<T>?

    /// `causal`: the block sits in a causal decoder, where Expert Choice needs the documented opt-in.
    public init(config: MoEConfig, path: String = "", causal: Bool = true, rng: inout RandomGenerator) throws(ConfigError) {
        try config.validate()
        if causal && config.router == .expertChoice && !config.allowNonCausalRouting {
            throw ConfigError(
                "router", "expert_choice",
                "Expert Choice picks tokens by looking at the whole batch, so in a causal decoder a token's output depends on later tokens; use a token-choice router, or set allow_non_causal_routing = true to accept that")
        }
        if causal && config.router == .soft && !config.allowNonCausalRouting {
            throw ConfigError(
                "router", "soft",
                "Soft MoE's slots mix every token of the sequence, so in a causal decoder a token's output depends on later tokens; use a token-choice router, or set allow_non_causal_routing = true to accept that")
        }
        self.config = config
        router = Router(config: config, path: path, rng: &rng)
        experts = ExpertBank(
            experts: config.numExperts, dim: config.hiddenSize, hidden: config.expertHiddenSize,
            activation: config.expertActivation, bias: config.expertBias, path: joinPath(path, "experts"),
            swigluAlpha: config.swigluAlpha, swigluLimit: config.swigluLimit, rng: &rng)
        if config.sharedExpertHiddenSize > 0 {
            shared = ExpertBank(
                experts: 1, dim: config.hiddenSize, hidden: config.sharedExpertHiddenSize, activation: .swiglu, bias: false,
                path: joinPath(path, "shared_expert"), rng: &rng)
            sharedGate = config.sharedExpertGate
                ? Linear(config.hiddenSize, 1, bias: false, path: joinPath(path, "shared_expert_gate"), rng: &rng) : nil
        } else {
            shared = nil
            sharedGate = nil
        }
    }

    public var parameters: [Parameter<T>] {
        router.parameters + experts.parameters + (shared?.parameters ?? []) + (sharedGate?.parameters ?? [])
    }

    public var buffers: [Parameter<T>] { router.buffers }

    /// Routes x [..., D] with the router, then either the fused path or (`reference: true`) the naive
    /// per-token one.
    public func callAsFunction(
        _ x: Variable<T>, _ ctx: ForwardContext<T>, options: RouteOptions = .inference, reference: Bool = false
    ) -> MoEOutput<T> {
        let d = config.hiddenSize
        Shape.require(x.shape.last == d, "moe", "input \(Shape.describe(x.shape)) should end in \(d)")
        let flat = x.reshaped([-1, d])  // [N, D]
        var routing: Routing<T>
        var y: Variable<T>
        if config.router == .soft {
            (y, routing) = soft(flat, ctx, options: options, reference: reference)
        } else {
            routing = (routerOverride ?? router).route(flat, ctx, options)
            if let cf = options.training ? config.capacityFactor : config.evalCapacityFactor {
                routing = Capacity.apply(routing, factor: cf, minimum: config.minCapacity, policy: config.dropPolicy)
            }
            observer?(flat.value, routing)
            y = reference
                ? experts.reference(flat, weights: routing.weights, routing: routing, ctx)
                : experts(flat, weights: routing.weights, plan: DispatchPlan(routing), ctx)
            // BASE layers add the input back: σ(x·c_e)·f_e(x) + x (Lewis et al. 2021, eq. 1).
            if config.router == .base { y = y + flat }
        }
        if let shared {
            let n = flat.shape[0]
            let w = sharedGate.map { $0(flat, ctx).sigmoid().reshaped([n]) } ?? Variable(Tensor.ones([n]))
            let all = Routing(
                numTokens: n, numExperts: 1, tokens: Array(0..<n), experts: [Int](repeating: 0, count: n), weights: w,
                logits: nil, scores: nil, k: 1)
            y = y + (reference
                ? shared.reference(flat, weights: w, routing: all, ctx)
                : shared(flat, weights: w, plan: DispatchPlan(all), ctx))
        }
        return MoEOutput(
            output: y.reshaped(x.shape), routing: routing,
            losses: Balancing.losses(routing, config: config, options: options), statistics: RoutingStatistics(routing))
    }

    /// Soft MoE (Puigcerver et al. 2023): per group (sequence), slot inputs = dispatch · x [E·S, D]; expert e runs
    /// its S slots; y = combine · slot outputs [T, D]. Returns the output and the statistics-only routing.
    func soft(_ flat: Variable<T>, _ ctx: ForwardContext<T>, options: RouteOptions, reference: Bool) -> (Variable<T>, Routing<T>) {
        let n = flat.shape[0], s = config.slotsPerExpert, slots = config.numExperts * s
        let w = router.soft(flat, ctx, options)
        let t = n / w.combine.count
        let groups = w.combine.count == 1 ? [flat] : flat.split(sizes: [Int](repeating: t, count: w.combine.count), axis: 0)
        let ones = Variable(Tensor<T>.ones([slots]))
        let slotRouting = Routing(
            numTokens: slots, numExperts: config.numExperts, tokens: Array(0..<slots), experts: (0..<slots).map { $0 / s },
            weights: ones, logits: nil, scores: nil, k: 1)
        let plan = DispatchPlan(slotRouting)
        var outs: [Variable<T>] = []
        for (xb, (dispatch, combine)) in zip(groups, zip(w.dispatch, w.combine)) {
            let slotIn = Variable.matmul(dispatch, xb)  // [E·S, D]
            let slotOut = reference
                ? experts.reference(slotIn, weights: ones, routing: slotRouting, ctx)
                : experts(slotIn, weights: ones, plan: plan, ctx)  // [E·S, D]
            outs.append(Variable.matmul(combine, slotOut))  // [T, D]
        }
        return (outs.count == 1 ? outs[0] : Variable.concat(outs, axis: 0), w.routing)
    }
}
