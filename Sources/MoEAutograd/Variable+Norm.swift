import MoETensor

extension Variable {
    /// Fused RMSNorm over the last axis: x * rsqrt(mean(x^2) + eps) * weight.
    public static func rmsNorm(_ x: Variable, weight: Variable, eps: T) -> Variable {
        let (y, rstd) = Tensor.rmsNorm(x.value, weight: weight.value, eps: eps)
        return result(y, x, weight) {
            let xv = x.value, wv = weight.value
            return { g in
                let (dx, dw) = Tensor.rmsNormBackward(xv, weight: wv, rstd: rstd, upstream: g)
                return [dx, dw]
            }
        }
    }

    /// Fused LayerNorm over the last axis: (x - mean) * rsqrt(var + eps) * weight + bias.
    public static func layerNorm(_ x: Variable, weight: Variable, bias: Variable, eps: T) -> Variable {
        let (y, mean, rstd) = Tensor.layerNorm(x.value, weight: weight.value, bias: bias.value, eps: eps)
        return result(y, [x, weight, bias]) {
            let xv = x.value, wv = weight.value
            return { g in
                let (dx, dw, db) = Tensor.layerNormBackward(xv, weight: wv, mean: mean, rstd: rstd, upstream: g)
                return [dx, dw, db]
            }
        }
    }
}
