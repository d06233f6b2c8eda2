import MoETensor

/// A record of primitives, in the order they ran, for reverse-mode differentiation.
///
/// Each recorded node keeps its inputs' ids and its vector-Jacobian product (VJP): a closure that maps the
/// gradient of the node's output to gradients of its inputs. `backward` walks the nodes in reverse and
/// accumulates (`+=`) the gradients. Leaves created with `parameter(_:path:)` carry a dotted path, and the
/// gradients are reported by that path, summed over every use of it (tied weights just work).
///
/// Inference needs no tape: values wrapped as constants (`Variable(tensor)`) record nothing, and no
/// closure is ever allocated for them.
public final class Tape<T: TensorScalar> {
    public typealias VJP = (Tensor<T>) -> [Tensor<T>?]

    struct Node {
        let inputs: [Int]
        let vjp: VJP?
    }

    private(set) var nodes: [Node] = []
    private(set) var paths: [Int: String] = [:]

    public init() {}

    /// Number of recorded nodes (leaves included).
    public var count: Int { nodes.count }

    /// A trainable leaf, identified by its dotted parameter path.
    public func parameter(_ value: Tensor<T>, path: String) -> Variable<T> {
        let v = input(value)
        paths[v.id] = path
        return v
    }

    /// A leaf whose gradient is wanted (without a path).
    public func input(_ value: Tensor<T>) -> Variable<T> {
        nodes.append(Node(inputs: [], vjp: nil))
        return Variable(value: value, tape: self, id: nodes.count - 1)
    }

    func record(_ value: Tensor<T>, inputs: [Int], vjp: @escaping VJP) -> Variable<T> {
        nodes.append(Node(inputs: inputs, vjp: vjp))
        return Variable(value: value, tape: self, id: nodes.count - 1)
    }

    /// Reverse-mode pass from `output`, seeded with ones (or `seed`, of the output's shape).
    public func backward(_ output: Variable<T>, seed: Tensor<T>? = nil) -> Gradients<T> {
        precondition(output.tape === self, "[backward] the output was not recorded on this tape")
        let start = seed ?? Tensor.ones(output.shape)
        Shape.require(
            start.shape == output.shape, "backward",
            "seed \(Shape.describe(start.shape)) does not match output \(Shape.describe(output.shape))")
        var grads = [Tensor<T>?](repeating: nil, count: nodes.count)
        grads[output.id] = start
        for id in stride(from: output.id, through: 0, by: -1) {
            guard let g = grads[id], let vjp = nodes[id].vjp else { continue }
            grads[id] = nil  // interior gradients are not kept: frees memory as the pass goes
            let inputGrads = vjp(g)
            for (input, ig) in zip(nodes[id].inputs, inputGrads) {
                guard input >= 0, let ig else { continue }
                if grads[input] == nil {
                    grads[input] = ig
                } else {
                    grads[input]!.addScaled(ig)
                }
            }
        }
        return Gradients(byID: grads, paths: paths)
    }
}

/// The gradients of one backward pass: per leaf, and per parameter path (summed over uses of the path).
public struct Gradients<T: TensorScalar> {
    let byID: [Tensor<T>?]
    let paths: [Int: String]

    /// The gradient of a leaf variable, or nil if the output does not depend on it.
    public subscript(_ v: Variable<T>) -> Tensor<T>? {
        v.id >= 0 && v.id < byID.count ? byID[v.id] : nil
    }

    /// Gradients keyed by parameter path.
    public var byPath: [String: Tensor<T>] {
        var out: [String: Tensor<T>] = [:]
        for (id, path) in paths {
            guard let g = byID[id] else { continue }
            if out[path] == nil { out[path] = g } else { out[path]!.addScaled(g) }
        }
        return out
    }

    /// Adds these gradients into `store`, keyed by path (gradient accumulation across micro-batches).
    public func accumulate(into store: inout [String: Tensor<T>]) {
        for (path, g) in byPath {
            if store[path] == nil { store[path] = g.copy() } else { store[path]!.addScaled(g) }
        }
    }
}

/// A tensor value, optionally recorded on a tape.
public struct Variable<T: TensorScalar> {
    public let value: Tensor<T>
    public let tape: Tape<T>?
    /// Index of this value's node on its tape; -1 for constants.
    public let id: Int

    init(value: Tensor<T>, tape: Tape<T>?, id: Int) {
        self.value = value
        self.tape = tape
        self.id = id
    }

    /// A constant: records nothing, receives no gradient.
    public init(_ value: Tensor<T>) { self.init(value: value, tape: nil, id: -1) }

    public var shape: [Int] { value.shape }
    public var rank: Int { value.rank }
    public var requiresGrad: Bool { tape != nil }

    /// The same value, cut off from the tape (gradients stop here).
    public func detached() -> Variable { Variable(value) }

    // MARK: Recording helpers (each primitive calls one; the VJP closure is built only if recording)

    @inline(__always)
    static func result(_ value: Tensor<T>, _ a: Variable, _ makeVJP: () -> Tape<T>.VJP) -> Variable {
        guard let tape = a.tape else { return Variable(value) }
        return tape.record(value, inputs: [a.id], vjp: makeVJP())
    }

    @inline(__always)
    static func result(_ value: Tensor<T>, _ a: Variable, _ b: Variable, _ makeVJP: () -> Tape<T>.VJP) -> Variable {
        guard let tape = commonTape(a.tape, b.tape) else { return Variable(value) }
        return tape.record(value, inputs: [a.id, b.id], vjp: makeVJP())
    }

    @inline(__always)
    static func result(_ value: Tensor<T>, _ inputs: [Variable], _ makeVJP: () -> Tape<T>.VJP) -> Variable {
        var tape: Tape<T>? = nil
        for v in inputs { tape = commonTape(tape, v.tape) }
        guard let tape else { return Variable(value) }
        return tape.record(value, inputs: inputs.map(\.id), vjp: makeVJP())
    }

    @inline(__always)
    static func commonTape(_ a: Tape<T>?, _ b: Tape<T>?) -> Tape<T>? {
        guard let a else { return b }
        guard let b else { return a }
        precondition(a === b, "[autograd] operands were recorded on different tapes")
        return a
    }
}

extension Variable {
    /// Records a primitive defined outside this module (a fused kernel with its own backward).
    ///
    /// `makeVJP` is called only when some input is on a tape; the VJP it returns maps the output's gradient to
    /// one gradient (or nil) per input, in order. It must capture tensors, not variables.
    public static func primitive(
        _ value: Tensor<T>, inputs: [Variable], _ makeVJP: () -> Tape<T>.VJP
    ) -> Variable {
        result(value, inputs, makeVJP)
    }
}
