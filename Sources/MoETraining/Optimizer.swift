import MoENN

#if !canImport(Accelerate)
import CMoEBLAS
#endif

/// Updates parameters from gradients keyed by parameter path.
public protocol Optimizer<Scalar> {
    associatedtype Scalar: TensorScalar
    /// One step at learning rate `lr`; parameters without a gradient are left alone.
    mutating func step(_ parameters: [Parameter<Scalar>], gradients: [String: Tensor<Scalar>], lr: Scalar)
}

/// AdamW (Loshchilov & Hutter 2019), as PyTorch's `torch.optim.AdamW`:
/// p -= lr * wd * p (decoupled decay); m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
/// p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps).
public struct AdamW<T: TensorScalar>: Optimizer {
    public var beta1: T, beta2: T, eps: T, weightDecay: T
    /// Paths that get no weight decay (norm scales, biases, embeddings by choice).
    public var noDecay: Set<String> = []
    /// Paths whose leading rows (along the first axis) take no update at all: no gradient step, no decay, and their
    /// moments stay as they are (frozen experts and their router rows).
    public var frozenRows: [String: Int] = [:]
    /// First and second moments by parameter path.
    public var m: [String: Tensor<T>] = [:]
    public var v: [String: Tensor<T>] = [:]
    public var stepCount = 0

    /// How many leading elements of the tensor at `path` with `shape` are frozen (`frozenRows` rows of it).
    public func frozenCount(_ path: String, shape: [Int]) -> Int {
        guard let rows = frozenRows[path], let first = shape.first, first > 0 else { return 0 }
        let count = shape.reduce(1, *)
        return Swift.min(count, rows * (count / first))
    }

    /// Zeroes the frozen rows' gradients, so that they count toward no clipping norm either.
    public func zeroFrozen(_ gradients: inout [String: Tensor<T>]) {
        for path in frozenRows.keys {
            guard var g = gradients[path] else { continue }
            let n = frozenCount(path, shape: g.shape)
            g.withUnsafeMutablePointer { p in p.update(repeating: 0, count: n) }
            gradients[path] = g
        }
    }

    public init(beta1: T = 0.9, beta2: T = 0.999, eps: T = 1e-8, weightDecay: T = 0.01) {
        self.beta1 = beta1
        self.beta2 = beta2
        self.eps = eps
        self.weightDecay = weightDecay
    }

    public mutating func step(_ parameters: [Parameter<T>], gradients: [String: Tensor<T>], lr: T) {
        stepCount += 1
        let t = T(stepCount)
        let c1 = 1 - T.pow(beta1, t), c2 = 1 - T.pow(beta2, t)
        let (b1, b2, eps) = (beta1, beta2, self.eps)
        for p in parameters {
            let decay = noDecay.contains(p.path) ? 1 : 1 - lr * weightDecay
            guard let g = gradients[p.path] else { continue }
            Shape.require(g.shape == p.shape, "adamw", "gradient \(Shape.describe(g.shape)) for \(p.path) \(Shape.describe(p.shape))")
            var mt = m[p.path] ?? .zeros(p.shape), vt = v[p.path] ?? .zeros(p.shape)
            m[p.path] = nil
            v[p.path] = nil
            let n = g.count
            let first = frozenCount(p.path, shape: p.shape)  // frozen leading rows are skipped entirely
            g.withUnsafePointer { pg in
                mt.withUnsafeMutablePointer { pm in
                    vt.withUnsafeMutablePointer { pv in
                        p.value.withUnsafeMutablePointer { pp in
                            Parallel.forRange(n - first, grain: elementwiseGrain) { r in
                                let r = (r.lowerBound + first)..<(r.upperBound + first)
                                AdamW.update(p: pp, m: pm, v: pv, g: pg, range: r, decay: decay, lr: lr, b1: b1, b2: b2, c1: c1, c2: c2, eps: eps)
                            }
                        }
                    }
                }
            }
            m[p.path] = mt
            v[p.path] = vt
        }
    }

