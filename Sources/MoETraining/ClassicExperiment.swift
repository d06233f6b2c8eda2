import MoE

/// Training the 1991 mixture of local experts on the vowel task, with either objective.
public struct ClassicConfig: Codable, Sendable, Equatable {
    public var experts = 4
    /// Hidden units per expert; 0 makes each expert linear, as in the paper's vowel experiments.
    public var hidden = 0
    public var steps = 2000
    public var learningRate = 0.02
    public var seed: UInt64 = 1

    public init() {}

    public func validate() throws(ConfigError) {
        try ConfigError.check(experts >= 1 && experts <= 64, "experts", experts, "use between 1 and 64 experts")
        try ConfigError.check(hidden >= 0 && hidden <= 1024, "hidden", hidden, "use 0 (linear experts) to 1024 hidden units")
        try ConfigError.check(steps >= 1 && steps <= 1_000_000, "steps", steps, "use between 1 and 1000000 steps")
        try ConfigError.check(
            learningRate > 0 && learningRate <= 10 && learningRate.isFinite, "learning rate", learningRate,
            "use a positive learning rate such as 0.02")
    }
}

public struct ClassicResult: Sendable {
    public let loss: ClassicMixture<Float>.Loss
    public let finalLoss: Double
    public let trainAccuracy: Double
    public let testAccuracy: Double
    /// Test accuracy when each input is answered by its top-gated expert's own output alone. High only if
    /// the experts are local solutions in their own right (competitive); the cooperative loss lets each
    /// expert lean on the others' residuals.
    public let winnerAloneAccuracy: Double
    /// Gate probabilities on the test set, [N][E].
    public let testGates: [[Double]]
    public let testSamples: [VowelData.Sample]
    /// Training loss every 50 steps.
    public let lossCurve: [Double]
}

public enum ClassicExperiment {
    /// Trains one mixture with the given objective (full batch, Adam) and evaluates it.
    public static func run(
        _ config: ClassicConfig, loss kind: ClassicMixture<Float>.Loss, data: VowelData,
        progress: ((Int, Double) -> Void)? = nil
    ) -> ClassicResult {
        var rng = RandomGenerator(seed: config.seed)
        let model = ClassicMixture<Float>(
            inputs: 3, outputs: VowelData.vowels.count, experts: config.experts, hidden: config.hidden, rng: &rng)
        let (x, y) = data.tensors(data.train, as: Float.self)
        var opt = AdamW<Float>(weightDecay: 0)
        var curve: [Double] = []
        var last = 0.0
        for step in 0..<config.steps {
            let tape = Tape<Float>()
            let ctx = ForwardContext(tape: tape)
            let l = model.loss(kind, x: Variable(x), target: Variable(y), ctx)
            last = Double(l.value.item)
            let grads = tape.backward(l).byPath
            opt.step(model.parameters, gradients: grads, lr: Float(config.learningRate))
            if step % 50 == 0 || step == config.steps - 1 {
                curve.append(last)
                progress?(step, last)
            }
        }
        let (trainAcc, _, _) = evaluate(model, data: data, samples: data.train)
        let (testAcc, gates, winnerAcc) = evaluate(model, data: data, samples: data.test)
        return ClassicResult(
            loss: kind, finalLoss: last, trainAccuracy: trainAcc, testAccuracy: testAcc,
            winnerAloneAccuracy: winnerAcc, testGates: gates,
            testSamples: data.test, lossCurve: curve)
    }

    /// Accuracy of the blended output's argmax, the gate probabilities per sample, and the accuracy of the
    /// top-gated expert's own output.
    static func evaluate(
        _ model: ClassicMixture<Float>, data: VowelData, samples: [VowelData.Sample]
    ) -> (accuracy: Double, gates: [[Double]], winnerAlone: Double) {
        let (x, _) = data.tensors(samples, as: Float.self)
        let (logGates, outputs) = model.forward(Variable(x), .inference)
        let blended = ClassicMixture.blend(logGates: logGates, outputs: outputs).value
        let predicted = blended.max(axis: 1).indices
        let correct = zip(predicted, samples).filter { $0.0 == $0.1.vowel }.count
        let p = logGates.value.unary(.exp)
        let e = model.expertCount
        let gates = (0..<samples.count).map { i in (0..<e).map { Double(p[i, $0]) } }
        let winners = logGates.value.max(axis: 1).indices
        let classes = VowelData.vowels.count
        let o = outputs.value  // [N, E, C]
        var winnerCorrect = 0
        for (i, s) in samples.enumerated() {
            let best = (0..<classes).max { o[i, winners[i], $0] < o[i, winners[i], $1] } ?? 0
            if best == s.vowel { winnerCorrect += 1 }
        }
        let n = Double(max(samples.count, 1))
        return (Double(correct) / n, gates, Double(winnerCorrect) / n)
    }
}
