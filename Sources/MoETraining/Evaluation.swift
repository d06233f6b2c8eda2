/// Held-out evaluation: validation loss, bits per byte and exact-match arithmetic on unseen problems.
public struct EvaluationReport: Codable, Sendable {
    public let validationLoss: Double
    public let bitsPerByte: Double
    public let arithmeticAccuracy: Double?
    public let arithmeticProblems: Int
    /// Validation loss per domain of the built-in corpus (nats per byte).
    public let domainLoss: [String: Double]?

    enum CodingKeys: String, CodingKey {
        case validationLoss = "val_loss", bitsPerByte = "bits_per_byte", arithmeticAccuracy = "arithmetic_accuracy"
        case arithmeticProblems = "arithmetic_problems", domainLoss = "domain_loss"
    }
}

public enum Evaluation {
    public static func run(
        _ model: MoETransformer<Float>, data: TextDataset, config: TrainConfig, arithmeticProblems: Int = 200
    ) -> EvaluationReport {
        let builtInCorpus = config.data == nil
        let loss = validationLoss(model, data: data, config: config)
        var accuracy: Double? = nil
        if builtInCorpus {
            accuracy = arithmetic(model, problems: SyntheticCorpus.heldOutProblems(seed: config.seed, count: arithmeticProblems))
        }
        let domains = builtInCorpus ? domainLoss(model, documents: data.validationDocuments, window: config.sequence) : nil
        // One token is one byte, so bits per byte is the loss in bits.
        return EvaluationReport(
            validationLoss: loss, bitsPerByte: loss / Double.log(2), arithmeticAccuracy: accuracy,
            arithmeticProblems: builtInCorpus ? arithmeticProblems : 0, domainLoss: domains)
    }

    /// Mean cross-entropy per domain over up to `perDomain` validation documents of it, scored in windows
    /// of the training sequence length (positions beyond it were never trained).
    public static func domainLoss(
        _ model: MoETransformer<Float>, documents: [SyntheticCorpus.Document], window: Int, perDomain: Int = 100
    ) -> [String: Double] {
        let tok = ByteTokenizer()
        var out: [String: Double] = [:]
        for domain in Domain.allCases {
            let docs = documents.filter { $0.domain == domain }.prefix(perDomain)
            guard !docs.isEmpty else { continue }
            let ids = tok.encode("\n" + docs.map { $0.text + "\n" }.joined())
            let window = min(ids.count - 1, window)
            var total = 0.0, count = 0
            var start = 0
            while start + 1 < ids.count {
                let len = min(window, ids.count - 1 - start)
                let x = Array(ids[start..<(start + len)]), y = Array(ids[(start + 1)...(start + len)])
                let l = Variable.crossEntropy(model(ids: x, batch: 1, .inference).logits, targets: y).value.item
                total += Double(l) * Double(len)
                count += len
                start += len
            }
            out[domain.rawValue] = total / Double(max(count, 1))
        }
        return out
    }

    /// Mean cross-entropy over `evalBatches` x `batch` windows spread evenly over the validation tokens
    /// (the same windows every time, so values are comparable across steps and runs).
    public static func validationLoss(_ model: MoETransformer<Float>, data: TextDataset, config c: TrainConfig) -> Double {
        let batches = validationBatches(data, config: c)
        guard !batches.isEmpty else { return .nan }
        var total = 0.0
        for (x, y) in batches {
            let out = model(ids: x, batch: c.batch, .inference)
            total += Double(Variable.crossEntropy(out.logits, targets: y).value.item)
        }
        return total / Double(c.evalBatches)
    }

    /// The fixed validation windows: `evalBatches` batches of `batch` windows of `sequence` tokens spread evenly over
    /// the validation tokens, each as (inputs, targets) [batch × sequence]; empty when the validation set is
    /// shorter than a window.
    public static func validationBatches(_ data: TextDataset, config c: TrainConfig) -> [(inputs: [Int], targets: [Int])] {
        let n = data.validation.count - c.sequence - 1
        guard n > 0 else { return [] }
        let windows = c.evalBatches * c.batch
        return (0..<c.evalBatches).map { b in
            var x: [Int] = [], y: [Int] = []
            for i in 0..<c.batch {
                let start = (b * c.batch + i) * n / windows
                x += data.validation[start..<(start + c.sequence)]
                y += data.validation[(start + 1)...(start + c.sequence)]
            }
            return (x, y)
        }
    }

    /// Greedy completion of "a+b=" up to the newline, compared exactly with the sum.
    public static func arithmetic(_ model: MoETransformer<Float>, problems: [(prompt: String, answer: String)]) -> Double {
        let tok = ByteTokenizer()
        var options = SamplingOptions()
        options.temperature = 0
        options.maxNewTokens = 5
        options.stop = ["\n"]
        var correct = 0
        for p in problems {
            // The newline before the prompt starts a document, as in training.
            let out = Generator.generate(model, prompt: tok.encode("\n" + p.prompt), options: options)
            if tok.decode(out) == p.answer { correct += 1 }
        }
        return Double(correct) / Double(max(problems.count, 1))
    }
}
