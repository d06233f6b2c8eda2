import Numerics

/// Binary elementwise operations, with NumPy broadcasting.
public enum BinaryOp: Sendable { case add, sub, mul, div }

/// Unary elementwise functions. Each has its forward formula and its derivative side by side in `Pointwise`.
public enum UnaryOp: Sendable, CaseIterable {
    case neg, exp, log, sqrt, rsqrt, relu, gelu, geluTanh, silu, sigmoid, softplus, tanh, square, normalCDF
}

/// Elementwise work below this many elements stays on one thread.
public let elementwiseGrain = 1 << 15

/// A pointwise function as a type: kernels generic over it are specialized per function, so the function
/// inlines into the loop and the loop vectorizes (a closure argument would be called per element).
public protocol PointwiseUnary { static func apply<T: TensorScalar>(_ x: T) -> T }
public protocol PointwiseBinary { static func apply<T: TensorScalar>(_ a: T, _ b: T) -> T }

/// The pointwise functions: forward `f(x)` and, as `...Grad`, the VJP `g * f'(x)` (given x or y = f(x)).
public enum Pointwise {
    public enum Add: PointwiseBinary { @inlinable @inline(__always) public static func apply<T: TensorScalar>(_ a: T, _ b: T) -> T { a + b } }
    public enum Sub: PointwiseBinary { @inlinable @inline(__always) public static func apply<T: TensorScalar>(_ a: T, _ b: T) -> T { a - b } }
    public enum Mul: PointwiseBinary { @inlinable @inline(__always) public static func apply<T: TensorScalar>(_ a: T, _ b: T) -> T { a * b } }
    public enum Div: PointwiseBinary { @inlinable @inline(__always) public static func apply<T: TensorScalar>(_ a: T, _ b: T) -> T { a / b } }
    /// Takes the second operand (broadcast copy).
    public enum Second: PointwiseBinary { @inlinable @inline(__always) public static func apply<T: TensorScalar>(_ a: T, _ b: T) -> T { b } }

    public enum Neg: PointwiseUnary { @inlinable @inline(__always) public static func apply<T: TensorScalar>(_ x: T) -> T { -x } }
    public enum NegGrad: PointwiseBinary { @inlinable @inline(__always) public static func apply<T: TensorScalar>(_ g: T, _ x: T) -> T { -g } }

    public enum Exp: PointwiseUnary { @inlinable @inline(__always) public static func apply<T: TensorScalar>(_ x: T) -> T { T.fastExp(x) } }
    /// exp' = exp: uses y.
    public enum ExpGrad: PointwiseBinary { @inlinable @inline(__always) public static func apply<T: TensorScalar>(_ g: T, _ y: T) -> T { g * y } }

    public enum Log: PointwiseUnary { @inlinable @inline(__always) public static func apply<T: TensorScalar>(_ x: T) -> T { T.log(x) } }
    public enum LogGrad: PointwiseBinary { @inlinable @inline(__always) public static func apply<T: TensorScalar>(_ g: T, _ x: T) -> T { g / x } }

    public enum Sqrt: PointwiseUnary { @inlinable @inline(__always) public static func apply<T: TensorScalar>(_ x: T) -> T { x.squareRoot() } }
    /// Uses y: d sqrt(x) = 1 / (2 y).
    public enum SqrtGrad: PointwiseBinary { @inlinable @inline(__always) public static func apply<T: TensorScalar>(_ g: T, _ y: T) -> T { g * T(0.5) / y } }

    public enum Rsqrt: PointwiseUnary { @inlinable @inline(__always) public static func apply<T: TensorScalar>(_ x: T) -> T { 1 / x.squareRoot() } }
    /// Uses y: d x^(-1/2) = -y^3 / 2.
    public enum RsqrtGrad: PointwiseBinary { @inlinable @inline(__always) public static func apply<T: TensorScalar>(_ g: T, _ y: T) -> T { g * T(-0.5) * y * y * y } }

    public enum Relu: PointwiseUnary { @inlinable @inline(__always) public static func apply<T: TensorScalar>(_ x: T) -> T { x > 0 ? x : 0 } }
    public enum ReluGrad: PointwiseBinary { @inlinable @inline(__always) public static func apply<T: TensorScalar>(_ g: T, _ x: T) -> T { x > 0 ? g : 0 } }

