import MoETensor

extension Variable {
    /// Softmax over the last axis. VJP: y * (g - sum(g y)).
    public func softmax() -> Variable {
        let y = value.softmax()
        return Variable.result(y, self) { { g in [Tensor.softmaxBackward(y: y, upstream: g)] } }
    }

    /// Log-softmax over the last axis. VJP: g - softmax * sum(g).
    public func logSoftmax() -> Variable {
        let y = value.logSoftmax()
        return Variable.result(y, self) { { g in [Tensor.logSoftmaxBackward(y: y, upstream: g)] } }
    }

    /// Log-sum-exp over `axis` (composed; the max shift is a constant, so its gradient cancels exactly).
    public func logSumExp(axis: Int, keepDims: Bool = false) -> Variable {
        let m = Variable(value.max(axis: axis, keepDims: true).values)
        let s = (self - m).exp().sum(axis: axis, keepDims: true).log() + m
        return keepDims ? s : s.reshaped(shape.enumerated().filter { $0.offset != Shape.axis(axis, rank: rank, op: "lse") }.map(\.element))
    }

    /// Fused mean cross-entropy of logits [N, V] against `targets` [N]; rows whose target equals
    /// `ignoreIndex` are skipped (and the mean is over the rest), as in PyTorch.
    public static func crossEntropy(_ logits: Variable, targets: [Int], ignoreIndex: Int = -100) -> Variable {
        let x = logits.value
        let (loss, lse, valid) = Tensor.crossEntropy(logits: x, targets: targets, ignoreIndex: ignoreIndex)
        return result(Tensor(loss), logits) {
            { g in
                [Tensor.crossEntropyBackward(
                    logits: x, targets: targets, ignoreIndex: ignoreIndex, logSumExp: lse, valid: valid,
                    upstream: g.item)]
            }
        }
    }
}
