@_exported import MoEAutograd
@_exported import MoETensor

/// A trainable tensor with its dotted path (`layers.3.mlp.experts.gate_proj`).
///
/// The path is the one name a parameter has everywhere: in the tape's gradients, the optimizer's state and
/// checkpoints. Weights of linear layers are stored [out, in], as PyTorch and Hugging Face store them.
public final class Parameter<T: TensorScalar> {
    public let path: String
    public var value: Tensor<T>

    public init(_ path: String, _ value: Tensor<T>) {
        self.path = path
        self.value = value
    }

    public var shape: [Int] { value.shape }
}

/// How a forward pass runs: recording on a tape (training) or not at all (inference).
public struct ForwardContext<T: TensorScalar> {
    public let tape: Tape<T>?
    /// Variables to use in place of parameters, by path (functional calls, gradient checks of whole blocks).
    public let bindings: [String: Variable<T>]

    public init(tape: Tape<T>?, bindings: [String: Variable<T>] = [:]) {
        self.tape = tape
        self.bindings = bindings
    }

    /// No tape: nothing is recorded and no gradient closure is allocated.
    public static var inference: ForwardContext { ForwardContext(tape: nil) }

    /// The parameter as a variable: a tape leaf keyed by its path when training, a constant otherwise.
    public func callAsFunction(_ p: Parameter<T>) -> Variable<T> {
        if let bound = bindings[p.path] { return bound }
        return tape.map { $0.parameter(p.value, path: p.path) } ?? Variable(p.value)
    }
}

/// Anything with named parameters.
public protocol Module<Scalar>: AnyObject {
    associatedtype Scalar: TensorScalar
    /// Every parameter, in a stable order.
    var parameters: [Parameter<Scalar>] { get }
}

extension Module {
    public var parameterCount: Int { parameters.reduce(0) { $0 + $1.value.count } }

    /// Parameters by path.
    public var namedParameters: [String: Parameter<Scalar>] {
        Dictionary(parameters.map { ($0.path, $0) }, uniquingKeysWith: { a, _ in a })
    }
}

/// Joins path components, skipping empty ones: `join("layers.0", "mlp")` is `layers.0.mlp`.
public func joinPath(_ parts: String...) -> String {
    parts.filter { !$0.isEmpty }.joined(separator: ".")
}
