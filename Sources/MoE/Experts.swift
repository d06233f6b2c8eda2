/// E expert networks stored stacked, as one tensor per projection (MLX and Megablocks style):
/// - `gate_up_proj` [E, 2F, D] for SwiGLU (gate rows 0..<F, up rows F..<2F: one product computes both),
///   or `up_proj` [E, F, D] for a plain FFN; optional bias [E, 2F] or [E, F];
/// - `down_proj` [E, D, F], optional bias [E, D].
/// Initialized as PyTorch's Linear: uniform in ±1/sqrt(fan_in).
public final class ExpertBank<T: TensorScalar>: Module {
    public let activation: ExpertActivation
    /// alpha and limit of the clamped SwiGLU (unused by the other activations).
    public let swigluAlpha: Double, swigluLimit: Double
    public let w1: Parameter<T>
    public let b1: Parameter<T>?
    public let w2: Parameter<T>
    public let b2: Parameter<T>?

    public init(
        experts e: Int, dim d: Int, hidden f: Int, activation: ExpertActivation, bias: Bool, path: String,
        swigluAlpha: Double = 1.702, swigluLimit: Double = 7, rng: inout RandomGenerator
    ) {
        self.activation = activation
        self.swigluAlpha = swigluAlpha
        self.swigluLimit = swigluLimit
        let gated = activation == .swiglu || activation == .clampedSwiglu
        let p = gated ? 2 * f : f
        let name1 = gated ? "gate_up_proj" : "up_proj"
        let bound1 = 1 / T(d).squareRoot(), bound2 = 1 / T(f).squareRoot()
        w1 = Parameter(joinPath(path, name1), .uniform([e, p, d], low: -bound1, high: bound1, rng: &rng))
        b1 = bias ? Parameter(joinPath(path, name1 + "_bias"), .uniform([e, p], low: -bound1, high: bound1, rng: &rng)) : nil
        w2 = Parameter(joinPath(path, "down_proj"), .uniform([e, d, f], low: -bound2, high: bound2, rng: &rng))
        b2 = bias ? Parameter(joinPath(path, "down_proj_bias"), .uniform([e, d], low: -bound2, high: bound2, rng: &rng)) : nil
    }

    public var parameters: [Parameter<T>] { [w1] + (b1.map { [$0] } ?? []) + [w2] + (b2.map { [$0] } ?? []) }
    public var count: Int { w1.shape[0] }
    public var hidden: Int { w2.shape[2] }

    /// Runs the kept assignments of `plan` through their experts and combines them: the fused path.
    /// x [N, D], weights [A] -> [N, D].
    public func callAsFunction(
        _ x: Variable<T>, weights: Variable<T>, plan: DispatchPlan, _ ctx: ForwardContext<T>
    ) -> Variable<T> {
        var inputs = [x, weights, ctx(w1), ctx(w2)]
        if let b1 { inputs.append(ctx(b1)) }
        if let b2 { inputs.append(ctx(b2)) }
        return ExpertsKernel.apply(inputs, hasB1: b1 != nil, hasB2: b2 != nil, plan: plan, activation: spec)
    }

    var spec: ExpertBankActivation { ExpertBankActivation(kind: activation, alpha: swigluAlpha, limit: swigluLimit) }

    public var gated: Bool { activation == .swiglu || activation == .clampedSwiglu }

    /// For analyses: expert `e` on every row of x [N, D] with weight 1, as if every token had chosen it; [N, D],
    /// biases included (the fused path).
    public func output(expert e: Int, _ x: Tensor<T>) -> Tensor<T> {
        let n = x.shape[0]
        let all = Routing(numTokens: n, numExperts: count, tokens: Array(0..<n), experts: [Int](repeating: e, count: n),
                          weights: Variable(Tensor<T>.ones([n])), logits: nil, scores: nil, k: 1)
        return self(Variable(x), weights: all.weights, plan: DispatchPlan(all), .inference).value
    }

