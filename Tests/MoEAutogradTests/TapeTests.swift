import MoETestSupport
import Testing

@Suite("tape")
struct TapeTests {
    @Test func gradientsAccumulateByPath() {
        // The same parameter used twice (tied weights): its gradient is the sum of both uses.
        let tape = Tape<Double>()
        let w1 = tape.parameter(Tensor(shape: [2], [1, 2]), path: "tied.weight")
        let w2 = tape.parameter(Tensor(shape: [2], [1, 2]), path: "tied.weight")
        let x = Variable(Tensor<Double>(shape: [2], [3, 5]))
        let y = (w1 * x).sum() + (w2 * w2).sum()
        let g = tape.backward(y).byPath["tied.weight"]!
        #expect(g.scalars == [3 + 2, 5 + 4])
    }

    @Test func inferenceRecordsNothing() {
        let x = Variable(TestSupport.randn([3, 4], seed: 1))
        let y = (x.matmul(x, transposeB: true).softmax() * 2).sum()
        #expect(y.tape == nil)
        #expect(y.id == -1)
    }

    @Test func constantsReceiveNoGradient() {
        let tape = Tape<Double>()
        let a = tape.input(Tensor(shape: [2], [1, 2]))
        let c = Variable(Tensor<Double>(shape: [2], [4, 4]))
        let grads = tape.backward((a * c).sum())
        #expect(grads[a]!.scalars == [4, 4])
        #expect(grads[c] == nil)
    }

    @Test func accumulateAcrossBackwardPasses() {
        var store: [String: Tensor<Double>] = [:]
        for scale in [1.0, 2.0] {
            let tape = Tape<Double>()
            let w = tape.parameter(Tensor(shape: [1], [1]), path: "w")
            tape.backward(w * scale).accumulate(into: &store)
        }
        #expect(store["w"]!.scalars == [3])
    }

    @Test func interiorNodesAreFreedAfterBackward() {
        // The tape's nodes capture tensors, not variables: dropping the tape frees them (no cycles).
        weak var weakTape: Tape<Double>?
        do {
            let tape = Tape<Double>()
            weakTape = tape
            let a = tape.input(TestSupport.randn([3], seed: 2))
            _ = tape.backward((a * a).sum())
        }
        #expect(weakTape == nil)
    }
}
