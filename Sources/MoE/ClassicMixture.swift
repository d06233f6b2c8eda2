@_exported import MoENN

/// The adaptive mixture of local experts of Jacobs, Jordan, Nowlan & Hinton (1991).
///
/// Legend: N inputs, I input features, C outputs, E experts. A softmax gating network gives each input a
/// probability p_i over the experts; each expert is a small network with its own output o_i.
///
/// Two objectives from the paper, for a target d:
/// - cooperative (eq. 1): E = ||d - sum_i p_i o_i||^2; the experts' outputs are blended, so each expert is
///   pushed to cancel the residual error of the others and they tend to cooperate;
/// - competitive (eq. 1.3): E = -log sum_i p_i exp(-1/2 ||d - o_i||^2); each expert is judged on its own
///   output, and the gate learns to send each case to the expert that handles it best (localization).
public final class ClassicMixture<T: TensorScalar>: Module {
    public enum Loss: String, Codable, Sendable, CaseIterable { case cooperative, competitive }

    public let gate: Linear<T>
    /// Each expert: linear (hidden = 0) or a one-hidden-layer tanh network.
    public let experts: [MLP<T>?]
    public let linearExperts: [Linear<T>?]

    public init(inputs: Int, outputs: Int, experts: Int, hidden: Int = 0, path: String = "", rng: inout RandomGenerator) {
        gate = Linear(inputs, experts, path: joinPath(path, "gate"), rng: &rng)
        var mlps: [MLP<T>?] = [], linears: [Linear<T>?] = []
        for i in 0..<experts {
            let p = joinPath(path, "experts.\(i)")
            if hidden > 0 {
                mlps.append(MLP(inputs, hidden: hidden, outputs, activation: .tanh, path: p, rng: &rng))
                linears.append(nil)
            } else {
                linears.append(Linear(inputs, outputs, path: p, rng: &rng))
                mlps.append(nil)
            }
        }
        self.experts = mlps
        self.linearExperts = linears
    }

    public var expertCount: Int { experts.count }

    public var parameters: [Parameter<T>] {
        gate.parameters + experts.flatMap { $0?.parameters ?? [] } + linearExperts.flatMap { $0?.parameters ?? [] }
    }

    /// Gate log-probabilities [N, E] and expert outputs [N, E, C] for inputs x [N, I].
    public func forward(_ x: Variable<T>, _ ctx: ForwardContext<T>) -> (logGates: Variable<T>, outputs: Variable<T>) {
        let logGates = gate(x, ctx).logSoftmax()
        let outs = (0..<expertCount).map { i -> Variable<T> in
            let o = experts[i].map { $0(x, ctx) } ?? linearExperts[i]!(x, ctx)
            return o.reshaped([o.shape[0], 1, o.shape[1]])
        }
        return (logGates, Variable.concat(outs, axis: 1))
    }

    /// The blended output sum_i p_i o_i [N, C].
    public static func blend(logGates: Variable<T>, outputs: Variable<T>) -> Variable<T> {
        let p = logGates.exp().reshaped([logGates.shape[0], logGates.shape[1], 1])
        return (p * outputs).sum(axis: 1)
    }

    /// Mean over the batch of the chosen objective, for targets d [N, C].
    public func loss(_ kind: Loss, x: Variable<T>, target d: Variable<T>, _ ctx: ForwardContext<T>) -> Variable<T> {
        let (logGates, outputs) = forward(x, ctx)
        switch kind {
        case .cooperative:
            let residual = d - Self.blend(logGates: logGates, outputs: outputs)
            return residual.square().sum(axis: 1).mean()
        case .competitive:
            let n = d.shape[0], c = d.shape[1]
            let sq = (d.reshaped([n, 1, c]) - outputs).square().sum(axis: 2)  // [N, E]
            return -(logGates - sq * T(0.5)).logSumExp(axis: 1).mean()
        }
    }
}
