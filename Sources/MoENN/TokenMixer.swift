/// The sequence-mixing half of a decoder layer: attention in one of its forms (grouped-query, latent...).
/// x [B, T, D] at `positions` -> [B, T, D]; with a cache it attends over the cached positions too.
public protocol TokenMixer<Scalar>: Module {
    func callAsFunction(_ x: Variable<Scalar>, positions: [Int], cache: KVCache<Scalar>?, _ ctx: ForwardContext<Scalar>) -> Variable<Scalar>
}

extension Attention: TokenMixer {}

extension Variable {
    /// x [B, T, H, D] with rotary pairs adjacent, (x0, x1), (x2, x3)..., reordered to halves (evens, then odds),
    /// so the half-split RoPE rotates exactly those pairs. Given to q and k alike it leaves q·k unchanged.
    public func adjacentPairsToHalves() -> Variable {
        let s = shape
        return reshaped(Array(s.dropLast()) + [s[s.count - 1] / 2, 2]).permuted([0, 1, 2, 4, 3]).reshaped(s)
    }

    /// Scaled-dot-product attention where values have their own head dim: q, k [B, *, H, Dqk], v [B, S, H, Dv].
    /// The fused kernel wants one head dim, so the narrower side is padded with zeros (which add nothing to
    /// q·k and give zero output columns, then dropped); the scale is passed explicitly.
    public static func attention(q: Variable, k: Variable, v: Variable, valueDim dv: Int, causal: Bool, scale: T) -> Variable {
        let dqk = q.shape[3]
        if dv == dqk { return attention(q: q, k: k, v: v, causal: causal, scale: scale) }
        func pad(_ x: Variable, to d: Int) -> Variable {
            var s = x.shape
            s[3] = d - s[3]
            return Variable.concat([x, Variable(Tensor<T>.zeros(s))], axis: 3)
        }
        if dv < dqk {
            return attention(q: q, k: k, v: pad(v, to: dqk), causal: causal, scale: scale).split(sizes: [dv, dqk - dv], axis: 3)[0]
        }
        return attention(q: pad(q, to: dv), k: pad(k, to: dv), v: v, causal: causal, scale: scale)
    }
}
