import Foundation
import MoE
import MoEIO
import MoEModels
import MoENN
import MoETensor

#if !canImport(Accelerate)
import CMoEBLAS
#endif

/// A Hugging Face MoE checkpoint ready for inference on its weights as stored: every large matrix is a view
/// into the memory-mapped safetensors files (f32, bf16, f16, or swift-moe's q8/q4 blocks), so loading reads the
/// headers and the small vectors only, and memory is the pages actually touched. The experts of a layer are one
/// view per expert (gate, up, down), wherever the file put them. Norm weights, biases and the router (a few KB
/// per layer) are copied to f32; the router is the shared `Router` component with the file's weights.
///
/// Families: those of `HuggingFace.configOnlyFamilies` (Llama attention with optional biases and q/k norms,
/// SwiGLU experts, optional shared expert and dense layers). Legend: D model dim, H query heads, KV key/value
/// heads, Dh head dim, E experts, F expert width, V vocabulary.
public final class InferenceModel: @unchecked Sendable {
    public let config: TransformerConfig
    public let directory: String
    let checkpoint: SafetensorsCheckpoint

    /// A SwiGLU network: the first products are [gate, up] (each [F, D]) or one [2F, D] whose rows alternate gate
    /// and up (gpt-oss's interleaved layout), then the down product [D, F]; biases optional.
    struct MLP {
        let first: [WeightMatrix]
        let down: WeightMatrix
        let firstBias: [Float]?  // [2F] in the first products' row order
        let downBias: [Float]?  // [D]
        var interleaved: Bool { first.count == 1 }
        var width: Int { down.cols }
        var matrices: [WeightMatrix] { first + [down] }
        var bytes: Int { matrices.reduce(0) { $0 + $1.bytes } + 4 * ((firstBias?.count ?? 0) + (downBias?.count ?? 0)) }
    }

    struct Layer {
        let inputNorm: Tensor<Float>, postNorm: Tensor<Float>  // [D]
        let q: WeightMatrix, k: WeightMatrix, v: WeightMatrix, o: WeightMatrix
        let qBias: [Float]?, kBias: [Float]?, vBias: [Float]?, oBias: [Float]?
        let qNorm: Tensor<Float>?, kNorm: Tensor<Float>?  // [Dh] per head, or [H Dh] / [KV Dh] whole
        let sinks: [Float]?  // [H]
        let window: Int?  // sliding-window attention over the last `window` positions
        let router: Router<Float>?
        let experts: [MLP]
        let shared: MLP?
        let sharedGate: [Float]?  // [D]
        let dense: MLP?
    }

    let layers: [Layer]
    let embed: WeightMatrix  // [V, D]
    let head: WeightMatrix  // [V, D] (the embedding when tied)
    let finalNorm: Tensor<Float>

