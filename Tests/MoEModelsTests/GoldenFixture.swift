import Foundation
import MoEModels
import Testing

/// Checks a loaded model against a golden `expected.json` written from transformers (the shared fixtures and
/// the project's own use one format): logits, router logits, chosen experts and their weights, the hidden
/// state after each layer, and greedy generation with and without the KV cache.
enum GoldenFixture {
    static let tolerance = 1e-4

    /// Python's json writes -Infinity / NaN, which strict JSON rejects; they become null (those entries are
    /// masked logits, not compared).
    static func readJSON(_ url: URL) throws -> [String: Any] {
        let text = try String(contentsOf: url, encoding: .utf8)
            .replacingOccurrences(of: "-Infinity", with: "null").replacingOccurrences(of: "Infinity", with: "null")
            .replacingOccurrences(of: "NaN", with: "null")
        return try JSONSerialization.jsonObject(with: Data(text.utf8)) as! [String: Any]
    }

    static func maxDiff(_ t: Tensor<Float>, _ rows: [[Double]], rowOffset: Int = 0) -> Double {
        var worst = 0.0
        for (r, row) in rows.enumerated() {
            for (c, v) in row.enumerated() { worst = max(worst, abs(Double(t[rowOffset + r, c]) - v)) }
        }
        return worst
    }

    static func check(model: MoETransformer<Float>, expected e: [String: Any], sourceLocation: SourceLocation = #_sourceLocation) throws {
        let ids = e["input_ids"] as! [[Int]]
        let (b, t) = (ids.count, ids[0].count)
        let out = model(ids: ids.flatMap { $0 }, batch: b, .inference, collectHiddenStates: true)
        let logits = e["logits"] as! [[[Double]]]
        var worst = 0.0
        for s in 0..<b { worst = max(worst, maxDiff(out.logits.value, logits[s], rowOffset: s * t)) }
        #expect(worst < tolerance, "logits: max abs difference \(worst)", sourceLocation: sourceLocation)

        // Router logits and the chosen experts, MoE layer by MoE layer.
        let routerLogits = e["router_logits"] as? [[[Double]]] ?? []
        let routing = e["routing"] as? [[String: Any]] ?? []
        #expect(out.moe.count == routing.count, "MoE layers: \(out.moe.count) vs \(routing.count)", sourceLocation: sourceLocation)
        for (layer, r) in routing.enumerated() where layer < out.moe.count {
            let mine = out.moe[layer].routing
            let chosen = (r["top_k_index"] as! [[Int]]).map { Set($0) }
            #expect(mine.keptIndices.map { Set($0) } == chosen, "layer \(layer): chosen experts differ", sourceLocation: sourceLocation)
            if layer < routerLogits.count, let l = mine.logits {
                let d = maxDiff(l.value.reshaped([-1, l.shape[l.rank - 1]]), routerLogits[layer])
                #expect(d < tolerance, "layer \(layer): router logits differ by \(d)", sourceLocation: sourceLocation)
            }
            // The weights each chosen expert's output is scaled by.
            if let w = r["top_k_weights"] as? [[Double]], let idx = r["top_k_index"] as? [[Int]] {
                var weightDiff = 0.0
                let weights = mine.weights.value.scalars
                var byPair: [Int: Double] = [:]
                for (a, (tok, ex)) in zip(mine.tokens, mine.experts).enumerated() { byPair[tok * 1_000_000 + ex] = Double(weights[a]) }
                for (tok, row) in idx.enumerated() {
                    for (j, ex) in row.enumerated() { weightDiff = max(weightDiff, abs((byPair[tok * 1_000_000 + ex] ?? .infinity) - w[tok][j])) }
                }
                #expect(weightDiff < tolerance, "layer \(layer): expert weights differ by \(weightDiff)", sourceLocation: sourceLocation)
            }
        }

        // Hidden states of sequence 0: embedding, each layer, final norm.
        if let hs = e["hidden_states_seq0"] as? [[[Double]]] {
            #expect(out.hiddenStates.count == hs.count, "hidden states: \(out.hiddenStates.count) vs \(hs.count)", sourceLocation: sourceLocation)
            for (i, ref) in hs.enumerated() where i < out.hiddenStates.count {
                let d = maxDiff(out.hiddenStates[i].reshaped([b * t, -1]), ref)
                #expect(d < tolerance, "hidden state \(i) differs by \(d)", sourceLocation: sourceLocation)
            }
        }

        // Greedy generation from sequence 0, with and without the cache (end-of-sequence suppressed, as the
        // reference ran with min_new_tokens).
        if let g = e["generation"] as? [String: Any], let want = g["new_tokens"] as? [Int] {
            let eos = Set(((e["config"] as? [String: Any])?["eos_token_id"]).map { ($0 as? [Int]) ?? [$0 as? Int ?? -1] } ?? [])
            for cached in [true, false] {
                let got = greedy(model, prompt: ids[0], count: want.count, cached: cached, suppress: eos)
                #expect(got == want, "greedy generation (cache \(cached)): \(got) vs \(want)", sourceLocation: sourceLocation)
            }
        }
    }

    static func greedy(_ model: MoETransformer<Float>, prompt: [Int], count: Int, cached: Bool, suppress: Set<Int>) -> [Int] {
        var context = prompt, out: [Int] = []
        let caches = cached ? model.layers.map { _ in KVCache<Float>() } : nil
        var input = prompt, position = 0
        for _ in 0..<count {
            let o = model(ids: cached ? input : context, batch: 1, .inference, caches: caches, startPosition: cached ? position : 0, lastPositionOnly: true)
            if cached { position += input.count }
            var best = -1
            var bestValue = -Float.infinity
            for (i, v) in o.logits.value.scalars.enumerated() where !suppress.contains(i) && v > bestValue { (best, bestValue) = (i, v) }
            out.append(best)
            context.append(best)
            input = [best]
        }
        return out
    }
}