    /// For analyses: the activation of expert `e`'s first product on every row of x [N, D], [N, F]: act(gate x)
    /// for SwiGLU (the gate rows, before the product with up; clamped as the clamped SwiGLU clamps it), act(up x)
    /// for a plain FFN.
    public func firstActivations(expert e: Int, _ x: Tensor<T>) -> Tensor<T> {
        let n = x.shape[0], d = x.shape[1], f = hidden, rows = w1.shape[1]
        var pre = Tensor<T>.zeros([n, f])
        x.withUnsafePointer { px in
            w1.value.withUnsafePointer { pw in
                pre.withUnsafeMutablePointer { pp in
                    T.gemm(transA: false, transB: true, m: n, n: f, k: d, alpha: 1, a: px, lda: d, b: pw + e * rows * d, ldb: d,
                           beta: 0, c: pp, ldc: f)
                }
            }
        }
        let bias = b1.map { Array($0.value.scalars[(e * rows)..<(e * rows + f)]) }
        let alpha = T(swigluAlpha), limit = T(swigluLimit), kind = activation
        return Tensor(shape: [n, f], pre.scalars.enumerated().map { i, v in
            let z = v + (bias?[i % f] ?? 0)
            switch kind {
            case .swiglu, .silu: return Pointwise.Silu.apply(z)
            case .clampedSwiglu: let g = Swift.min(z, limit); return g * Pointwise.sigmoid(alpha * g)
            case .relu: return Pointwise.Relu.apply(z)
            case .gelu: return Pointwise.Gelu.apply(z)
            case .geluTanh: return Pointwise.GeluTanh.apply(z)
            }
        })
    }

    /// The naive reference: every kept assignment computed on its own, token by token, from primitives.
    /// Slow; tests pin the fused path to it (outputs and gradients).
    public func reference(
        _ x: Variable<T>, weights: Variable<T>, routing: Routing<T>, _ ctx: ForwardContext<T>
    ) -> Variable<T> {
        let (n, d) = (x.shape[0], x.shape[1])
        let f = hidden
        let w1v = ctx(w1), w2v = ctx(w2)
        let b1v = b1.map { ctx($0) }, b2v = b2.map { ctx($0) }
        var out = Variable(Tensor<T>.zeros([n, d]))
        for a in 0..<routing.assignmentCount where routing.kept[a] {
            let (t, e) = (routing.tokens[a], routing.experts[a])
            let xt = x.indexSelect([t])  // [1, D]
            var h = Variable.matmul(xt, w1v.indexSelect([e]).reshaped([-1, d]), transposeB: true)  // [1, P]
            if let b1v { h = h + b1v.indexSelect([e]) }
            let act: Variable<T>
            switch activation {
            case .swiglu:
                let parts = h.split(sizes: [f, f], axis: 1)
                act = parts[0].silu() * parts[1]
            case .clampedSwiglu:
                let parts = h.split(sizes: [f, f], axis: 1), limit = T(swigluLimit)
                let g = parts[0].clamped(max: limit), u = parts[1].clamped(min: -limit, max: limit)
                act = g * (g * T(swigluAlpha)).sigmoid() * (u + 1)
            case .relu: act = h.relu()
            case .gelu: act = h.gelu()
            case .geluTanh: act = h.geluTanh()
            case .silu: act = h.silu()
            }
            var y = Variable.matmul(act, w2v.indexSelect([e]).reshaped([d, f]), transposeB: true)  // [1, D]
            if let b2v { y = y + b2v.indexSelect([e]) }
            out = Variable.scatterAdd(out, indices: [t], y * weights.indexSelect([a]).reshaped([1, 1]))
        }
        return out
    }
}

/// An expert bank's nonlinearity with its parameters, as the fused kernel takes it.
struct ExpertBankActivation: Sendable {
    let kind: ExpertActivation
    let alpha: Double
    let limit: Double
}
