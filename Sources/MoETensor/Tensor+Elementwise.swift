import Numerics

/// Binary elementwise operations, with NumPy broadcasting.
public enum BinaryOp: Sendable { case add, sub, mul, div }

/// Unary elementwise functions. Each has its forward formula in `Tensor.unary` and its derivative, next to it,
/// in `Tensor.unaryDerivative`.
public enum UnaryOp: Sendable, CaseIterable {
    case neg, exp, log, sqrt, rsqrt, relu, gelu, geluTanh, silu, sigmoid, softplus, tanh, square
}

/// Elementwise work below this many elements stays on one thread.
public let elementwiseGrain = 1 << 15

extension Tensor {
    // MARK: Binary

    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public static func binary(_ op: BinaryOp, _ a: Tensor, _ b: Tensor) -> Tensor {
        switch op {
        case .add: return zipApply(a, b, op: "add") { $0 + $1 }
        case .sub: return zipApply(a, b, op: "sub") { $0 - $1 }
        case .mul: return zipApply(a, b, op: "mul") { $0 * $1 }
        case .div: return zipApply(a, b, op: "div") { $0 / $1 }
        }
    }

    public static func + (a: Tensor, b: Tensor) -> Tensor { binary(.add, a, b) }
    public static func - (a: Tensor, b: Tensor) -> Tensor { binary(.sub, a, b) }
    public static func * (a: Tensor, b: Tensor) -> Tensor { binary(.mul, a, b) }
    public static func / (a: Tensor, b: Tensor) -> Tensor { binary(.div, a, b) }

    /// Applies `f` over the broadcast of `a` and `b`. Fast paths for equal shapes and scalar operands; the
    /// general case walks the output rows with per-operand strides (0 along broadcast axes).
    @inline(__always)
    static func zipApply(_ a: Tensor, _ b: Tensor, op: String, _ f: (T, T) -> T) -> Tensor {
        let shape: [Int]
        do { shape = try Shape.broadcast(a.shape, b.shape, op: op) } catch { preconditionFailure(error.description) }
        let out = Tensor(uninitializedShape: shape)
        let n = out.count
        let po = out.storage.base
        a.withUnsafePointer { pa in
            b.withUnsafePointer { pb in
                if a.shape == b.shape {
                    Parallel.forRange(n, grain: elementwiseGrain) { r in
                        for i in r { po[i] = f(pa[i], pb[i]) }
                    }
                } else if b.count == 1 {
                    let s = pb[0]
                    Parallel.forRange(n, grain: elementwiseGrain) { r in
                        for i in r { po[i] = f(pa[i], s) }
                    }
                } else if a.count == 1 {
                    let s = pa[0]
                    Parallel.forRange(n, grain: elementwiseGrain) { r in
                        for i in r { po[i] = f(s, pb[i]) }
                    }
                } else {
                    let rank = shape.count
                    let inner = shape[rank - 1]
                    let rows = inner == 0 ? 0 : n / inner
                    let sa = Shape.broadcastStrides(a.shape, to: shape)
                    let sb = Shape.broadcastStrides(b.shape, to: shape)
                    let la = sa[rank - 1], lb = sb[rank - 1]
                    Parallel.forRange(rows, grain: Swift.max(1, elementwiseGrain / Swift.max(inner, 1))) { r in
                        for row in r {
                            // Decompose the row index into the leading coordinates.
                            var rem = row, oa = 0, ob = 0
                            for d in stride(from: rank - 2, through: 0, by: -1) {
                                let c = rem % shape[d]
                                rem /= shape[d]
                                oa += c * sa[d]
                                ob += c * sb[d]
                            }
                            let base = row * inner
                            if la == 1 && lb == 1 {
                                for j in 0..<inner { po[base + j] = f(pa[oa + j], pb[ob + j]) }
                            } else if lb == 0 {
                                let s = pb[ob]
                                for j in 0..<inner { po[base + j] = f(pa[oa + j * la], s) }
                            } else {
                                for j in 0..<inner { po[base + j] = f(pa[oa + j * la], pb[ob + j * lb]) }
                            }
                        }
                    }
                }
            }
        }
        return out
    }

    // MARK: Scalar operands

    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public func adding(_ s: T) -> Tensor { map { $0 + s } }

    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public func scaled(by s: T) -> Tensor { map { $0 * s } }

    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public func power(_ p: T) -> Tensor {
        if p == 2 { return map { $0 * $0 } }
        return map { T.pow($0, p) }
    }

    /// `f` applied to every element, in parallel for large tensors.
    @inline(__always)
    public func map(_ f: (T) -> T) -> Tensor {
        let out = Tensor(uninitializedShape: shape)
        let po = out.storage.base
        withUnsafePointer { px in
            Parallel.forRange(count, grain: elementwiseGrain) { r in
                for i in r { po[i] = f(px[i]) }
            }
        }
        return out
    }

    /// `f(x, y)` over two tensors of one shape.
    @inline(__always)
    public static func map2(_ x: Tensor, _ y: Tensor, op: String, _ f: (T, T) -> T) -> Tensor {
        Shape.require(x.shape == y.shape, op, "shapes differ: \(Shape.describe(x.shape)) vs \(Shape.describe(y.shape))")
        return zipApply(x, y, op: op, f)
    }

    /// `f(x, y, z)` over three tensors of one shape.
    @inline(__always)
    public static func map3(_ x: Tensor, _ y: Tensor, _ z: Tensor, op: String, _ f: (T, T, T) -> T) -> Tensor {
        Shape.require(
            x.shape == y.shape && y.shape == z.shape, op,
            "shapes differ: \(Shape.describe(x.shape)), \(Shape.describe(y.shape)), \(Shape.describe(z.shape))")
        let out = Tensor(uninitializedShape: x.shape)
        let po = out.storage.base
        x.withUnsafePointer { px in
            y.withUnsafePointer { py in
                z.withUnsafePointer { pz in
                    Parallel.forRange(x.count, grain: elementwiseGrain) { r in
                        for i in r { po[i] = f(px[i], py[i], pz[i]) }
                    }
                }
            }
        }
        return out
    }