    /// Exact GELU (PyTorch's default): x Phi(x).
    public enum Gelu: PointwiseUnary {
        @inlinable @inline(__always) public static func apply<T: TensorScalar>(_ x: T) -> T { x * T(0.5) * (1 + T.erf(x * T(0.5).squareRoot())) }
    }
    /// Phi(x) + x phi(x).
    public enum GeluGrad: PointwiseBinary {
        @inlinable @inline(__always) public static func apply<T: TensorScalar>(_ g: T, _ x: T) -> T {
            let cdf = T(0.5) * (1 + T.erf(x * T(0.5).squareRoot()))
            let pdf = T.exp(-T(0.5) * x * x) / (2 * T.pi).squareRoot()
            return g * (cdf + x * pdf)
        }
    }

    /// Tanh-approximated GELU (HF "gelu_new" / "gelu_pytorch_tanh"): 0.5 x (1 + tanh(c (x + 0.044715 x^3))).
    public enum GeluTanh: PointwiseUnary {
        @inlinable @inline(__always) public static func apply<T: TensorScalar>(_ x: T) -> T {
            T(0.5) * x * (1 + T.tanh(geluC() * (x + T(0.044715) * x * x * x)))
        }
    }
    public enum GeluTanhGrad: PointwiseBinary {
        @inlinable @inline(__always) public static func apply<T: TensorScalar>(_ g: T, _ x: T) -> T {
            let t = T.tanh(geluC() * (x + T(0.044715) * x * x * x))
            let du = geluC() * (1 + 3 * T(0.044715) * x * x)
            return g * (T(0.5) * (1 + t) + T(0.5) * x * (1 - t * t) * du)
        }
    }
    @inlinable @inline(__always) static func geluC<T: TensorScalar>() -> T { (2 / T.pi).squareRoot() }

    /// Numerically stable logistic function: e^-|x| never overflows; branch-free so loops vectorize.
    @inlinable @inline(__always)
    public static func sigmoid<T: TensorScalar>(_ x: T) -> T {
        let e = T.fastExp(-abs(x))
        let r = 1 / (1 + e)
        return x >= 0 ? r : e * r
    }

    public enum Sigmoid: PointwiseUnary { @inlinable @inline(__always) public static func apply<T: TensorScalar>(_ x: T) -> T { sigmoid(x) } }
    /// Uses y: y (1 - y).
    public enum SigmoidGrad: PointwiseBinary { @inlinable @inline(__always) public static func apply<T: TensorScalar>(_ g: T, _ y: T) -> T { g * y * (1 - y) } }

    /// SiLU (swish): x sigmoid(x).
    public enum Silu: PointwiseUnary { @inlinable @inline(__always) public static func apply<T: TensorScalar>(_ x: T) -> T { x * sigmoid(x) } }
    /// sigmoid(x) (1 + x (1 - sigmoid(x))).
    public enum SiluGrad: PointwiseBinary {
        @inlinable @inline(__always) public static func apply<T: TensorScalar>(_ g: T, _ x: T) -> T {
            let s = sigmoid(x)
            return g * s * (1 + x * (1 - s))
        }
    }

    /// PyTorch's softplus (beta 1): linear above the threshold 20 for stability.
    public enum Softplus: PointwiseUnary {
        @inlinable @inline(__always) public static func apply<T: TensorScalar>(_ x: T) -> T { x > 20 ? x : T.log(onePlus: T.exp(x)) }
    }
    public enum SoftplusGrad: PointwiseBinary {
        @inlinable @inline(__always) public static func apply<T: TensorScalar>(_ g: T, _ x: T) -> T { x > 20 ? g : g * sigmoid(x) }
    }

    public enum Tanh: PointwiseUnary { @inlinable @inline(__always) public static func apply<T: TensorScalar>(_ x: T) -> T { T.tanh(x) } }
    /// Uses y: 1 - y^2.
    public enum TanhGrad: PointwiseBinary { @inlinable @inline(__always) public static func apply<T: TensorScalar>(_ g: T, _ y: T) -> T { g * (1 - y * y) } }

    /// The standard normal CDF, Phi(x) = (1 + erf(x / sqrt 2)) / 2 (Shazeer's smooth load estimator).
    public enum NormalCDF: PointwiseUnary {
        @inlinable @inline(__always) public static func apply<T: TensorScalar>(_ x: T) -> T { T(0.5) * (1 + T.erf(x * T(0.5).squareRoot())) }
    }
    /// phi(x) = exp(-x^2 / 2) / sqrt(2 pi).
    public enum NormalCDFGrad: PointwiseBinary {
        @inlinable @inline(__always) public static func apply<T: TensorScalar>(_ g: T, _ x: T) -> T { g * T.exp(-T(0.5) * x * x) / (2 * T.pi).squareRoot() }
    }

