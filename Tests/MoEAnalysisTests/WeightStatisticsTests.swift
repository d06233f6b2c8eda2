import Foundation
import MoEAnalysis
import MoEIO
import MoETensor
import Testing

/// The static analyses' numbers against numpy and scipy (Tests/Fixtures/analysis/expected.json, written by
/// scripts/analysis_fixtures.py from the mixtral and qwen2_moe fixtures' weights), and the assignment solver
/// against scipy's linear_sum_assignment and against brute force.
@Suite struct WeightStatisticsTests {
    static let tests = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    nonisolated(unsafe) static let expected: [String: Any] = {
        let data = try! Data(contentsOf: tests.appendingPathComponent("Fixtures/analysis/expected.json"))
        return try! JSONSerialization.jsonObject(with: data) as! [String: Any]
    }()

    static func doubles(_ a: Any?) -> [Double] { (a as! [Any]).map { ($0 as! NSNumber).doubleValue } }
    static func matrix(_ a: Any?) -> [[Double]] { (a as! [Any]).map { doubles($0) } }
    static func ints(_ a: Any?) -> [Int] { (a as! [Any]).map { ($0 as! NSNumber).intValue } }

    @Test func assignmentMatchesScipy() throws {
        let cases = Self.expected["assignment"] as! [[String: Any]]
        #expect(cases.count == 10)
        for c in cases {
            let n = c["rows"] as! Int, m = c["columns"] as! Int, maximize = c["maximize"] as! Bool
            let r = try LinearAssignment.solve(Self.doubles(c["cost"]), rows: n, columns: m, maximize: maximize)
            let label = "\(n)x\(m) \(maximize ? "max" : "min")"
            #expect(abs(r.total - (c["total"] as! NSNumber).doubleValue) < 1e-9, "\(label): total \(r.total)")
            // Continuous random costs have one optimum, so the assignment itself must agree.
            #expect(r.rows == Self.ints(c["assigned_rows"]), "\(label)")
            #expect(r.columns == Self.ints(c["assigned_columns"]), "\(label)")
        }
    }

    /// Every permutation of small integer matrices (with ties): the solver's total equals the best of all.
    @Test func assignmentIsOptimalByExhaustion() throws {
        var rng = RandomGenerator(seed: 3)
        func permutations(_ n: Int) -> [[Int]] {
            if n == 0 { return [[]] }
            return permutations(n - 1).flatMap { p in (0...p.count).map { i in var q = p; q.insert(n - 1, at: i); return q } }
        }
        for n in 1...6 {
            for _ in 0..<20 {
                let cost = (0..<(n * n)).map { _ in Double(rng.next() % 7) }
                let best = permutations(n).map { p in p.enumerated().reduce(0.0) { $0 + cost[$1.offset * n + $1.element] } }.min()!
                let r = try LinearAssignment.solve(cost, rows: n, columns: n)
                #expect(r.total == best, "n \(n): \(r.total) vs \(best)")
                #expect(Set(r.columns).count == n)
            }
        }
    }

    @Test func assignmentRefusesBadInput() {
        #expect(throws: LinearAssignment.Failure.self) { try LinearAssignment.solve([1, .nan, 3, 4], rows: 2, columns: 2) }
        #expect(throws: LinearAssignment.Failure.self) { try LinearAssignment.solve([1, 2, 3], rows: 2, columns: 2) }
        #expect((try? LinearAssignment.solve([], rows: 0, columns: 3))?.rows == [])
    }

    @Test func kendallTauMatchesScipy() {
        let k = Self.expected["kendall"] as! [String: Any]
        let p = Self.ints(k["permutation"])
        #expect(abs(LinearAssignment.kendallTau(Array(0..<p.count), p) - (k["tau"] as! NSNumber).doubleValue) < 1e-12)
        #expect(LinearAssignment.kendallTau([0, 1, 2, 3], [0, 1, 2, 3]) == 1)
        #expect(LinearAssignment.kendallTau([0, 1, 2, 3], [3, 2, 1, 0]) == -1)
    }

    static let spellings: [String: (pattern: String, names: [String: String], router: String)] = [
        "mixtral": ("model.layers.L.block_sparse_moe.experts.E.M.weight", ["gate": "w1", "up": "w3", "down": "w2"], "model.layers.L.block_sparse_moe.gate.weight"),
        "qwen2_moe": ("model.layers.L.mlp.experts.E.M_proj.weight", ["gate": "gate", "up": "up", "down": "down"], "model.layers.L.mlp.gate.weight"),
    ]

    static func close(_ a: [[Double]], _ b: [[Double]], _ tol: Double) -> Bool {
        a.count == b.count && zip(a, b).allSatisfy { x, y in x.count == y.count && zip(x, y).allSatisfy { abs($0 - $1) <= tol } }
    }

    /// PCA coordinates agree up to each component's sign.
    static func closeUpToSign(_ a: [[Double]], _ b: [[Double]], _ tol: Double) -> Bool {
        guard a.count == b.count, let k = a.first?.count else { return false }
        return (0..<k).allSatisfy { c in
            let s: Double = zip(a, b).map { $0[c] * $1[c] }.reduce(0, +) < 0 ? -1 : 1
            return zip(a, b).allSatisfy { abs($0[c] - s * $1[c]) <= tol * Swift.max(1, abs($1[c])) }
        }
    }