    /// Opens `dir` (config.json and the safetensors weights) without reading the weights.
    public init(directory dir: String) throws {
        directory = dir
        let c = try HuggingFace.config(dir)
        try Self.checkSupported(c, path: dir + "/config.json")
        config = c
        checkpoint = try SafetensorsCheckpoint(directory: dir)
        try HuggingFace.checkSizes(c, against: checkpoint, path: dir + "/config.json", names: HuggingFace.names(for: c, file: checkpoint))
        let family = c.modelType
        let reader = Reader(checkpoint: checkpoint, family: family)
        let (d, dh, h, kv) = (c.hiddenSize, c.headDim, c.numHeads, c.numKVHeads)
        var built: [Layer] = []
        var rng = RandomGenerator(seed: 0)
        for i in 0..<c.numLayers {
            let p = "model.layers.\(i)."
            let a = p + "self_attn."
            let perHead = c.qkNorm == "per_head"
            var router: Router<Float>? = nil
            var experts: [MLP] = []
            var shared: MLP? = nil, sharedGate: [Float]? = nil, dense: MLP? = nil
            if c.isMoE(layer: i), var moe = c.moe {
                moe.auxLossCoef = 0
                let block = family == "mixtral" ? "block_sparse_moe." : "mlp."
                let r = Router<Float>(config: moe, path: "", rng: &rng)
                let gate = p + block + (family == "gpt_oss" ? "router." : "gate.")
                r.gate?.weight.value = try reader.vector(gate + "weight", count: moe.numExperts * d).reshaped([moe.numExperts, d])
                if moe.routerBias { r.gate?.bias?.value = try reader.vector(gate + "bias", count: moe.numExperts) }
                router = r
                let f = moe.expertHiddenSize
                if family == "gpt_oss" {
                    experts = try reader.stackedExperts(p + "mlp.experts.", count: moe.numExperts, d: d, f: f)
                } else {
                    let names = family == "mixtral" ? ("w1", "w3", "w2") : ("gate_proj", "up_proj", "down_proj")
                    for e in 0..<moe.numExperts {
                        let q = p + block + "experts.\(e)."
                        experts.append(try reader.mlp(q + names.0 + ".weight", q + names.1 + ".weight", q + names.2 + ".weight", d: d, f: f))
                    }
                }
                guard Set(experts.flatMap { $0.first.map(\.format) }).count == 1 else {
                    throw SafetensorsError(checkpoint.path, tensor: p + block + "experts", "mixes storage formats across the experts' gate and up matrices", hint: "store them alike (moe quantize does)")
                }
                if moe.sharedExpertHiddenSize > 0 {
                    let q = p + "mlp.shared_expert."
                    shared = try reader.mlp(q + "gate_proj.weight", q + "up_proj.weight", q + "down_proj.weight", d: d, f: moe.sharedExpertHiddenSize)
                    if moe.sharedExpertGate { sharedGate = try reader.vector(p + "mlp.shared_expert_gate.weight", count: d).scalars }
                }
            } else {
                let q = p + "mlp."
                dense = try reader.mlp(q + "gate_proj.weight", q + "up_proj.weight", q + "down_proj.weight", d: d, f: c.intermediateSize)
            }
            built.append(Layer(
                inputNorm: try reader.vector(p + "input_layernorm.weight", count: d),
                postNorm: try reader.vector(p + "post_attention_layernorm.weight", count: d),
                q: try reader.matrix(a + "q_proj.weight", h * dh, d), k: try reader.matrix(a + "k_proj.weight", kv * dh, d),
                v: try reader.matrix(a + "v_proj.weight", kv * dh, d), o: try reader.matrix(a + "o_proj.weight", d, h * dh),
                qBias: c.attentionBias ? try reader.vector(a + "q_proj.bias", count: h * dh).scalars : nil,
                kBias: c.attentionBias ? try reader.vector(a + "k_proj.bias", count: kv * dh).scalars : nil,
                vBias: c.attentionBias ? try reader.vector(a + "v_proj.bias", count: kv * dh).scalars : nil,
                oBias: c.attentionOutputBias ? try reader.vector(a + "o_proj.bias", count: d).scalars : nil,
                qNorm: c.qkNorm == nil ? nil : try reader.vector(a + "q_norm.weight", count: perHead ? dh : h * dh),
                kNorm: c.qkNorm == nil ? nil : try reader.vector(a + "k_norm.weight", count: perHead ? dh : kv * dh),
                sinks: c.attentionSinks ? try reader.vector(a + "sinks", count: h).scalars : nil,
                window: c.slidingLayers.contains(i) ? c.slidingWindow : nil,
                router: router, experts: experts, shared: shared, sharedGate: sharedGate, dense: dense))
        }
        layers = built
        embed = try reader.matrix("model.embed_tokens.weight", c.vocabSize, d)
        head = c.tieWordEmbeddings ? embed : try reader.matrix("lm_head.weight", c.vocabSize, d)
        finalNorm = try reader.vector("model.norm.weight", count: d)
        // The strict end: every tensor of the files is used.
        if let unused = checkpoint.logicalNames.first(where: { !reader.used.contains($0) }) {
            throw SafetensorsError(checkpoint.file(of: unused), tensor: unused, "is not used by the \(family) model built from config.json", hint: "the weights and the config disagree")
        }
    }

    /// Whether the engine runs the model in `dir` (its family and every feature of its config), judged from
    /// config.json alone.
    public static func supports(directory dir: String) -> Bool {
        guard let c = try? HuggingFace.config(dir) else { return false }
        return (try? checkSupported(c, path: dir)) != nil
    }

