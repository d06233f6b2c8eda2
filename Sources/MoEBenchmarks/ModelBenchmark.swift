import Foundation
import MoEInference
import MoETensor

/// `moe bench model`: a whole checkpoint on the inference engine (M1 of BENCHMARKS.md, or any model the
/// engine runs): load time with a warm page cache, peak resident memory against the bytes of the weights, prefill
/// of a prompt (tok/s and GFLOP/s against the sgemm ceiling) and batch-1 decode at depth 0 and after the prompt
/// (tok/s against the copy-bandwidth bound: copy GB/s / bytes each token reads; and against the read bound: read
/// GB/s / the same bytes, what a pass that only reads can reach).
public enum ModelBenchmark {
    /// Resident memory's high-water mark since the last reset, in bytes (Linux VmHWM; 0 elsewhere).
    static func highWaterBytes() -> Int {
        guard let s = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
            let line = s.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") })
        else { return 0 }
        let kb = line.split(separator: " ").compactMap { Int($0) }.first ?? 0
        return kb * 1024
    }

    /// Resets the high-water mark to the current resident memory (Linux clear_refs 5), so the peak measured
    /// afterwards is the model's and not the ceilings' buffers'. False where that is not possible.
    static func resetHighWater() -> Bool {
        guard let h = FileHandle(forWritingAtPath: "/proc/self/clear_refs") else { return false }
        defer { try? h.close() }
        do { try h.write(contentsOf: Data("5".utf8)) } catch { return false }
        return true
    }

    /// Greedy decoding of `count` tokens after `first`, one forward per token.
    static func decode(_ s: InferenceSession, first: Int, count: Int) {
        var next = first
        for _ in 0..<count {
            let logits = s.forward([next])
            next = logits.withUnsafeBufferPointer { p in p.indices.max { p[$0] < p[$1] } ?? 0 }
        }
    }

