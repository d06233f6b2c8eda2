/// Sampling settings for generation.
public struct SamplingOptions: Sendable {
    /// 0 is greedy decoding.
    public var temperature = 0.8
    /// Keep the k most likely tokens (0 = all).
    public var topK = 0
    /// Keep the smallest set of tokens whose probability reaches p (1 = all).
    public var topP = 1.0
    /// Keep tokens whose probability is at least min_p times the most likely one's (0 = all).
    public var minP = 0.0
    /// > 1 discourages tokens already in the context (CTRL / Hugging Face rule: positive logits divided,
    /// negative multiplied).
    public var repetitionPenalty = 1.0
    public var seed: UInt64 = 0
    public var maxNewTokens = 128
    /// Generation stops when the text ends with one of these; the stop string is not emitted.
    public var stop: [String] = []

    public init() {}

    public func validate() throws(ConfigError) {
        try ConfigError.check(temperature >= 0 && temperature.isFinite, "temperature", temperature, "use 0 (greedy) or a positive temperature")
        try ConfigError.check(topK >= 0, "top-k", topK, "use 0 (off) or a positive k")
        try ConfigError.check(topP > 0 && topP <= 1, "top-p", topP, "use a value in (0, 1]")
        try ConfigError.check(minP >= 0 && minP < 1, "min-p", minP, "use a value in [0, 1)")
        try ConfigError.check(repetitionPenalty > 0 && repetitionPenalty.isFinite, "repetition-penalty", repetitionPenalty, "use a positive value such as 1.1")
        try ConfigError.check(maxNewTokens >= 0 && maxNewTokens <= 1_000_000, "max-new-tokens", maxNewTokens, "use between 0 and 1000000")
    }
}

/// Picks the next token from one row of logits.
public struct Sampler {
    public var options: SamplingOptions
    var rng: RandomGenerator

    public init(_ options: SamplingOptions) {
        self.options = options
        rng = RandomGenerator(seed: options.seed)
    }

    public mutating func next(logits: [Float], context: [Int]) -> Int {
        var l = logits.map(Double.init)
        if options.repetitionPenalty != 1 {
            for t in Set(context) where t >= 0 && t < l.count {
                l[t] = l[t] > 0 ? l[t] / options.repetitionPenalty : l[t] * options.repetitionPenalty
            }
        }
        if options.temperature == 0 {
            return l.indices.max { l[$0] < l[$1] || (l[$0] == l[$1] && $0 > $1) } ?? 0
        }
        let m = l.max() ?? 0
        let p = l.map { Double.exp(($0 - m) / options.temperature) }
        var order = p.indices.sorted { p[$0] > p[$1] || (p[$0] == p[$1] && $0 < $1) }
        if options.topK > 0 && options.topK < order.count { order = Array(order.prefix(options.topK)) }
        let total = order.reduce(0.0) { $0 + p[$1] }
        if options.minP > 0 {
            let floor = options.minP * p[order[0]]
            order = order.filter { p[$0] >= floor }
        }
        if options.topP < 1 {
            var acc = 0.0, keep = 0
            for t in order {
                acc += p[t] / total
                keep += 1
                if acc >= options.topP { break }
            }
            order = Array(order.prefix(keep))
        }
        let kept = order.reduce(0.0) { $0 + p[$1] }
        var u = rng.uniform() * kept
        for t in order {
            u -= p[t]
            if u <= 0 { return t }
        }
        return order.last ?? 0
    }
}

/// Autoregressive generation with a KV cache per layer: the prompt is run once, then one token per step.
public enum Generator {
    /// Generates after `prompt`; `emit` receives the text as it becomes final (stop strings held back).
    /// Returns the new token ids (without a stop string's tokens).
    public static func generate(
        _ model: MoETransformer<Float>, prompt: [Int], options: SamplingOptions, useCache: Bool = true,
        decode: Bool = true, emit: ((String) -> Void)? = nil
    ) -> [Int] {
        var sampler = Sampler(options)
        let tok = ByteTokenizer()
        var context = prompt
        var generated: [Int] = []
        let caches = useCache ? model.layers.map { _ in KVCache<Float>() } : nil
        var pendingBytes: [Int] = []  // generated but not yet emitted (could start a stop string)
        var nextInput = prompt
        var position = 0
        for _ in 0..<options.maxNewTokens {
            let input = useCache ? nextInput : context
            let out = model(ids: input, batch: 1, .inference, caches: caches, startPosition: useCache ? position : 0, lastPositionOnly: true)
            if useCache { position += input.count }
            let logits = out.logits.value.scalars
            let t = sampler.next(logits: logits, context: context)
            context.append(t)
            generated.append(t)
            nextInput = [t]
            // Stop strings and streaming are byte-level text; a model with another vocabulary just counts tokens.
            if !decode { continue }
            pendingBytes.append(t)
            let text = tok.decode(generated)
            if let s = options.stop.first(where: { !$0.isEmpty && text.hasSuffix($0) }) {
                let stopLen = tok.encode(s).count
                generated.removeLast(stopLen)
                let flush = pendingBytes.dropLast(min(stopLen, pendingBytes.count))
                if !flush.isEmpty { emit?(tok.decode(Array(flush))) }
                return generated
            }
            // Hold back a tail that could still grow into a stop string.
            let hold = options.stop.map { s in holdback(text, s) }.max() ?? 0
            if pendingBytes.count > hold {
                let n = pendingBytes.count - hold
                let chunk = Array(pendingBytes.prefix(n))
                // Never split a UTF-8 character: emit only whole characters.
                let whole = completeUTF8Prefix(chunk)
                if whole > 0 {
                    emit?(tok.decode(Array(chunk.prefix(whole))))
                    pendingBytes.removeFirst(whole)
                }
            }
        }
        if !pendingBytes.isEmpty { emit?(tok.decode(pendingBytes)) }
        return generated
    }

    /// Bytes at the end of `text` that are a proper prefix of `stop`.
    static func holdback(_ text: String, _ stop: String) -> Int {
        let t = Array(text.utf8), s = Array(stop.utf8)
        var best = 0
        for n in 1..<max(s.count, 1) where n <= t.count && Array(t.suffix(n)) == Array(s.prefix(n)) { best = n }
        return best
    }

    /// Length of the longest prefix of `bytes` that ends on a UTF-8 character boundary.
    static func completeUTF8Prefix(_ bytes: [Int]) -> Int {
        var i = bytes.count
        var back = 0
        while i > 0 && back < 4 {
            let b = bytes[i - 1]
            if b & 0xC0 != 0x80 {
                let need = b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : b >= 0xC0 ? 2 : 1
                return back + 1 >= need ? bytes.count : i - 1
            }
            i -= 1
            back += 1
        }
        return bytes.count
    }
}