    @Test(arguments: ["mixtral", "qwen2_moe"])
    func staticAnalysesMatchNumpy(family: String) throws {
        let model = (Self.expected["models"] as! [[String: Any]]).first { $0["family"] as! String == family }!
        let file = try SafetensorsFile(path: Self.tests.appendingPathComponent("Fixtures/hf/\(family)/model.safetensors").path)
        let spelling = Self.spellings[family]!
        func weights(_ name: String) throws -> (values: [Float], shape: [Int]) {
            let t = try file.tensor(name, as: Float.self)
            return (t.scalars, t.shape)
        }
        for layer in model["layers"] as! [[String: Any]] {
            let l = layer["layer"] as! Int
            let router = try weights(spelling.router.replacingOccurrences(of: "L", with: "\(l)"))
            let e = router.shape[0], d = router.shape[1]
            let routerRows = (0..<e).map { i in router.values[(i * d)..<((i + 1) * d)].map(Double.init) }
            let routerCos = WeightStatistics.cosineMatrix(routerRows)
            #expect(Self.close(routerCos, Self.matrix(layer["router"]), 1e-9), "\(family) layer \(l) router")
            for entry in layer["matrices"] as! [[String: Any]] {
                let m = entry["matrix"] as! String
                let label = "\(family) layer \(l) \(m)"
                let name = { (x: Int) in
                    spelling.pattern.replacingOccurrences(of: "L", with: "\(l)").replacingOccurrences(of: ".E.", with: ".\(x).")
                        .replacingOccurrences(of: "M", with: spelling.names[m]!)
                }
                let ws = try (0..<e).map { try weights(name($0)) }
                let bank = WeightStatistics.Bank(ws.map(\.values), rows: ws[0].shape[0], cols: ws[0].shape[1])
                let axis: WeightStatistics.NeuronAxis = m == "down" ? .columns : .rows
                #expect(Self.close(WeightStatistics.matrixSimilarity(bank), Self.matrix(entry["cosine"]), 1e-9), "\(label) cosine")
                let neuron = WeightStatistics.neuronSimilarity(bank, axis: axis)
                #expect(Self.close(neuron, Self.matrix(entry["neuron_cosine"]), 1e-9), "\(label) neuron cosine")
                for pair in entry["aligned"] as! [[String: Any]] {
                    let a = pair["a"] as! Int, b = pair["b"] as! Int
                    let r = try WeightStatistics.align(bank.matrices[a], bank.matrices[b], rows: bank.rows, cols: bank.cols, axis: axis)
                    #expect(r.permutation == Self.ints(pair["permutation"]), "\(label) \(a)-\(b) permutation")
                    #expect(abs(r.similarity - (pair["similarity"] as! NSNumber).doubleValue) < 1e-9, "\(label) \(a)-\(b) aligned similarity")
                    #expect(abs(r.kendallTau - (pair["kendall_tau"] as! NSNumber).doubleValue) < 1e-12, "\(label) \(a)-\(b) tau")
                }
                let reg = try #require(WeightStatistics.regression(x: WeightStatistics.lowerTriangle(neuron), y: WeightStatistics.lowerTriangle(routerCos)))
                let want = entry["router_regression"] as! [String: Any]
                #expect(abs(reg.slope - (want["slope"] as! NSNumber).doubleValue) < 1e-9, "\(label) slope")
                #expect(abs(reg.intercept - (want["intercept"] as! NSNumber).doubleValue) < 1e-9, "\(label) intercept")
                #expect(abs(reg.r2 - (want["r2"] as! NSNumber).doubleValue) < 1e-9, "\(label) r2")
                // PCA: experts flattened (neurons as rows), and all neurons of all experts.
                let neurons = bank.matrices.map { WeightStatistics.neuronRows($0, rows: bank.rows, cols: bank.cols, axis: axis) }
                let experts = try WeightStatistics.pca(longRows: bank.matrices)
                let general = try WeightStatistics.pca(neurons.flatMap { $0 }, rows: e, columns: neurons[0].count)
                #expect(Self.closeUpToSign(general.points, Self.matrix(entry["pca_experts"]), 1e-7), "\(label) expert PCA, general path")
                #expect(Self.closeUpToSign(experts.points, Self.matrix(entry["pca_experts"]), 1e-7), "\(label) expert PCA")
                #expect(Self.close([experts.explained], [Self.doubles(entry["pca_experts_explained"])], 1e-9), "\(label) expert PCA shares")
                let width = axis == .rows ? bank.cols : bank.rows
                let all = neurons.flatMap { $0 }
                let neuronPCA = try WeightStatistics.pca(all, rows: all.count / width, columns: width)
                #expect(Self.closeUpToSign(neuronPCA.points, Self.matrix(entry["pca_neurons"]), 1e-7), "\(label) neuron PCA")
                #expect(Self.close([neuronPCA.explained], [Self.doubles(entry["pca_neurons_explained"])], 1e-9), "\(label) neuron PCA shares")
            }
        }
    }
}