    /// Refuses what the engine does not run yet, naming it (the reference model still runs these).
    static func checkSupported(_ c: TransformerConfig, path: String) throws {
        var missing: [String] = []
        if c.normKind != .rms { missing.append("LayerNorm") }
        if c.postNorms { missing.append("post-norms") }
        if c.mla != nil { missing.append("latent attention") }
        if c.peer != nil { missing.append("PEER layers") }
        if c.clipQKV != nil { missing.append("clip_qkv") }
        if c.interleavedRope { missing.append("interleaved RoPE") }
        if c.qkNormAfterRope { missing.append("q/k norm after RoPE") }
        if !c.nopeLayers.isEmpty { missing.append("NoPE layers") }
        if c.embeddingMultiplier != 1 || c.residualMultiplier != 1 || c.logitsScaling != 1 { missing.append("Granite multipliers") }
        if c.lmHeadBias { missing.append("a head bias") }
        if let m = c.moe, m.expertActivation != .swiglu && m.expertActivation != .clampedSwiglu { missing.append("\(m.expertActivation.rawValue) experts") }
        if let m = c.moe, m.expertBias && c.modelType != "gpt_oss" { missing.append("biased experts outside gpt_oss") }
        if let m = c.moe, [.noisyTopK, .gshard, .hash, .expertChoice, .soft, .base].contains(m.router) { missing.append("the \(m.router) router") }
        guard missing.isEmpty else {
            throw HuggingFace.LoadError(description: "\(path): the inference engine does not run \(missing.joined(separator: ", ")) yet; use the reference path (moe logits, moe generate --reference)")
        }
    }

    /// Parameters of the checkpoint (every weight, counted from the mapped shapes without reading them).
    public var parameterCount: Int {
        var n = finalNorm.count + embed.rows * embed.cols + (config.tieWordEmbeddings ? 0 : head.rows * head.cols)
        func mats(_ m: [WeightMatrix]) -> Int { m.reduce(0) { $0 + $1.rows * $1.cols } }
        for l in layers {
            n += l.inputNorm.count + l.postNorm.count + mats([l.q, l.k, l.v, l.o])
            n += (l.qBias?.count ?? 0) + (l.kBias?.count ?? 0) + (l.vBias?.count ?? 0) + (l.oBias?.count ?? 0)
            n += (l.qNorm?.count ?? 0) + (l.kNorm?.count ?? 0) + (l.router?.gate?.weight.value.count ?? 0) + (l.sharedGate?.count ?? 0)
            n += (l.router?.gate?.bias?.value.count ?? 0) + (l.sinks?.count ?? 0)
            for m in l.experts + [l.shared, l.dense].compactMap({ $0 }) {
                n += mats(m.matrices) + (m.firstBias?.count ?? 0) + (m.downBias?.count ?? 0)
            }
        }
        return n
    }

    /// Storage formats of the matrices, with how many of each.
    public var formats: [WeightMatrix.Format: Int] {
        var f: [WeightMatrix.Format: Int] = [:]
        var all = [embed] + (config.tieWordEmbeddings ? [] : [head])
        for l in layers {
            all += [l.q, l.k, l.v, l.o] + (l.experts + [l.shared, l.dense].compactMap { $0 }).flatMap(\.matrices)
        }
        for m in all { f[m.format, default: 0] += 1 }
        return f
    }

    /// Bytes of all weights as stored.
    public var weightBytes: Int {
        checkpoint.files.reduce(0) { total, f in total + f.tensors.reduce(0) { $0 + ($1.end - $1.begin) } }
    }

    /// The storage format of the expert matrices (the first layer's first expert, or its dense MLP).
    public var expertFormat: WeightMatrix.Format {
        layers.first.flatMap { ($0.experts.first ?? $0.dense)?.first[0] }?.format ?? embed.format
    }

    /// Bytes one decoded token reads: attention, norms, router, the k selected experts of each MoE layer, the
    /// shared expert, dense MLPs, the final norm and the head, at their stored precision (the embedding row is
    /// one row; it is counted too).
    public var decodeBytesPerToken: Int {
        var total = finalNorm.count * 4 + head.bytes + embed.rowBytes
        for l in layers {
            total += (l.inputNorm.count + l.postNorm.count) * 4 + l.q.bytes + l.k.bytes + l.v.bytes + l.o.bytes
            total += 4 * ((l.qBias?.count ?? 0) + (l.kBias?.count ?? 0) + (l.vBias?.count ?? 0) + (l.oBias?.count ?? 0))
            total += 4 * ((l.qNorm?.count ?? 0) + (l.kNorm?.count ?? 0))
            total += 4 * (l.sinks?.count ?? 0)
            if let moe = l.router?.config {
                total += moe.numExperts * (moe.hiddenSize + (moe.routerBias ? 1 : 0)) * 4
                if let e = l.experts.first { total += moe.expertsPerToken * e.bytes }
            }
            if let s = l.shared { total += s.bytes + 4 * (l.sharedGate?.count ?? 0) }
            if let m = l.dense { total += m.bytes }
        }
        return total
    }

