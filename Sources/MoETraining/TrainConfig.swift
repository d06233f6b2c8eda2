/// Everything a training run needs besides the model config; saved in each checkpoint.
public struct TrainConfig: Codable, Sendable, Equatable {
    public var steps = 2000
    public var batch = 16
    public var sequence = 128
    public var learningRate = 3e-3
    public var minLearningRate = 3e-4
    public var warmup = 60
    public var weightDecay = 0.1
    public var clipNorm = 1.0
    public var logEvery = 25
    public var evalEvery = 200
    public var evalBatches = 6
    public var checkpointEvery = 400
    public var keepCheckpoints = 3
    public var seed: UInt64 = 1
    /// A user's data file; nil is the built-in corpus.
    public var data: String? = nil

    enum CodingKeys: String, CodingKey {
        case steps, batch, sequence, learningRate = "learning_rate", minLearningRate = "min_learning_rate", warmup
        case weightDecay = "weight_decay", clipNorm = "clip_norm", logEvery = "log_every", evalEvery = "eval_every"
        case evalBatches = "eval_batches", checkpointEvery = "checkpoint_every", keepCheckpoints = "keep_checkpoints", seed, data
    }

    public init() {}

    public var schedule: WarmupCosine { WarmupCosine(peak: learningRate, minimum: minLearningRate, warmup: warmup, total: steps) }

    public func validate() throws(ConfigError) {
        try ConfigError.check(steps >= 1 && steps <= 10_000_000, "steps", steps, "use between 1 and 10000000 steps")
        try ConfigError.check(batch >= 1 && batch <= 4096, "batch", batch, "use a batch between 1 and 4096 sequences")
        try ConfigError.check(sequence >= 2 && sequence <= 8192, "sequence", sequence, "use a sequence length between 2 and 8192")
        try ConfigError.check(learningRate > 0 && learningRate < 10, "lr", learningRate, "use a learning rate such as 3e-3")
        try ConfigError.check(minLearningRate >= 0 && minLearningRate <= learningRate, "min-lr", minLearningRate, "use a value between 0 and the learning rate")
        try ConfigError.check(warmup >= 0 && warmup <= steps, "warmup", warmup, "use between 0 and the number of steps")
        try ConfigError.check(weightDecay >= 0 && weightDecay < 1, "weight-decay", weightDecay, "use a value in [0, 1)")
        try ConfigError.check(clipNorm > 0, "clip", clipNorm, "use a positive gradient-norm limit such as 1")
        try ConfigError.check(logEvery >= 1, "log-every", logEvery, "use 1 or more")
        try ConfigError.check(evalEvery >= 1, "eval-every", evalEvery, "use 1 or more")
        try ConfigError.check(evalBatches >= 1, "eval-batches", evalBatches, "use 1 or more")
        try ConfigError.check(checkpointEvery >= 1, "checkpoint-every", checkpointEvery, "use 1 or more")
        try ConfigError.check(keepCheckpoints >= 1, "keep", keepCheckpoints, "keep at least 1 checkpoint")
    }
}

/// The default model: 4 layers of D 128 with 4 heads (2 KV heads) and, per layer, 16 SwiGLU experts of
/// width 64 with top-2 softmax routing (renormalized) and a Switch balancing loss of coefficient 0.1 taken per
/// layer and averaged (not pooled over the layers as transformers computes it). The
/// dense baseline keeps the same active parameters per token: one SwiGLU of width k * F = 128.
public enum DefaultModel {
    public static func config(
        dense: Bool = false, dim: Int = 128, layers: Int = 4, heads: Int = 4, kvHeads: Int = 2, experts: Int = 16,
        topK: Int = 2, expertHidden: Int = 64, sharedHidden: Int = 0, router: RouterKind = .softmaxTopK, auxLossCoef: Double = 0.1
    ) -> TransformerConfig {
        var moe = MoEConfig(hiddenSize: dim, expertHiddenSize: expertHidden, numExperts: experts, expertsPerToken: topK, router: router)
        moe.auxLossCoef = auxLossCoef
        moe.auxLossScope = .perLayer
        moe.sharedExpertHiddenSize = sharedHidden
        if router == .grouped {
            moe.scoreFunction = .sigmoid
            moe.selectionBias = true
            moe.auxLossCoef = 0
        }
        var c = TransformerConfig(
            vocabSize: ByteTokenizer.vocabularySize, hiddenSize: dim, numLayers: layers, numHeads: heads, numKVHeads: kvHeads,
            headDim: dim / max(heads, 1), intermediateSize: topK * expertHidden + sharedHidden, moe: dense ? nil : moe)
        c.maxPositions = 1024
        return c
    }
}
