import MoETensor

// Elementwise arithmetic with broadcasting, and scalar operands.
// VJPs: a gradient that was broadcast is summed back to its operand's shape.
// (VJP closures capture tensors, never Variables: a Variable holds its tape, which would form a cycle.)

extension Variable {
    public static func + (a: Variable, b: Variable) -> Variable {
        let y = a.value + b.value
        return result(y, a, b) {
            let sa = a.shape, sb = b.shape
            return { g in [g.sum(toShape: sa), g.sum(toShape: sb)] }
        }
    }

    public static func - (a: Variable, b: Variable) -> Variable {
        let y = a.value - b.value
        return result(y, a, b) {
            let sa = a.shape, sb = b.shape
            return { g in [g.sum(toShape: sa), g.unary(.neg).sum(toShape: sb)] }
        }
    }

    public static func * (a: Variable, b: Variable) -> Variable {
        let y = a.value * b.value
        return result(y, a, b) {
            let av = a.value, bv = b.value
            let needA = a.requiresGrad, needB = b.requiresGrad
            return { g in
                [needA ? (g * bv).sum(toShape: av.shape) : nil, needB ? (g * av).sum(toShape: bv.shape) : nil]
            }
        }
    }

    public static func / (a: Variable, b: Variable) -> Variable {
        let y = a.value / b.value
        return result(y, a, b) {
            let av = a.value, bv = b.value
            let needA = a.requiresGrad, needB = b.requiresGrad
            return { g in
                let ga = needA ? (g / bv).sum(toShape: av.shape) : nil
                // d(a/b)/db = -a / b^2 = -y / b
                let gb = needB ? (g * y / bv).unary(.neg).sum(toShape: bv.shape) : nil
                return [ga, gb]
            }
        }
    }

    public static prefix func - (a: Variable) -> Variable { a.apply(.neg) }

    public static func + (a: Variable, s: T) -> Variable {
        result(a.value.adding(s), a) { { g in [g] } }
    }

    public static func + (s: T, a: Variable) -> Variable { a + s }
    public static func - (a: Variable, s: T) -> Variable { a + (-s) }
    public static func - (s: T, a: Variable) -> Variable { (-a) + s }

    public static func * (a: Variable, s: T) -> Variable {
        result(a.value.scaled(by: s), a) { { g in [g.scaled(by: s)] } }
    }

    public static func * (s: T, a: Variable) -> Variable { a * s }
    public static func / (a: Variable, s: T) -> Variable { a * (1 / s) }

    /// Elementwise power with a constant exponent.
    public func pow(_ p: T) -> Variable {
        let x = value
        return Variable.result(x.power(p), self) {
            { g in [Tensor.map2(g, x, op: "pow.vjp") { g, x in g * p * T.pow(x, p - 1) }] }
        }
    }
}