    /// p = p decay - lr (m / c1) / (sqrt(v / c2) + eps) after m, v take in g. Float goes to the vector kernel
    /// (CMoEBLAS/vector.c: Swift's SIMD square root runs lane by lane, and the scalar loop cannot vectorize, the
    /// arrays may alias as far as the compiler knows: 5 ms of T1's 85 ms step); each lane equals this loop.
    @inline(__always)
    static func update(
        p pp: UnsafeMutablePointer<T>, m pm: UnsafeMutablePointer<T>, v pv: UnsafeMutablePointer<T>, g pg: UnsafePointer<T>,
        range r: Range<Int>, decay: T, lr: T, b1: T, b2: T, c1: T, c2: T, eps: T
    ) {
        #if !canImport(Accelerate)
        if T.self == Float.self {
            func f(_ x: UnsafeMutablePointer<T>) -> UnsafeMutablePointer<Float> { UnsafeMutableRawPointer(x).assumingMemoryBound(to: Float.self) }
            func s(_ x: T) -> Float { unsafeBitCast(x, to: Float.self) }
            moe_adamw_f32(
                f(pp + r.lowerBound), f(pm + r.lowerBound), f(pv + r.lowerBound),
                UnsafeRawPointer(pg + r.lowerBound).assumingMemoryBound(to: Float.self), r.count,
                s(decay), s(lr), s(b1), s(b2), s(c1), s(c2), s(eps))
            return
        }
        #endif
        var i = r.lowerBound
        while i < r.upperBound {
            pp[i] *= decay
            pm[i] = b1 * pm[i] + (1 - b1) * pg[i]
            pv[i] = b2 * pv[i] + (1 - b2) * pg[i] * pg[i]
            pp[i] -= lr * (pm[i] / c1) / ((pv[i] / c2).squareRoot() + eps)
            i += 1
        }
    }
}

/// SGD with momentum, as PyTorch's `torch.optim.SGD`: g += wd p; buf = mu buf + (1 - dampening) g
/// (buf = g on the first step); with Nesterov g += mu buf, else g = buf; p -= lr g.
public struct SGD<T: TensorScalar>: Optimizer {
    public var momentum: T, dampening: T, weightDecay: T, nesterov: Bool
    public private(set) var buffers: [String: Tensor<T>] = [:]

    public init(momentum: T = 0, dampening: T = 0, weightDecay: T = 0, nesterov: Bool = false) {
        self.momentum = momentum
        self.dampening = dampening
        self.weightDecay = weightDecay
        self.nesterov = nesterov
    }

    public mutating func step(_ parameters: [Parameter<T>], gradients: [String: Tensor<T>], lr: T) {
        for p in parameters {
            guard var g = gradients[p.path] else { continue }
            Shape.require(g.shape == p.shape, "sgd", "gradient \(Shape.describe(g.shape)) for \(p.path) \(Shape.describe(p.shape))")
            if weightDecay != 0 { g = g + p.value.scaled(by: weightDecay) }
            if momentum != 0 {
                var buf: Tensor<T>
                if let old = buffers[p.path] {
                    buf = old.scaled(by: momentum)
                    buf.addScaled(g, 1 - dampening)
                } else {
                    buf = g.copy()
                }
                buffers[p.path] = buf
                if nesterov { g = g + buf.scaled(by: momentum) } else { g = buf }
            }
            p.value.addScaled(g, -lr)
        }
    }
}

/// Scales all gradients so their global L2 norm is at most `maxNorm` (as `clip_grad_norm_`).
/// Returns the norm before clipping.
@discardableResult
public func clipGradientNorm<T: TensorScalar>(_ gradients: inout [String: Tensor<T>], maxNorm: Double) -> Double {
    // In path order: a dictionary's order changes from process to process (seeded hashing), and so would the
    // last bits of the norm.
    let total = gradients.sorted { $0.key < $1.key }.reduce(0.0) { $0 + $1.value.sumOfSquares() }.squareRoot()
    let coef = maxNorm / (total + 1e-6)
    if coef < 1 {
        for key in gradients.keys { gradients[key]?.scale(by: T(coef)) }
    }
    return total
}

/// Linear warmup from 0 to `peak` over `warmup` steps, then cosine decay to `minimum` at `total` steps.
public struct WarmupCosine: Sendable, Codable, Equatable {
    public var peak: Double, minimum: Double, warmup: Int, total: Int

    public init(peak: Double, minimum: Double = 0, warmup: Int, total: Int) {
        self.peak = peak
        self.minimum = minimum
        self.warmup = warmup
        self.total = total
    }

    /// Learning rate at `step` (0-based: step 0 is the first update).
    public func callAsFunction(_ step: Int) -> Double {
        if step < warmup { return peak * Double(step + 1) / Double(warmup) }
        if step >= total { return minimum }
        let progress = Double(step - warmup) / Double(Swift.max(1, total - warmup))
        return minimum + (peak - minimum) * 0.5 * (1 + Double.cos(.pi * progress))
    }
}