    public static func run(model dir: String, promptTokens: Int = 512, newTokens: Int = 128, runs: Int = 5,
                           kvCache: InferenceSession.KVCache = .f32) throws -> BenchReport {
        let gemm = Measure.sgemmCeiling(runs: runs)
        let copy = Measure.copyBandwidth(runs: runs), read = Measure.readBandwidth(runs: runs)
        gemm.sample()
        copy.sample()
        read.sample()
        // Resident memory of the model's phases only: the ceilings' buffers are freed by now.
        TensorStorage<Float>.releaseCachedBlocks()
        let baseline = TrainBenchmark.residentMiB() * 1_048_576
        let tracked = resetHighWater()

        InferenceModel.guardMappedFiles()
        // Load: open, map, parse headers, copy the small vectors. The first load warms the page cache.
        var model = try InferenceModel(directory: dir)
        var loadSamples: [Double] = []
        for _ in 0..<runs {
            let t0 = Measure.now()
            model = try InferenceModel(directory: dir)
            loadSamples.append(Measure.now() - t0)
        }
        let c = model.config
        guard promptTokens + newTokens <= c.maxPositions || c.maxPositions <= 0 else {
            throw ModelBenchError("\(promptTokens) prompt + \(newTokens) new tokens exceed the model's \(c.maxPositions) positions; use fewer")
        }
        var rng = RandomGenerator(seed: 1)
        let prompt = (0..<promptTokens).map { _ in Int(rng.next() % UInt64(c.vocabSize)) }
        let capacity = promptTokens + newTokens + 1

        // Prefill: the whole prompt in one forward, from an empty cache.
        let prefill = Measure.time(runs: runs) {
            let s = InferenceSession(model: model, capacity: capacity, kvCache: kvCache)
            _ = s.forward(prompt)
        }
        // Decode at depth 0 (after one token) and at depth promptTokens (after the prompt); only the decoded
        // tokens are timed.
        let session = InferenceSession(model: model, capacity: capacity, kvCache: kvCache)
        func decodeRates(after context: [Int]) -> [Double] {
            var rates: [Double] = []
            for run in 0...runs {
                session.reset()
                _ = session.forward(context)
                let t0 = Measure.now()
                decode(session, first: prompt[0], count: newTokens)
                if run > 0 { rates.append(Double(newTokens) / Swift.max(Measure.now() - t0, 1e-9)) }
            }
            return rates
        }
        let shallow = decodeRates(after: [prompt[0]])
        let deep = decodeRates(after: prompt)
        let peak = highWaterBytes()
        try model.checkFilesUnchanged()

        let weightBytes = model.weightBytes, perToken = model.decodeBytesPerToken
        let attentionFLOPs = 4.0 * Double(c.numLayers * c.numHeads * c.headDim) * Double(promptTokens + 1) / 2
        let prefillFLOPs = Double(promptTokens) * (model.flopsPerToken + attentionFLOPs)
        // The prompt's products that run in narrow arithmetic (int8 or BF16) are bounded by that instruction's
        // peak, the rest by sgemm: the prefill bound mixes the two by their shares of the FLOPs.
        let arithmetic = InferenceSession.PrefillArithmetic.automatic
        let narrowShare = Double(promptTokens) * model.flopsPerToken(where: arithmetic.covers) / prefillFLOPs
        let prefillRate = Measure.rate(Double(promptTokens), prefill), prefillGFLOPs = Measure.rate(prefillFLOPs / 1e9, prefill)
        let shallowRate = Measure.Stats(shallow), deepRate = Measure.Stats(deep)
        let shape = "\(c.modelType) \(model.expertFormat.rawValue), \(c.numLayers)L D\(c.hiddenSize) E\(c.moe?.numExperts ?? 0) top-\(c.moe?.expertsPerToken ?? 0)"
        let bytesNote = String(format: "%.1f MB read per token (attention, norms, router, the selected experts, head)", Double(perToken) / 1e6)
        var pending = [
            Figure.Pending(name: "load (warm page cache)", shape: shape, unit: "ms", value: Measure.Stats(loadSamples.map { $0 * 1000 }),
                           note: String(format: "open + map + headers + small vectors; weights %.2f GB, paged in lazily", Double(weightBytes) / 1e9)),
            Figure.Pending(name: "prefill \(promptTokens) tokens", shape: shape, unit: "tok/s", value: prefillRate),
            Figure.Pending(name: "prefill \(promptTokens) tokens", shape: shape, unit: "GFLOP/s",
                           value: prefillGFLOPs, ceiling: "sgemm",
                           note: String(format: "%.1f GFLOP per prompt (2 per multiply-add of the products each token runs + causal attention); ", prefillFLOPs / 1e9)
                               + prefillNote(model.expertFormat, arithmetic)),
            Figure.Pending(name: "decode, depth 0", shape: shape, unit: "tok/s", value: shallowRate, ceiling: "decode bound", note: bytesNote),
            Figure.Pending(name: "decode, depth \(promptTokens)", shape: shape, unit: "tok/s", value: deepRate, ceiling: "decode bound",
                           note: "after the \(promptTokens)-token prompt, \(kvCache.rawValue) KV cache"),
            Figure.Pending(name: "decode, depth 0", shape: shape, unit: "tok/s", value: shallowRate, ceiling: "read bound",
                           note: "the same runs against what reading alone reaches: read bandwidth / bytes per token"),
            Figure.Pending(name: "decode, depth \(promptTokens)", shape: shape, unit: "tok/s", value: deepRate, ceiling: "read bound"),
        ]
        var mixes: [String: BenchReport.Mix] = [:]
        if narrowShare > 0 {
            let peakCeiling = "\(arithmetic.rawValue) peak"
            mixes["prefill bound"] = BenchReport.Mix(
                label: "prefill bound: \(arithmetic.rawValue) products at their peak, the rest at sgemm (GFLOP/s)",
                parts: [(peakCeiling, narrowShare), ("sgemm", 1 - narrowShare)])
            pending.insert(Figure.Pending(
                name: "prefill \(promptTokens) tokens", shape: shape, unit: "GFLOP/s", value: prefillGFLOPs,
                ceiling: "prefill bound",
                note: String(format: "the same runs against the machine's best kernels: %.1f%% of the FLOPs at the %@ dot-product peak (no BLAS), the rest at sgemm's rate",
                             100 * narrowShare, arithmetic == .int8 ? "int8 (VNNI)" : "BF16")), at: 3)
        }
        if peak > 0 {
            pending.append(Figure.Pending(
                name: "peak resident memory", shape: shape, unit: "GB", value: Measure.Stats([Double(peak) / 1e9]),
                note: String(format: "%.3f x the %.2f GB of weights%@", Double(peak) / Double(weightBytes), Double(weightBytes) / 1e9,
                             tracked ? String(format: " (high-water mark of the model's phases: load, prefill, decode; %.0f MB of it the process before loading)", baseline / 1e6) : "")))
        }
        // The decode bound is copy bandwidth over the bytes a token reads: a ceiling in tok/s.
        let bound = Measure.Ceiling { Measure.copyRates(runs: runs).map { $0 * 1e9 / Double(perToken) } }
        bound.sample()
        // And read bandwidth over the same bytes: the bound of a pass that only reads.
        let readBound = Measure.Ceiling { Measure.readRates(runs: runs).map { $0 * 1e9 / Double(perToken) } }
        readBound.sample()
        var report = BenchReport.finish(
            "model", pending: pending, sgemm: gemm,
            others: ["decode bound": ("decode bound: copy bandwidth / bytes per token (tok/s)", bound),
                     "copy": ("copy bandwidth (GB/s)", copy),
                     "read bound": ("decode bound: read bandwidth / bytes per token (tok/s)", readBound),
                     "read": ("read bandwidth (GB/s)", read)],
            mixes: mixes)
        report.extra = [
            "load_seconds": Measure.Stats(loadSamples).median, "peak_rss_bytes": Double(peak), "weight_bytes": Double(weightBytes),
            "prefill_tokens_per_second": prefillRate.median, "decode_tokens_per_second": shallowRate.median,
            "decode_tokens_per_second_at_depth": deepRate.median, "decode_bytes_per_token": Double(perToken),
            "kv_cache_f16": kvCache == .f16 ? 1 : 0,
        ]
        return report
    }

    /// How the prompt's products ran, for the prefill figure's note.
    static func prefillNote(_ format: WeightMatrix.Format, _ arithmetic: InferenceSession.PrefillArithmetic) -> String {
        switch (format, arithmetic) {
        case (.f32, _): return "every product on sgemm (f32)"
        case (_, .bf16): return "the non-f32 weights' products in BF16 through oneDNN (AVX512_BF16, f32 accumulation), the rest on sgemm"
        case (.q4x8, .int8), (.q8, .int8):
            return "the \(format.rawValue) weights' products in integers (AVX-512 VNNI, the prompt quantized per block as decode does), the rest on sgemm"
        default: return "every product on sgemm (f32), the stored weights widened a block of rows at a time"
        }
    }
}

public struct ModelBenchError: Error, CustomStringConvertible {
    public let description: String
    init(_ d: String) { description = d }
}
