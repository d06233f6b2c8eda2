import MoETensor

// Unary functions: forward and derivative formulas sit together in MoETensor's `Tensor.unary` and
// `Tensor.unaryDerivative`; this file records them.

extension Variable {
    public func apply(_ op: UnaryOp) -> Variable {
        let x = value
        let y = x.unary(op)
        return Variable.result(y, self) { { g in [Tensor.unaryDerivative(op, x: x, y: y, upstream: g)] } }
    }

    public func exp() -> Variable { apply(.exp) }
    public func log() -> Variable { apply(.log) }
    public func sqrt() -> Variable { apply(.sqrt) }
    public func rsqrt() -> Variable { apply(.rsqrt) }
    public func relu() -> Variable { apply(.relu) }
    /// Exact GELU, x * Phi(x) (PyTorch's default).
    public func gelu() -> Variable { apply(.gelu) }
    /// Tanh-approximated GELU.
    public func geluTanh() -> Variable { apply(.geluTanh) }
    public func silu() -> Variable { apply(.silu) }
    public func sigmoid() -> Variable { apply(.sigmoid) }
    public func softplus() -> Variable { apply(.softplus) }
    public func tanh() -> Variable { apply(.tanh) }
    public func square() -> Variable { apply(.square) }
    /// Standard normal CDF.
    public func normalCDF() -> Variable { apply(.normalCDF) }
}

extension Variable {
    /// Elementwise clamp to [lo, hi] (either bound optional). VJP: the gradient passes where x is inside.
    public func clamped(min lo: T? = nil, max hi: T? = nil) -> Variable {
        let x = value
        let y = x.map { v in Swift.min(hi ?? v, Swift.max(lo ?? v, v)) }
        return Variable.result(y, self) {
            { g in [Tensor.map2(g, x, op: "clamp.vjp") { gi, xi in (lo.map { xi < $0 } ?? false) || (hi.map { xi > $0 } ?? false) ? 0 : gi }] }
        }
    }
}
