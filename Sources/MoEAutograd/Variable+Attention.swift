import MoETensor

extension Variable {
    /// Rotary position embedding on x [..., T, H, Dh]. VJP: the inverse rotation of the gradient.
    public func rope(positions: [Int], theta: Double, rotaryDim: Int? = nil, scaling: RopeScaling? = nil) -> Variable {
        let y = Tensor.rope(value, positions: positions, theta: theta, rotaryDim: rotaryDim, scaling: scaling)
        return Variable.result(y, self) {
            { g in [Tensor.rope(g, positions: positions, theta: theta, rotaryDim: rotaryDim, scaling: scaling, inverse: true)] }
        }
    }

    /// Fused scaled-dot-product attention with grouped KV heads: q [B, T, Hq, Dh], k/v [B, S, Hkv, Dh].
    /// `scale` defaults to 1/sqrt(Dh); `window` limits each query to its last W keys. See `Tensor.attention`
    /// for the kernel and its backward.
    /// `sinks` [Hq]: a learned logit per query head in each row's softmax denominator (gpt-oss).
    public static func attention(
        q: Variable, k: Variable, v: Variable, causal: Bool = true, scale: T? = nil, window: Int? = nil, sinks: Variable? = nil
    ) -> Variable {
        let sc = scale ?? 1 / T(q.shape[q.rank - 1]).squareRoot()
        let saved = Tensor.attention(q: q.value, k: k.value, v: v.value, causal: causal, scale: sc, window: window, sinks: sinks?.value)
        return result(saved.out, [q, k, v] + (sinks.map { [$0] } ?? [])) {
            let qv = q.value, kv = k.value, vv = v.value
            return { g in
                let (dq, dk, dv, dsinks) = Tensor.attentionBackward(
                    q: qv, k: kv, v: vv, saved: saved, upstream: g, causal: causal, scale: sc)
                return [dq, dk, dv] + (dsinks.map { [$0] } ?? [])
            }
        }
    }
}