    public enum Square: PointwiseUnary { @inlinable @inline(__always) public static func apply<T: TensorScalar>(_ x: T) -> T { x * x } }
    public enum SquareGrad: PointwiseBinary { @inlinable @inline(__always) public static func apply<T: TensorScalar>(_ g: T, _ x: T) -> T { 2 * g * x } }
}

extension Tensor {
    // MARK: Binary

    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public static func binary(_ op: BinaryOp, _ a: Tensor, _ b: Tensor) -> Tensor {
        switch op {
        case .add: return zip(a, b, op: "add", Pointwise.Add.self)
        case .sub: return zip(a, b, op: "sub", Pointwise.Sub.self)
        case .mul: return zip(a, b, op: "mul", Pointwise.Mul.self)
        case .div: return zip(a, b, op: "div", Pointwise.Div.self)
        }
    }

    public static func + (a: Tensor, b: Tensor) -> Tensor { binary(.add, a, b) }
    public static func - (a: Tensor, b: Tensor) -> Tensor { binary(.sub, a, b) }
    public static func * (a: Tensor, b: Tensor) -> Tensor { binary(.mul, a, b) }
    public static func / (a: Tensor, b: Tensor) -> Tensor { binary(.div, a, b) }

    /// `K` applied over the broadcast of `a` and `b`. Fast paths for equal shapes and scalar operands; the
    /// general case walks the output rows with per-operand strides (0 along broadcast axes).
    @inline(__always)
    public static func zip<K: PointwiseBinary>(_ a: Tensor, _ b: Tensor, op: String, _: K.Type) -> Tensor {
        let shape: [Int]
        do { shape = try Shape.broadcast(a.shape, b.shape, op: op) } catch { preconditionFailure(error.description) }
        let out = Tensor(uninitializedShape: shape)
        let n = out.count
        let po = out.storage.base
        a.withUnsafePointer { pa in
            b.withUnsafePointer { pb in
                if a.shape == b.shape {
                    Parallel.forRange(n, grain: elementwiseGrain) { r in
                        for i in r { po[i] = K.apply(pa[i], pb[i]) }
                    }
                } else if b.count == 1 {
                    let s = pb[0]
                    Parallel.forRange(n, grain: elementwiseGrain) { r in
                        for i in r { po[i] = K.apply(pa[i], s) }
                    }
                } else if a.count == 1 {
                    let s = pa[0]
                    Parallel.forRange(n, grain: elementwiseGrain) { r in
                        for i in r { po[i] = K.apply(s, pb[i]) }
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
                            let dst = po + row * inner, xa = pa + oa, xb = pb + ob
                            if la == 1 && lb == 1 {
                                for j in 0..<inner { dst[j] = K.apply(xa[j], xb[j]) }
                            } else if lb == 0 {
                                let s = xb[0]
                                for j in 0..<inner { dst[j] = K.apply(xa[j * la], s) }
                            } else if la == 0 {
                                let s = xa[0]
                                for j in 0..<inner { dst[j] = K.apply(s, xb[j]) }
                            } else {
                                for j in 0..<inner { dst[j] = K.apply(xa[j * la], xb[j * lb]) }
                            }
                        }
                    }
                }
            }
        }
        return out
    }

    /// `K` applied to every element, in parallel for large tensors.
    @inline(__always)
    public func map<K: PointwiseUnary>(_: K.Type) -> Tensor {
        let out = Tensor(uninitializedShape: shape)
        let po = out.storage.base
        withUnsafePointer { px in
            Parallel.forRange(count, grain: elementwiseGrain) { r in
                for i in r { po[i] = K.apply(px[i]) }
            }
        }
        return out
    }

    // MARK: Scalar operands

    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public func adding(_ s: T) -> Tensor { Tensor.zip(self, Tensor(s), op: "add", Pointwise.Add.self) }

    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public func scaled(by s: T) -> Tensor { Tensor.zip(self, Tensor(s), op: "mul", Pointwise.Mul.self) }

    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public func power(_ p: T) -> Tensor {
        if p == 2 { return map(Pointwise.Square.self) }
        return map { T.pow($0, p) }
    }

    /// `f` applied to every element (a convenience for cold paths: the closure is called per element).
    public func map(_ f: (T) -> T) -> Tensor {
        let out = Tensor(uninitializedShape: shape)
        let po = out.storage.base
        withUnsafePointer { px in
            for i in 0..<count { po[i] = f(px[i]) }
        }
        return out
    }

    /// `f(x, y)` over two tensors of one shape (cold paths).
    public static func map2(_ x: Tensor, _ y: Tensor, op: String, _ f: (T, T) -> T) -> Tensor {
        Shape.require(x.shape == y.shape, op, "shapes differ: \(Shape.describe(x.shape)) vs \(Shape.describe(y.shape))")
        let out = Tensor(uninitializedShape: x.shape)
        let po = out.storage.base
        x.withUnsafePointer { px in
            y.withUnsafePointer { py in
                for i in 0..<x.count { po[i] = f(px[i], py[i]) }
            }
        }
        return out
    }

    // MARK: Unary functions and their derivatives

    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public func unary(_ op: UnaryOp) -> Tensor {
        switch op {
        case .neg: return map(Pointwise.Neg.self)
        case .exp: return map(Pointwise.Exp.self)
        case .log: return map(Pointwise.Log.self)
        case .sqrt: return map(Pointwise.Sqrt.self)
        case .rsqrt: return map(Pointwise.Rsqrt.self)
        case .relu: return map(Pointwise.Relu.self)
        case .gelu: return map(Pointwise.Gelu.self)
        case .geluTanh: return map(Pointwise.GeluTanh.self)
        case .silu: return map(Pointwise.Silu.self)
        case .sigmoid: return map(Pointwise.Sigmoid.self)
        case .softplus: return map(Pointwise.Softplus.self)
        case .tanh: return map(Pointwise.Tanh.self)
        case .square: return map(Pointwise.Square.self)
        case .normalCDF: return map(Pointwise.NormalCDF.self)
        }
    }

    /// The derivative's product with the upstream gradient: `g * f'(x)`, given input `x` and output `y = f(x)`.
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public static func unaryDerivative(_ op: UnaryOp, x: Tensor, y: Tensor, upstream g: Tensor) -> Tensor {
        Shape.require(g.shape == x.shape, "\(op).vjp", "upstream \(Shape.describe(g.shape)) vs input \(Shape.describe(x.shape))")
        switch op {
        case .neg: return zip(g, x, op: "neg.vjp", Pointwise.NegGrad.self)
        case .exp: return zip(g, y, op: "exp.vjp", Pointwise.ExpGrad.self)
        case .log: return zip(g, x, op: "log.vjp", Pointwise.LogGrad.self)
        case .sqrt: return zip(g, y, op: "sqrt.vjp", Pointwise.SqrtGrad.self)
        case .rsqrt: return zip(g, y, op: "rsqrt.vjp", Pointwise.RsqrtGrad.self)
        case .relu: return zip(g, x, op: "relu.vjp", Pointwise.ReluGrad.self)
        case .gelu: return zip(g, x, op: "gelu.vjp", Pointwise.GeluGrad.self)
        case .geluTanh: return zip(g, x, op: "geluTanh.vjp", Pointwise.GeluTanhGrad.self)
        case .silu: return zip(g, x, op: "silu.vjp", Pointwise.SiluGrad.self)
        case .sigmoid: return zip(g, y, op: "sigmoid.vjp", Pointwise.SigmoidGrad.self)
        case .softplus: return zip(g, x, op: "softplus.vjp", Pointwise.SoftplusGrad.self)
        case .tanh: return zip(g, y, op: "tanh.vjp", Pointwise.TanhGrad.self)
        case .square: return zip(g, x, op: "square.vjp", Pointwise.SquareGrad.self)
        case .normalCDF: return zip(g, x, op: "normalCDF.vjp", Pointwise.NormalCDFGrad.self)
        }
    }

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

    /// Sum of squares of all elements: blocks of 4096 elements are summed in sixteen SIMD lanes of T, blocks in
    /// parallel, and the block sums in order in Double, so the result does not depend on the number of threads.
    /// (A single Double chain cannot vectorize: it took 2 ms of T1's step for the gradient norm.)
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public func sumOfSquares() -> Double {
        let n = count, block = 4096
        let blocks = (n + block - 1) / block
        var partial = [Double](repeating: 0, count: blocks)
        withUnsafePointer { p in
            partial.withUnsafeMutableBufferPointer { out in
                let o = out.baseAddress!
                Parallel.forRange(blocks, grain: 8) { r in
                    for b in r {
                        let lo = b * block, len = Swift.min(block, n - lo)
                        o[b] = Double(VectorMath.dot(p + lo, p + lo, len))
                    }
                }
            }
        }
        return partial.reduce(0, +)
    }

    /// `self *= s` in place.
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public mutating func scale(by s: T) {
        let n = count
        withUnsafeMutablePointer { p in
            Parallel.forRange(n, grain: elementwiseGrain) { r in
                for i in r { p[i] *= s }
            }
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
