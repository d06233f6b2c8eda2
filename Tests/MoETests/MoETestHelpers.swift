import MoETestSupport

/// Builds a small block in Double with the given router settings.
func makeLayer(
    _ router: RouterKind = .softmaxTopK, d: Int = 6, f: Int = 5, e: Int = 4, k: Int = 2, seed: UInt64 = 1,
    causal: Bool = false, _ edit: (inout MoEConfig) -> Void = { _ in }
) -> MoELayer<Double> {
    var c = MoEConfig(hiddenSize: d, expertHiddenSize: f, numExperts: e, expertsPerToken: k, router: router)
    edit(&c)
    var rng = RandomGenerator(seed: seed)
    do {
        let layer = try MoELayer<Double>(config: c, path: "mlp", causal: causal, rng: &rng)
        // Spread the router weights so routing decisions have clear margins.
        if let g = layer.router.gate { g.weight.value = TestSupport.randn(g.weight.shape, seed: seed + 100) }
        return layer
    } catch {
        preconditionFailure("\(error)")
    }
}

/// Every parameter of `layer` as an input tensor, plus the input x first.
func inputs(_ layer: MoELayer<Double>, x: Tensor<Double>) -> (tensors: [Tensor<Double>], paths: [String]) {
    ([x] + layer.parameters.map(\.value), layer.parameters.map(\.path))
}

/// Runs the block functionally: vars[0] is x, the rest bind the parameters by path.
func runBound(
    _ layer: MoELayer<Double>, _ vars: [Variable<Double>], paths: [String], options: RouteOptions = .inference,
    reference: Bool = false
) -> MoEOutput<Double> {
    var bindings: [String: Variable<Double>] = [:]
    for (p, v) in zip(paths, vars.dropFirst()) { bindings[p] = v }
    return layer(vars[0], ForwardContext(tape: nil, bindings: bindings), options: options, reference: reference)
}

/// Output and gradients (x and every parameter) of the fused and the reference path, on the same seed R.
func fusedAndReference(
    _ layer: MoELayer<Double>, x: Tensor<Double>, options: () -> RouteOptions = { .inference }
) -> (fused: [Tensor<Double>], reference: [Tensor<Double>]) {
    let (tensors, paths) = inputs(layer, x: x)
    func run(_ reference: Bool) -> [Tensor<Double>] {
        let tape = Tape<Double>()
        let vars = tensors.map { tape.input($0) }
        let out = runBound(layer, vars, paths: paths, options: options(), reference: reference).output
        let g = tape.backward(out, seed: TestSupport.randn(out.shape, seed: 77))
        return [out.value] + vars.map { g[$0] ?? .zeros($0.shape) }
    }
    return (run(false), run(true))
}

func maxDifference(_ a: [Tensor<Double>], _ b: [Tensor<Double>]) -> Double {
    zip(a, b).map { $0.maxAbsDifference($1) }.max() ?? 0
}
