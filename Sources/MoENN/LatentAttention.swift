/// Multi-head latent attention (DeepSeek-V2/V3, MLA). Keys and values are rebuilt from a small per-token
/// latent: c = RMSNorm(x W_kv_a[:rank]) expands through `kv_b_proj` into per-head k_nope and v, while a single
/// shared rotary key k_rot = RoPE(x W_kv_a[rank:]) is broadcast to every head. Queries come from `q_proj`, or
/// through a low-rank `q_a_proj` -> RMSNorm -> `q_b_proj`. The cache holds only the latent and k_rot.
///
/// Parameter paths under `path`: q_proj | q_a_proj, q_a_layernorm, q_b_proj; kv_a_proj_with_mqa,
/// kv_a_layernorm, kv_b_proj, o_proj.
///
/// Legend: B batch, T new positions, S cached + new, H heads, N nope dim, R rope dim, V value dim, C latent rank.
public final class LatentAttention<T: TensorScalar>: Module {
    public let qProj: Linear<T>?, qA: Linear<T>?, qANorm: RMSNorm<T>?, qB: Linear<T>?
    public let kvA: Linear<T>, kvANorm: RMSNorm<T>, kvB: Linear<T>, o: Linear<T>
    public let heads: Int, nopeDim: Int, ropeDim: Int, valueDim: Int, rank: Int
    public let ropeTheta: Double
    public let scale: T
    /// The rotary dims come as interleaved pairs (x0, x1), (x2, x3), ... (DeepSeek's layout) rather than halves.
    public let interleaved: Bool

    public init(
        dim: Int, heads: Int, qLoraRank: Int?, kvLoraRank: Int, nopeDim: Int, ropeDim: Int, valueDim: Int,
        ropeTheta: Double, interleaved: Bool, bias: Bool, scale: Double? = nil, path: String, rng: inout RandomGenerator
    ) {
        let qk = nopeDim + ropeDim
        if let r = qLoraRank {
            qProj = nil
            qA = Linear(dim, r, bias: bias, path: joinPath(path, "q_a_proj"), rng: &rng)
            qANorm = RMSNorm(r, eps: 1e-6, path: joinPath(path, "q_a_layernorm"))
            qB = Linear(r, heads * qk, bias: false, path: joinPath(path, "q_b_proj"), rng: &rng)
        } else {
            qProj = Linear(dim, heads * qk, bias: false, path: joinPath(path, "q_proj"), rng: &rng)
            (qA, qANorm, qB) = (nil, nil, nil)
        }
        kvA = Linear(dim, kvLoraRank + ropeDim, bias: bias, path: joinPath(path, "kv_a_proj_with_mqa"), rng: &rng)
        kvANorm = RMSNorm(kvLoraRank, eps: 1e-6, path: joinPath(path, "kv_a_layernorm"))
        kvB = Linear(kvLoraRank, heads * (nopeDim + valueDim), bias: false, path: joinPath(path, "kv_b_proj"), rng: &rng)
        o = Linear(heads * valueDim, dim, bias: bias, path: joinPath(path, "o_proj"), rng: &rng)
        self.heads = heads
        self.nopeDim = nopeDim
        self.ropeDim = ropeDim
        self.valueDim = valueDim
        self.rank = kvLoraRank
        self.ropeTheta = ropeTheta
        self.interleaved = interleaved
        self.scale = T(scale ?? 1 / Double(qk).squareRoot())
    }

    public var parameters: [Parameter<T>] {
        [qProj, qA].compactMap { $0 }.flatMap(\.parameters) + (qANorm?.parameters ?? []) + (qB?.parameters ?? [])
            + kvA.parameters + kvANorm.parameters + kvB.parameters + o.parameters
    }

    func deinterleave(_ x: Variable<T>) -> Variable<T> { interleaved ? x.adjacentPairsToHalves() : x }

    public func callAsFunction(_ x: Variable<T>, positions: [Int], cache: KVCache<T>?, _ ctx: ForwardContext<T>) -> Variable<T> {
        let (b, t) = (x.shape[0], x.shape[1])
        let qFlat = qProj.map { $0(x, ctx) } ?? qB!(qANorm!(qA!(x, ctx), ctx), ctx)
        let qParts = qFlat.reshaped([b, t, heads, nopeDim + ropeDim]).split(sizes: [nopeDim, ropeDim], axis: 3)
        let qRot = deinterleave(qParts[1]).rope(positions: positions, theta: ropeTheta)
        let ckv = kvA(x, ctx).split(sizes: [rank, ropeDim], axis: 2)
        var latent = kvANorm(ckv[0], ctx).reshaped([b, t, 1, rank])
        var kRot = deinterleave(ckv[1].reshaped([b, t, 1, ropeDim])).rope(positions: positions, theta: ropeTheta)
        if let cache {
            let (fl, fr) = cache.append(latent.value, kRot.value)
            latent = Variable(fl)
            kRot = Variable(fr)
        }
        let s = latent.shape[1]
        let kv = kvB(latent.reshaped([b, s, rank]), ctx).reshaped([b, s, heads, nopeDim + valueDim]).split(sizes: [nopeDim, valueDim], axis: 3)
        let k = Variable.concat([kv[0], Variable.concat(Array(repeating: kRot, count: heads), axis: 2)], axis: 3)
        let q = Variable.concat([qParts[0], qRot], axis: 3)
        let out = Variable.attention(q: q, k: k, v: kv[1], valueDim: valueDim, causal: true, scale: scale)
        return o(out.reshaped([b, t, heads * valueDim]), ctx)
    }
}

extension LatentAttention: TokenMixer {}