    // MARK: Unary functions and their derivatives

    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public func unary(_ op: UnaryOp) -> Tensor {
        switch op {
        case .neg: return map { -$0 }
        case .exp: return map { T.exp($0) }
        case .log: return map { T.log($0) }
        case .sqrt: return map { $0.squareRoot() }
        case .rsqrt: return map { 1 / $0.squareRoot() }
        case .relu: return map { $0 > 0 ? $0 : 0 }
        // Exact GELU (PyTorch's default): x * Phi(x).
        case .gelu: return map { $0 * T(0.5) * (1 + T.erf($0 * T(0.5).squareRoot())) }
        // Tanh approximation (HF "gelu_new" / "gelu_pytorch_tanh").
        case .geluTanh: return map { x in T(0.5) * x * (1 + T.tanh(Tensor.geluC * (x + T(0.044715) * x * x * x))) }
        case .silu: return map { $0 * Tensor.sigmoid($0) }
        case .sigmoid: return map { Tensor.sigmoid($0) }
        // PyTorch's softplus: linear above threshold 20 for stability.
        case .softplus: return map { $0 > 20 ? $0 : T.log(onePlus: T.exp($0)) }
        case .tanh: return map { T.tanh($0) }
        case .square: return map { $0 * $0 }
        }
    }

    /// The derivative's product with the upstream gradient: `g * f'(x)`, given input `x` and output `y = f(x)`.
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public static func unaryDerivative(_ op: UnaryOp, x: Tensor, y: Tensor, upstream g: Tensor) -> Tensor {
        switch op {
        case .neg: return g.map { -$0 }
        case .exp: return map2(g, y, op: "exp.vjp") { $0 * $1 }
        case .log: return map2(g, x, op: "log.vjp") { $0 / $1 }
        case .sqrt: return map2(g, y, op: "sqrt.vjp") { $0 * T(0.5) / $1 }
        case .rsqrt: return map2(g, y, op: "rsqrt.vjp") { $0 * T(-0.5) * $1 * $1 * $1 }
        case .relu: return map2(g, x, op: "relu.vjp") { $1 > 0 ? $0 : 0 }
        case .gelu:
            return map2(g, x, op: "gelu.vjp") { g, x in
                let cdf = T(0.5) * (1 + T.erf(x * T(0.5).squareRoot()))
                let pdf = T.exp(-T(0.5) * x * x) / (2 * T.pi).squareRoot()
                return g * (cdf + x * pdf)
            }
        case .geluTanh:
            return map2(g, x, op: "geluTanh.vjp") { g, x in
                let t = T.tanh(Tensor.geluC * (x + T(0.044715) * x * x * x))
                let du = Tensor.geluC * (1 + 3 * T(0.044715) * x * x)
                return g * (T(0.5) * (1 + t) + T(0.5) * x * (1 - t * t) * du)
            }
        case .silu:
            return map2(g, x, op: "silu.vjp") { g, x in
                let s = Tensor.sigmoid(x)
                return g * s * (1 + x * (1 - s))
            }
        case .sigmoid: return map2(g, y, op: "sigmoid.vjp") { $0 * $1 * (1 - $1) }
        case .softplus: return map2(g, x, op: "softplus.vjp") { g, x in x > 20 ? g : g * Tensor.sigmoid(x) }
        case .tanh: return map2(g, y, op: "tanh.vjp") { $0 * (1 - $1 * $1) }
        case .square: return map2(g, x, op: "square.vjp") { 2 * $0 * $1 }
        }
    }

    /// Numerically stable logistic function.
    @inline(__always)
    public static func sigmoid(_ x: T) -> T {
        if x >= 0 { return 1 / (1 + T.exp(-x)) }
        let e = T.exp(x)
        return e / (1 + e)
    }

    @usableFromInline static var geluC: T { (2 / T.pi).squareRoot() }

    // MARK: In-place accumulation

    /// `self += alpha * other`, elementwise, same shape.
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public mutating func addScaled(_ other: Tensor, _ alpha: T = 1) {
        Shape.require(
            shape == other.shape, "add_",
            "shapes differ: \(Shape.describe(shape)) vs \(Shape.describe(other.shape))")
        let n = count
        other.withUnsafePointer { src in
            withUnsafeMutablePointer { dst in
                Parallel.forRange(n, grain: elementwiseGrain) { r in
                    for i in r { dst[i] += alpha * src[i] }
                }
            }
        }
    }

    /// Sum of all elements, accumulated in Double.
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public func sumAll() -> Double {
        withUnsafeBufferPointer { p in
            var s = 0.0
            for v in p { s += Double(v) }
            return s
        }
    }

    /// Sum of squares of all elements, accumulated in Double.
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public func sumOfSquares() -> Double {
        withUnsafeBufferPointer { p in
            var s = 0.0
            for v in p { s += Double(v) * Double(v) }
            return s
        }
    }

    /// Largest absolute difference to another tensor of the same shape.
    public func maxAbsDifference(_ other: Tensor) -> Double {
        Shape.require(
            shape == other.shape, "maxAbsDifference",
            "shapes differ: \(Shape.describe(shape)) vs \(Shape.describe(other.shape))")
        var m = 0.0
        withUnsafeBufferPointer { a in
            other.withUnsafeBufferPointer { b in
                for i in a.indices { m = Swift.max(m, abs(Double(a[i]) - Double(b[i]))) }
            }
        }
        return m
    }
}
