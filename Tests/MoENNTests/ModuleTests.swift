import MoETestSupport
import Testing

@Suite("modules")
struct ModuleTests {
    @Test func linearMatchesManualProductAndStoresOutIn() {
        var rng = RandomGenerator(seed: 1)
        let lin = Linear<Double>(4, 3, path: "proj", rng: &rng)
        #expect(lin.weight.shape == [3, 4])
        #expect(lin.parameters.map(\.path) == ["proj.weight", "proj.bias"])
        let bound = 1 / 2.0
        #expect(lin.weight.value.scalars.allSatisfy { abs($0) <= bound })
        let x = TestSupport.randn([5, 4], seed: 2)
        let y = lin(Variable(x), .inference).value
        let expected = TestSupport.naiveMatmul(x, lin.weight.value, tb: true) + lin.bias!.value
        #expect(y.maxAbsDifference(expected) < 1e-12)
        // Leading axes fold into one product.
        let y3 = lin(Variable(x.reshaped([5, 1, 4])), .inference).value
        #expect(y3.shape == [5, 1, 3])
    }

    @Test func swiGLUGradientsMatchFiniteDifferences() {
        var rng = RandomGenerator(seed: 3)
        let mlp = SwiGLU<Double>(4, hidden: 6, path: "mlp", rng: &rng)
        #expect(mlp.parameters.map(\.path) == ["mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight"])
        let inputs = [TestSupport.randn([3, 4], seed: 4)] + mlp.parameters.map(\.value)
        let report = GradientCheck.check(inputs) { v in
            let ctx = ForwardContext<Double>.inference
            _ = ctx
            let h = Variable.matmul(v[0], v[1], transposeB: true).silu() * Variable.matmul(v[0], v[2], transposeB: true)
            return Variable.matmul(h, v[3], transposeB: true)
        }
        #expect(report.maxError < 1e-6)
        // The module computes exactly that composition.
        let x = inputs[0]
        let direct = mlp(Variable(x), .inference).value
        let h = (Tensor.matmul(x, inputs[1], transposeB: true).unary(.silu)) * Tensor.matmul(x, inputs[2], transposeB: true)
        #expect(direct.maxAbsDifference(Tensor.matmul(h, inputs[3], transposeB: true)) < 1e-12)
    }

    @Test func parameterGradientsAreKeyedByPath() {
        var rng = RandomGenerator(seed: 5)
        let mlp = MLP<Double>(3, hidden: 4, 2, activation: .gelu, path: "net", rng: &rng)
        let norm = LayerNorm<Double>(2, path: "net.norm")
        let tape = Tape<Double>()
        let ctx = ForwardContext(tape: tape)
        let loss = norm(mlp(Variable(TestSupport.randn([5, 3], seed: 6)), ctx), ctx).square().mean()
        let grads = tape.backward(loss).byPath
        #expect(Set(grads.keys) == Set((mlp.parameters + norm.parameters).map(\.path)))
        for p in mlp.parameters { #expect(grads[p.path]!.shape == p.shape) }
    }

    @Test func embeddingAndRMSNorm() {
        var rng = RandomGenerator(seed: 7)
        let emb = Embedding<Float>(10, 4, path: "embed", rng: &rng)
        let out = emb([1, 2, 3, 9, 0, 0], shape: [2, 3], .inference)
        #expect(out.shape == [2, 3, 4])
        #expect(out.value[1, 0, 2] == emb.weight.value[9, 2])
        let norm = RMSNorm<Float>(4, path: "norm")
        let y = norm(out, .inference).value
        let row = (0..<4).map { y[0, 0, $0] }
        #expect(abs(row.map { $0 * $0 }.reduce(0, +) / 4 - 1) < 1e-3)
    }
}
