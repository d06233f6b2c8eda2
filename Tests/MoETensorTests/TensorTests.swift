import MoETestSupport
import Testing

@Suite("tensor core")
struct TensorTests {
    @Test func shapeErrorsNameTheOpAndShapes() throws {
        #expect(throws: ShapeError(op: "add", "shapes [2, 3] and [4, 5] do not broadcast")) {
            try Shape.broadcast([2, 3], [4, 5], op: "add")
        }
        #expect(try Shape.broadcast([2, 1, 3], [4, 1], op: "mul") == [2, 4, 3])
        #expect(ShapeError(op: "matmul", "inner dimensions differ: [2, 3] x [4, 5]").description
            == "[matmul] inner dimensions differ: [2, 3] x [4, 5]")
    }

    @Test func viewsShareStorageAndWritesCopy() {
        let a = Tensor<Float>(shape: [3, 2], [1, 2, 3, 4, 5, 6])
        let r = a.rows(1..<3)
        #expect(r.storage === a.storage)
        #expect(r.scalars == [3, 4, 5, 6])
        #expect(a.reshaped([2, -1]).shape == [2, 3])
        var b = a.reshaped([6])
        b[0] = 100  // copy-on-write: `a` is unchanged
        #expect(a[0, 0] == 1)
        #expect(b[0] == 100)
    }

    @Test func randomGeneratorIsReproducible() {
        var r1 = RandomGenerator(seed: 42), r2 = RandomGenerator(seed: 42), r3 = RandomGenerator(seed: 43)
        let a = Tensor<Float>.normal([100], rng: &r1), b = Tensor<Float>.normal([100], rng: &r2)
        let c = Tensor<Float>.normal([100], rng: &r3)
        #expect(a == b)
        #expect(a != c)
        var r4 = RandomGenerator(seed: 5)
        let p = r4.permutation(50)
        #expect(p.sorted() == Array(0..<50))
        #expect(p != Array(0..<50))
        // Moments of a large normal sample.
        var r5 = RandomGenerator(seed: 6)
        let n = Tensor<Double>.normal([200_000], rng: &r5)
        #expect(abs(n.sumAll() / 200_000) < 0.01)
        #expect(abs(n.sumOfSquares() / 200_000 - 1) < 0.01)
        let u = Tensor<Double>.uniform([200_000], low: -1, high: 3, rng: &r5)
        #expect(abs(u.sumAll() / 200_000 - 1) < 0.01)
        #expect(u.scalars.allSatisfy { $0 >= -1 && $0 < 3 })
    }

    struct MatmulCase: Sendable {
        let m, k, n: Int
    }

    @Test(arguments: [(1, 1, 1), (3, 5, 7), (17, 1, 9), (64, 33, 5), (1, 129, 2)])
    func matmulMatchesNaive(_ m: Int, _ k: Int, _ n: Int) {
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let a = TestSupport.randnF(ta ? [k, m] : [m, k], seed: 1)
            let b = TestSupport.randnF(tb ? [n, k] : [k, n], seed: 2)
            let fast = Tensor.matmul(a, b, transposeA: ta, transposeB: tb)
            let naive = TestSupport.naiveMatmul(a, b, ta: ta, tb: tb)
            #expect(fast.maxAbsDifference(naive) < 1e-4)
        }
    }

    @Test func foldedAndBatchedMatmul() {
        let a = TestSupport.randn([2, 3, 4], seed: 1), w = TestSupport.randn([5, 4], seed: 2)
        let y = Tensor.matmul(a, w, transposeB: true)
        #expect(y.shape == [2, 3, 5])
        for i in 0..<2 {
            #expect(y.row(i).maxAbsDifference(TestSupport.naiveMatmul(a.row(i), w, tb: true)) < 1e-12)
        }
        let b = TestSupport.randn([2, 4, 6], seed: 3)
        let z = Tensor.matmul(a, b)
        for i in 0..<2 {
            #expect(z.row(i).maxAbsDifference(TestSupport.naiveMatmul(a.row(i), b.row(i))) < 1e-12)
        }
    }

    @Test func broadcastingArithmetic() {
        let a = Tensor<Double>(shape: [2, 3], [1, 2, 3, 4, 5, 6])
        let row = Tensor<Double>(shape: [3], [10, 20, 30])
        let col = Tensor<Double>(shape: [2, 1], [100, 200])
        #expect((a + row).scalars == [11, 22, 33, 14, 25, 36])
        #expect((a * col).scalars == [100, 200, 300, 800, 1000, 1200])
        #expect((col - row).shape == [2, 3])
        #expect((col - row).scalars == [90, 80, 70, 190, 180, 170])
        #expect((a / Tensor(2)).scalars == [0.5, 1, 1.5, 2, 2.5, 3])
    }

    /// Large tensors take the multi-core paths; they must equal the single-thread reference.
    @Test func parallelPathsMatchReferences() {
        let x = TestSupport.randn([300, 1000], seed: 4)
        let y = TestSupport.randn([300, 1000], seed: 5)
        let sum = x + y
        let xs = x.scalars, ys = y.scalars
        #expect(sum.scalars == zip(xs, ys).map { $0 + $1 })
        let colSums = x.sum(axis: 0)
        for j in [0, 17, 999] {
            var s = 0.0
            for i in 0..<300 { s += x[i, j] }
            #expect(abs(colSums[j] - s) < 1e-9)
        }
        let rowSums = x.sum(axis: 1)
        var s = 0.0
        for j in 0..<1000 { s += x[123, j] }
        #expect(abs(rowSums[123] - s) < 1e-9)
        let sm = x.softmax().sum(axis: 1)
        #expect(sm.scalars.allSatisfy { abs($0 - 1) < 1e-12 })
        let silu = x.unary(.silu)
        #expect(abs(silu[7, 7] - x[7, 7] / (1 + Double.exp(-x[7, 7]))) < 1e-12)
    }

    @Test func layoutOps() {
        let a = Tensor<Double>(shape: [2, 3], [1, 2, 3, 4, 5, 6])
        #expect(a.transposed().scalars == [1, 4, 2, 5, 3, 6])
        let t = TestSupport.randn([2, 3, 4], seed: 1)
        let p = t.permuted([2, 0, 1])
        #expect(p.shape == [4, 2, 3])
        #expect(p[3, 1, 2] == t[1, 2, 3])
        #expect(p.permuted([1, 2, 0]) == t)
        let parts = t.split(sizes: [1, 3], axis: 2)
        #expect(Tensor.concat(parts, axis: 2) == t)
        #expect(parts[1][1, 2, 0] == t[1, 2, 1])
    }

    @Test func indexOps() {
        let x = Tensor<Double>(shape: [3, 2], [1, 2, 3, 4, 5, 6])
        #expect(x.indexSelect([2, 0, 2]).scalars == [5, 6, 1, 2, 5, 6])
        let added = Tensor<Double>.zeros([3, 2]).scatterAdd([1, 1, 0], Tensor(shape: [3, 2], [1, 1, 2, 2, 3, 3]))
        #expect(added.scalars == [3, 3, 3, 3, 0, 0])
        #expect(x.gather(lastAxis: [1, 1, 0, 1, 0, 0], k: 2).scalars == [2, 2, 3, 4, 5, 5])
    }

    @Test func topKMatchesSorting() {
        let x = TestSupport.randn([7, 50], seed: 8)
        for k in [1, 2, 6, 33, 50] {
            let (v, idx) = x.topK(k)
            for r in 0..<7 {
                let row = (0..<50).map { x[r, $0] }
                let order = row.indices.sorted { row[$0] > row[$1] }
                #expect(Array(idx[(r * k)..<((r + 1) * k)]) == Array(order.prefix(k)))
                #expect(v[r, k - 1] == row[order[k - 1]])
            }
        }
        // Ties keep the lower index first.
        let tied = Tensor<Float>(shape: [1, 4], [1, 3, 3, 0])
        #expect(tied.topK(2).indices == [1, 2])
    }

    @Test func crossEntropyValue() {
        let logits = Tensor<Double>(shape: [2, 3], [1, 2, 3, 0, 0, 0])
        let (loss, _, valid) = Tensor.crossEntropy(logits: logits, targets: [2, -100], ignoreIndex: -100)
        #expect(valid == 1)
        let expected = -(3 - Double.log(Double.exp(1) + Double.exp(2) + Double.exp(3)))
        #expect(abs(loss - expected) < 1e-12)
    }

    @Test func floatAndDoubleAgree() {
        let xd = TestSupport.randn([5, 9], seed: 11)
        let xf = Tensor<Float>(converting: xd)
        let a = Tensor<Double>(converting: xf.logSoftmax())
        #expect(a.maxAbsDifference(xd.logSoftmax()) < 1e-5)
    }
}

@Suite("fast kernels against references")
struct FastKernelTests {
    @Test func fastExpMatchesLibm() {
        var worst: Float = 0
        var x: Float = -87
        while x < 88.7 {
            let ref = Float(Double.exp(Double(x)))
            worst = max(worst, abs(Float.fastExp(x) - ref) / ref)
            x += 0.0137
        }
        #expect(worst < 3e-7)
        #expect(Float.fastExp(-100) == 0)
        #expect(Float.fastExp(0) == 1)
        #expect(Float.fastExp(.nan).isNaN)
        #expect(Float.fastExp(-.infinity) == 0)
    }

    @Test func floatSoftmaxAndSigmoidMatchDouble() {
        let xd = TestSupport.randn([64, 300], seed: 3, scale: 6)
        let xf = Tensor<Float>(converting: xd)
        #expect(Tensor<Double>(converting: xf.softmax()).maxAbsDifference(xd.softmax()) < 1e-6)
        #expect(Tensor<Double>(converting: xf.unary(.sigmoid)).maxAbsDifference(xd.unary(.sigmoid)) < 1e-6)
        #expect(Tensor<Double>(converting: xf.unary(.silu)).maxAbsDifference(xd.unary(.silu)) < 1e-5)
    }
}
