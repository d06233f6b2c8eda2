import Foundation
import MoETensor

/// Quality on a text: cross-entropy per token, and against a baseline model on the same text (the f32 model a
/// quantized one came from) the top-1 agreement and the mean KL divergence of their next-token distributions,
/// as llama.cpp's perplexity tool reports them. The text is run in windows of `context` tokens, each from an
/// empty cache, one token at a time through the decode path (what generation runs).
public enum Perplexity {
    public struct Report: Codable, Sendable {
        public let tokens: Int
        public let crossEntropy: Double
        public let perplexity: Double
        public var baselineCrossEntropy: Double?
        public var topOneAgreement: Double?
        public var meanKL: Double?
    }

    /// log-softmax of one row of logits, in Double.
    public static func logSoftmax(_ row: UnsafeBufferPointer<Float>) -> [Double] {
        let m = Double(row.max() ?? 0)
        let lse = m + Foundation.log(row.reduce(0.0) { $0 + Foundation.exp(Double($1) - m) })
        return row.map { Double($0) - lse }
    }

    static func argmax(_ row: [Double]) -> Int { row.indices.max { row[$0] < row[$1] || (row[$0] == row[$1] && $0 > $1) } ?? 0 }

    public static func run(model: InferenceModel, baseline: InferenceModel?, tokens: [Int], context: Int) -> Report {
        var nll = 0.0, baseNLL = 0.0, agree = 0, kl = 0.0, scored = 0
        let session = InferenceSession(model: model, capacity: context)
        let baseSession = baseline.map { InferenceSession(model: $0, capacity: context) }
        for start in stride(from: 0, to: tokens.count - 1, by: context) {
            let window = Array(tokens[start..<Swift.min(tokens.count, start + context + 1)])
            session.reset()
            baseSession?.reset()
            for p in 0..<(window.count - 1) {
                let lp = session.forward([window[p]]).withUnsafeBufferPointer(logSoftmax)
                nll -= lp[window[p + 1]]
                if let b = baseSession {
                    let lq = b.forward([window[p]]).withUnsafeBufferPointer(logSoftmax)
                    baseNLL -= lq[window[p + 1]]
                    if argmax(lp) == argmax(lq) { agree += 1 }
                    for v in lq.indices { kl += Foundation.exp(lq[v]) * (lq[v] - lp[v]) }
                }
                scored += 1
            }
        }
        let n = Double(Swift.max(scored, 1))
        var r = Report(tokens: scored, crossEntropy: nll / n, perplexity: Foundation.exp(nll / n))
        if baseline != nil {
            r.baselineCrossEntropy = baseNLL / n
            r.topOneAgreement = Double(agree) / n
            r.meanKL = kl / n
        }
        return r
    }
}
