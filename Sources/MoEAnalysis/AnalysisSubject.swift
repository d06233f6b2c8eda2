import MoE
import MoEInference
import MoEModels
import MoETensor

/// A model the analyses read: the inference engine's (weights as stored, mapped) or the reference model (every
/// family swift-moe loads, in memory).
public protocol AnalysisSubject: AnyObject {
    var config: TransformerConfig { get }
    /// The layers with routed experts.
    var moeLayers: [Int] { get }
    func expertCount(layer: Int) -> Int
    func expertWidth(layer: Int) -> Int
    func expertMatrices(layer: Int, expert: Int) -> ExpertMatrices
    /// The router's linear map [E, D], or nil for a router without one (hash routing).
    func routerWeights(layer: Int) -> Tensor<Float>?
    func router(layer: Int) -> Router<Float>?
    /// A run of texts of up to `context` tokens.
    func makeRun(context: Int) -> AnalysisRun
}

/// Texts through a model, with access to each MoE layer.
public protocol AnalysisRun: AnyObject {
    /// Called at each MoE layer with its index, its input [T, D] and the router's decision, before the experts run.
    var moeObserver: ((Int, Tensor<Float>, Routing<Float>) -> Void)? { get set }
    /// Routers used instead of the model's in the given layers.
    var routerOverrides: [Int: Router<Float>] { get set }
    /// Logits [T, V] of `ids` run from an empty cache.
    func logits(_ ids: [Int]) -> Tensor<Float>
    /// Expert `e` of `layer` on every row of h [T, D], as if every token had chosen it.
    func expertOutput(layer: Int, expert e: Int, _ h: Tensor<Float>) -> Tensor<Float>
    /// act(gate x) (act(up x) for a plain FFN) of expert `e` on every row of h, [T, F].
    func expertGateActivations(layer: Int, expert e: Int, _ h: Tensor<Float>) -> Tensor<Float>
}

extension InferenceModel: AnalysisSubject {
    public func makeRun(context: Int) -> AnalysisRun { InferenceSession(model: self, capacity: context, prefill: .f32) }
}

extension InferenceSession: AnalysisRun {
    public func logits(_ ids: [Int]) -> Tensor<Float> {
        reset()
        return forward(ids, allLogits: true)
    }
}

/// The reference model (`MoETransformer`, autograd modules run without a tape) as an analysis subject: the
/// families the inference engine does not run.
public final class ReferenceSubject: AnalysisSubject {
    public let model: MoETransformer<Float>
    public init(_ model: MoETransformer<Float>) { self.model = model }

    public var config: TransformerConfig { model.config }
    func block(_ layer: Int) -> MoELayer<Float> { model.layers[layer].moe! }
    public var moeLayers: [Int] { model.layers.indices.filter { model.layers[$0].moe != nil && model.layers[$0].moe!.config.router != .soft } }
    public func expertCount(layer: Int) -> Int { block(layer).experts.count }
    public func expertWidth(layer: Int) -> Int { block(layer).experts.hidden }
    public func routerWeights(layer: Int) -> Tensor<Float>? { block(layer).router.gate?.weight.value }
    public func router(layer: Int) -> Router<Float>? { block(layer).router }

    public func expertMatrices(layer: Int, expert e: Int) -> ExpertMatrices {
        let bank = block(layer).experts
        let f = bank.hidden, rows = bank.w1.shape[1], d = bank.w1.shape[2]
        // Expert e's slices only (`scalars` would copy every expert's weights for each expert asked for).
        let first = bank.w1.value.withUnsafePointer { Array(UnsafeBufferPointer(start: $0 + e * rows * d, count: rows * d)) }
        let down = bank.w2.value.withUnsafePointer { Array(UnsafeBufferPointer(start: $0 + e * d * f, count: d * f)) }
        if bank.gated {  // gate rows 0..<F, up rows F..<2F
            return ExpertMatrices(gate: Array(first[0..<(f * d)]), up: Array(first[(f * d)...]), down: down, width: f, hidden: d)
        }
        return ExpertMatrices(gate: nil, up: first, down: down, width: f, hidden: d)
    }

    public func makeRun(context: Int) -> AnalysisRun { ReferenceRun(self) }
}

final class ReferenceRun: AnalysisRun {
    let subject: ReferenceSubject
    var moeObserver: ((Int, Tensor<Float>, Routing<Float>) -> Void)?
    var routerOverrides: [Int: Router<Float>] = [:]
    init(_ subject: ReferenceSubject) { self.subject = subject }

    func logits(_ ids: [Int]) -> Tensor<Float> {
        let m = subject.model
        for i in subject.moeLayers {
            let block = m.layers[i].moe!
            block.routerOverride = routerOverrides[i]
            block.observer = moeObserver.map { f in { x, r in f(i, x, r) } }
        }
        defer { for i in subject.moeLayers { m.layers[i].moe!.routerOverride = nil; m.layers[i].moe!.observer = nil } }
        return m(ids: ids, batch: 1, .inference).logits.value
    }

    func expertOutput(layer: Int, expert e: Int, _ h: Tensor<Float>) -> Tensor<Float> { subject.block(layer).experts.output(expert: e, h) }

    func expertGateActivations(layer: Int, expert e: Int, _ h: Tensor<Float>) -> Tensor<Float> {
        subject.block(layer).experts.firstActivations(expert: e, h)
    }
}
