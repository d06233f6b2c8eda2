import MoETensor

/// Compares a function's tape gradients with central finite differences, in Double.
///
/// The function's output is reduced to a scalar with a fixed random projection R (loss = sum(f(x) * R)),
/// so every output element contributes. Each input element is perturbed by ±eps and the difference
/// quotient compared with the tape's gradient.
public enum GradientCheck {
    public struct Report: CustomStringConvertible, Sendable {
        /// Largest |analytic - numeric| / max(1, |numeric|) over every input element.
        public let maxError: Double
        /// Where it happened: (input index, flat element index).
        public let worst: (input: Int, element: Int)
        public let checkedElements: Int
        public var description: String {
            "max error \(maxError) at input \(worst.input) element \(worst.element) over \(checkedElements) elements"
        }
    }

    public static func check(
        _ inputs: [Tensor<Double>], eps: Double = 1e-6, seed: UInt64 = 7,
        _ f: ([Variable<Double>]) -> Variable<Double>
    ) -> Report {
        let tape = Tape<Double>()
        let vars = inputs.map { tape.input($0) }
        let out = f(vars)
        var rng = RandomGenerator(seed: seed)
        let r = Tensor<Double>.normal(out.shape, rng: &rng)
        let grads = tape.backward(out, seed: r)

        func loss(_ xs: [Tensor<Double>]) -> Double {
            (f(xs.map { Variable($0) }).value * r).sumAll()
        }
        var maxError = 0.0
        var worst = (0, 0)
        var checked = 0
        for (i, x) in inputs.enumerated() {
            let analytic = grads[vars[i]] ?? Tensor.zeros(x.shape)
            for e in 0..<x.count {
                var plus = inputs, minus = inputs
                plus[i] = x.copy()
                minus[i] = x.copy()
                plus[i].withUnsafeMutablePointer { $0[e] += eps }
                minus[i].withUnsafeMutablePointer { $0[e] -= eps }
                let numeric = (loss(plus) - loss(minus)) / (2 * eps)
                let a = analytic.withUnsafePointer { $0[e] }
                let err = abs(a - numeric) / Swift.max(1, abs(numeric))
                if err > maxError || err.isNaN {
                    maxError = err.isNaN ? .infinity : err
                    worst = (i, e)
                }
                checked += 1
            }
        }
        return Report(maxError: maxError, worst: worst, checkedElements: checked)
    }
}
