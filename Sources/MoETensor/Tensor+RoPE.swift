/// Rotary position embedding (Su et al. 2021), in the "rotate half" layout used by Hugging Face Llama,
/// Mixtral and Qwen: dimension i pairs with i + R/2 within the first R (rotary) dimensions of each head.
///
/// Input shape [..., T, H, Dh]: T positions, H heads, Dh head dimension; `positions` has T entries.
/// Angle of pair i at position p: p * theta^(-2i/R).
extension Tensor {
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public static func rope(
        _ x: Tensor, positions: [Int], theta: Double, rotaryDim: Int? = nil, inverse: Bool = false
    ) -> Tensor {
        Shape.require(x.rank >= 3, "rope", "input must be [..., T, H, Dh], got \(Shape.describe(x.shape))")
        let dh = x.shape[x.rank - 1], heads = x.shape[x.rank - 2], t = x.shape[x.rank - 3]
        let rdim = rotaryDim ?? dh
        Shape.require(rdim % 2 == 0 && rdim <= dh, "rope", "rotary dimension \(rdim) must be even and <= head dim \(dh)")
        Shape.require(positions.count == t, "rope", "\(positions.count) positions for \(t) time steps of \(Shape.describe(x.shape))")
        let half = rdim / 2
        // Angles in Double, then rounded once: matches references that build cos/sin tables in float32.
        var cosT = [T](repeating: 0, count: t * half), sinT = [T](repeating: 0, count: t * half)
        for (ti, p) in positions.enumerated() {
            for i in 0..<half {
                let invFreq = 1.0 / Double.pow(theta, Double(2 * i) / Double(rdim))
                let a = Double(p) * Double(T(invFreq))
                cosT[ti * half + i] = T(Double.cos(a))
                sinT[ti * half + i] = T(Double.sin(a)) * (inverse ? -1 : 1)
            }
        }
        let out = x.copy()
        let outer = x.count / Swift.max(t * heads * dh, 1)
        let po = out.storage.base
        cosT.withUnsafeBufferPointer { pc in
            sinT.withUnsafeBufferPointer { ps in
                Parallel.forRange(outer * t, grain: Swift.max(1, elementwiseGrain / Swift.max(heads * dh, 1))) { r in
                    for ot in r {
                        let ti = ot % t
                        let c = pc.baseAddress! + ti * half, s = ps.baseAddress! + ti * half
                        for h in 0..<heads {
                            let v = po + (ot * heads + h) * dh
                            for i in 0..<half {
                                let a = v[i], b = v[i + half]
                                v[i] = a * c[i] - b * s[i]
                                v[i + half] = b * c[i] + a * s[i]
                            }
                        }
                    }
                }
            }
        }
        return out
    }
}
