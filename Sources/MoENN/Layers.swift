/// y = x Wᵀ + b, with W stored [out, in] (PyTorch layout) and read by BLAS with the transpose flag.
/// Initialization as PyTorch's default: uniform in ±1/sqrt(in) for weight and bias.
public final class Linear<T: TensorScalar>: Module {
    public let weight: Parameter<T>
    public let bias: Parameter<T>?

    public init(_ inFeatures: Int, _ outFeatures: Int, bias: Bool = true, path: String, rng: inout RandomGenerator) {
        let bound = 1 / T(Swift.max(inFeatures, 1)).squareRoot()
        weight = Parameter(
            joinPath(path, "weight"), .uniform([outFeatures, inFeatures], low: -bound, high: bound, rng: &rng))
        self.bias = bias
            ? Parameter(joinPath(path, "bias"), .uniform([outFeatures], low: -bound, high: bound, rng: &rng)) : nil
    }

    public var parameters: [Parameter<T>] { [weight] + (bias.map { [$0] } ?? []) }
    public var inFeatures: Int { weight.shape[1] }
    public var outFeatures: Int { weight.shape[0] }

    /// x [..., in] -> [..., out].
    public func callAsFunction(_ x: Variable<T>, _ ctx: ForwardContext<T>) -> Variable<T> {
        let y = Variable.matmul(x, ctx(weight), transposeB: true)
        guard let bias else { return y }
        return y + ctx(bias)
    }
}

/// Token embedding table [V, D], initialized normal(0, 1) as in PyTorch.
public final class Embedding<T: TensorScalar>: Module {
    public let weight: Parameter<T>

    public init(_ vocabulary: Int, _ dim: Int, path: String, std: T = 1, rng: inout RandomGenerator) {
        weight = Parameter(joinPath(path, "weight"), .normal([vocabulary, dim], std: std, rng: &rng))
    }

    public var parameters: [Parameter<T>] { [weight] }

    /// ids laid out as `shape` -> [shape..., D].
    public func callAsFunction(_ ids: [Int], shape: [Int]? = nil, _ ctx: ForwardContext<T>) -> Variable<T> {
        Variable.embedding(ctx(weight), ids: ids, idsShape: shape)
    }
}

/// RMSNorm with a learned scale, initialized to ones.
public final class RMSNorm<T: TensorScalar>: Module {
    public let weight: Parameter<T>
    public let eps: T

    public init(_ dim: Int, eps: T = 1e-6, path: String) {
        weight = Parameter(joinPath(path, "weight"), .ones([dim]))
        self.eps = eps
    }

    public var parameters: [Parameter<T>] { [weight] }

    public func callAsFunction(_ x: Variable<T>, _ ctx: ForwardContext<T>) -> Variable<T> {
        Variable.rmsNorm(x, weight: ctx(weight), eps: eps)
    }
}

/// LayerNorm with learned scale (ones) and, unless `bias: false` (DBRX), shift (zeros).
public final class LayerNorm<T: TensorScalar>: Module {
    public let weight: Parameter<T>
    public let bias: Parameter<T>?
    public let eps: T

    public init(_ dim: Int, eps: T = 1e-5, bias: Bool = true, path: String) {
        weight = Parameter(joinPath(path, "weight"), .ones([dim]))
        self.bias = bias ? Parameter(joinPath(path, "bias"), .zeros([dim])) : nil
        self.eps = eps
    }

    public var parameters: [Parameter<T>] { [weight] + (bias.map { [$0] } ?? []) }

    public func callAsFunction(_ x: Variable<T>, _ ctx: ForwardContext<T>) -> Variable<T> {
        Variable.layerNorm(x, weight: ctx(weight), bias: bias.map { ctx($0) } ?? Variable(.zeros(weight.shape)), eps: eps)
    }
}

/// A normalization over the last axis: RMSNorm or LayerNorm, as a model's config picks.
public protocol Normalizer<Scalar>: Module {
    func callAsFunction(_ x: Variable<Scalar>, _ ctx: ForwardContext<Scalar>) -> Variable<Scalar>
}

extension RMSNorm: Normalizer {}
extension LayerNorm: Normalizer {}

/// Which normalization a model uses, as a config names it.
public enum NormKind: String, Codable, Sendable {
    case rms = "rms_norm"
    case layer = "layer_norm"
    /// LayerNorm with no shift (DBRX).
    case layerNoBias = "layer_norm_no_bias"

    public func make<T: TensorScalar>(_ dim: Int, eps: T, path: String) -> any Normalizer<T> {
        switch self {
        case .rms: return RMSNorm(dim, eps: eps, path: path)
        case .layer: return LayerNorm(dim, eps: eps, path: path)
        case .layerNoBias: return LayerNorm(dim, eps: eps, bias: false, path: path)
        }
    }
}

/// Activation functions by name, as configs spell them (`hidden_act`).
public enum Activation: String, Codable, Sendable, CaseIterable {
    case relu, gelu, geluTanh = "gelu_pytorch_tanh", silu, tanh, sigmoid

    public func callAsFunction<T>(_ x: Variable<T>) -> Variable<T> {
        switch self {
        case .relu: return x.relu()
        case .gelu: return x.gelu()
        case .geluTanh: return x.geluTanh()
        case .silu: return x.silu()
        case .tanh: return x.tanh()
        case .sigmoid: return x.sigmoid()
        }
    }
}

/// Two-layer perceptron: fc2(act(fc1(x))).
public final class MLP<T: TensorScalar>: Module {
    public let fc1: Linear<T>
    public let fc2: Linear<T>
    public let activation: Activation

    public init(
        _ inFeatures: Int, hidden: Int, _ outFeatures: Int, activation: Activation = .gelu, bias: Bool = true,
        path: String, rng: inout RandomGenerator
    ) {
        fc1 = Linear(inFeatures, hidden, bias: bias, path: joinPath(path, "fc1"), rng: &rng)
        fc2 = Linear(hidden, outFeatures, bias: bias, path: joinPath(path, "fc2"), rng: &rng)
        self.activation = activation
    }

    public var parameters: [Parameter<T>] { fc1.parameters + fc2.parameters }

    public func callAsFunction(_ x: Variable<T>, _ ctx: ForwardContext<T>) -> Variable<T> {
        fc2(activation(fc1(x, ctx)), ctx)
    }
}

/// Gated feed-forward (Shazeer 2020): down(silu(gate(x)) * up(x)), no biases, names as in Llama/Mixtral
/// (`gate_proj`, `up_proj`, `down_proj`).
public final class SwiGLU<T: TensorScalar>: Module {
    public let gate: Linear<T>
    public let up: Linear<T>
    public let down: Linear<T>

    public init(_ dim: Int, hidden: Int, path: String, rng: inout RandomGenerator) {
        gate = Linear(dim, hidden, bias: false, path: joinPath(path, "gate_proj"), rng: &rng)
        up = Linear(dim, hidden, bias: false, path: joinPath(path, "up_proj"), rng: &rng)
        down = Linear(hidden, dim, bias: false, path: joinPath(path, "down_proj"), rng: &rng)
    }

    public var parameters: [Parameter<T>] { gate.parameters + up.parameters + down.parameters }

    public func callAsFunction(_ x: Variable<T>, _ ctx: ForwardContext<T>) -> Variable<T> {
        down(gate(x, ctx).silu() * up(x, ctx), ctx)
    }
}
