import MoE
import MoETensor

/// One expert's matrices in Hugging Face orientation, f32 row-major: gate and up [F, D] (no gate for a plain FFN
/// expert), down [D, F].
public struct ExpertMatrices: Sendable {
    public let gate: [Float]?
    public let up: [Float]
    public let down: [Float]
    public let width: Int  // F
    public let hidden: Int  // D
    public init(gate: [Float]?, up: [Float], down: [Float], width: Int, hidden: Int) {
        (self.gate, self.up, self.down, self.width, self.hidden) = (gate, up, down, width, hidden)
    }
}

/// The experts' weights of one layer in f32, for analyses that read weights rather than run them (`moe analyze`):
/// each matrix widened from its stored form (f32, 16-bit, q8/q4, MXFP4) one at a time, so a caller holding one
/// layer holds one layer's f32 weights above the mapped file.
extension InferenceModel {
    /// The layers with routed experts.
    public var moeLayers: [Int] { layers.indices.filter { layers[$0].router != nil && !layers[$0].experts.isEmpty } }

    public func expertCount(layer: Int) -> Int { layers[layer].experts.count }
    public func expertWidth(layer: Int) -> Int { layers[layer].experts.first?.width ?? 0 }
    /// The router of `layer` (nil for a dense layer).
    public func router(layer: Int) -> Router<Float>? { layers[layer].router }

    static func widened(_ w: WeightMatrix, rows: Range<Int>) -> [Float] {
        var out = [Float](repeating: 0, count: rows.count * w.cols)
        out.withUnsafeMutableBufferPointer { w.widen(rows: rows, into: $0.baseAddress!) }
        return out
    }

    /// Expert `e` of `layer`, widened to f32. gpt-oss's interleaved first product (rows alternating gate and up)
    /// is split into its gate and up.
    public func expertMatrices(layer: Int, expert e: Int) -> ExpertMatrices {
        let m = layers[layer].experts[e]
        let f = m.width, d = m.down.rows
        let gate: [Float], up: [Float]
        if m.interleaved {
            let both = Self.widened(m.first[0], rows: 0..<(2 * f))
            var g = [Float](repeating: 0, count: f * d), u = g
            for r in 0..<f {
                for c in 0..<d {
                    g[r * d + c] = both[(2 * r) * d + c]
                    u[r * d + c] = both[(2 * r + 1) * d + c]
                }
            }
            (gate, up) = (g, u)
        } else {
            gate = Self.widened(m.first[0], rows: 0..<f)
            up = Self.widened(m.first[1], rows: 0..<f)
        }
        return ExpertMatrices(gate: gate, up: up, down: Self.widened(m.down, rows: 0..<d), width: f, hidden: d)
    }

    /// The router's linear map [E, D] (one row, the expert's embedding, per expert), or nil for a router without
    /// one (hash routing).
    public func routerWeights(layer: Int) -> Tensor<Float>? {
        layers[layer].router?.gate?.weight.value
    }
}