    /// Useful FLOPs of one token at context length 0 (2 per multiply-add of every product it runs).
    public var flopsPerToken: Double { flopsPerToken(where: { _ in true }) }

    /// The part of `flopsPerToken` in the products whose weights are stored in a format that passes `include`
    /// (the router's weights are f32): how a prompt's work splits between arithmetics.
    public func flopsPerToken(where include: (WeightMatrix.Format) -> Bool) -> Double {
        func macs(_ ms: [WeightMatrix]) -> Double { ms.reduce(0) { $0 + (include($1.format) ? Double($1.rows * $1.cols) : 0) } }
        var total = macs([head])
        for l in layers {
            total += macs([l.q, l.k, l.v, l.o])
            if let r = l.router {
                if include(.f32) { total += Double(r.config.numExperts * r.config.hiddenSize) }
                if let e = l.experts.first { total += Double(r.config.expertsPerToken) * macs(e.matrices) }
            }
            if let s = l.shared { total += macs(s.matrices) }
            if let m = l.dense { total += macs(m.matrices) }
        }
        return 2 * total
    }

    /// Turns the crash of reading a model file truncated while mapped (SIGBUS) into one line and exit status 1.
    public static func guardMappedFiles() {
        #if !canImport(Accelerate)
        moe_install_mapped_file_guard("Error: a memory-mapped model file was truncated while in use (SIGBUS); do not modify a model while moe runs it, then run again")
        #endif
    }

    /// Throws when a weight file changed on disk since it was mapped.
    public func checkFilesUnchanged() throws {
        for f in checkpoint.files { try f.checkUnchanged() }
    }
}

/// Reads tensors of a checkpoint by name, remembering which were used.
final class Reader {
    let checkpoint: SafetensorsCheckpoint
    let family: String
    var used = Set<String>()

    init(checkpoint: SafetensorsCheckpoint, family: String) {
        self.checkpoint = checkpoint
        self.family = family
    }

    func file(_ name: String) throws -> SafetensorsFile {
        guard let f = checkpoint.shard(holding: name) else {
            throw SafetensorsError(checkpoint.path, tensor: name, "is missing", hint: "the checkpoint does not match the \(family) config.json")
        }
        used.insert(name)
        return f
    }

    func matrix(_ name: String, _ rows: Int, _ cols: Int) throws -> WeightMatrix {
        try WeightMatrix.mapped(try file(name), name, rows: rows, cols: cols)
    }

    func mlp(_ gate: String, _ up: String, _ down: String, d: Int, f: Int) throws -> InferenceModel.MLP {
        InferenceModel.MLP(first: [try matrix(gate, f, d), try matrix(up, f, d)], down: try matrix(down, d, f), firstBias: nil, downBias: nil)
    }

    /// gpt-oss's stacked experts under `prefix`: `gate_up_proj` (gate and up interleaved) and `down_proj` with their
    /// biases, MXFP4 ([E, out, in], used in place) or f32/bf16 ([E, in, out], transposed once per expert).
    func stackedExperts(_ prefix: String, count: Int, d: Int, f: Int) throws -> [InferenceModel.MLP] {
        let gu = prefix + "gate_up_proj", down = prefix + "down_proj"
        let fg = try file(gu), fd = try file(down)
        let gb = try vector(gu + "_bias", count: count * 2 * f).scalars, db = try vector(down + "_bias", count: count * d).scalars
        var out: [InferenceModel.MLP] = []
        for e in 0..<count {
            out.append(InferenceModel.MLP(
                first: [try WeightMatrix.expert(fg, gu, e, of: count, rows: 2 * f, cols: d, transposed: fg.mxfp4[gu] == nil)],
                down: try WeightMatrix.expert(fd, down, e, of: count, rows: d, cols: f, transposed: fd.mxfp4[down] == nil),
                firstBias: Array(gb[(e * 2 * f)..<((e + 1) * 2 * f)]), downBias: Array(db[(e * d)..<((e + 1) * d)])))
        }
        return out
    }

    /// A small tensor (norm weight, bias, router) as f32, checked to hold `count` elements.
    func vector(_ name: String, count: Int) throws -> Tensor<Float> {
        let f = try file(name)
        let t = try f.tensor(name, as: Float.self)
        guard t.count == count else {
            throw SafetensorsError(f.path, tensor: name, "has \(t.count) elements (shape \(Shape.describe(t.shape))) but config.json needs \(count)", hint: "the weights and the config disagree")
        }
        return t.reshaped([count])
    }
}
