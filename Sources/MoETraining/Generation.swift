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
    /// Generation stops after one of these tokens (a checkpoint's end-of-sequence ids); the token is kept in
    /// the output, as transformers keeps it.
    public var endTokens: Set<Int> = []

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
    /// Generates after `prompt`; `emit` receives the text as it becomes final (stop strings held back, and
    /// a character whose bytes are not all generated yet). Without a tokenizer there is no text: no stop
    /// strings, nothing emitted. Returns the new token ids (without a stop string's tokens).
    public static func generate(
        _ model: MoETransformer<Float>, prompt: [Int], options: SamplingOptions, useCache: Bool = true,
        tokenizer: (any TextTokenizer)? = ByteTokenizer(), emit: ((String) -> Void)? = nil
    ) -> [Int] {
        let caches = useCache ? model.layers.map { _ in KVCache<Float>() } : nil
        var position = 0
        return generate(prompt: prompt, options: options, tokenizer: tokenizer, emit: emit) { input, context in
            let ids = useCache ? input : context
            let out = model(ids: ids, batch: 1, .inference, caches: caches, startPosition: useCache ? position : 0, lastPositionOnly: true)
            if useCache { position += ids.count }
            return out.logits.value.scalars
        }
    }

    /// The same loop over any model: `next(input, context)` runs the new tokens `input` (the prompt first, then
    /// one token per step; `context` is everything so far) and returns the last position's logits.
    public static func generate(
        prompt: [Int], options: SamplingOptions, tokenizer: (any TextTokenizer)? = ByteTokenizer(),
        emit: ((String) -> Void)? = nil, next: (_ input: [Int], _ context: [Int]) -> [Float]
    ) -> [Int] {
        var sampler = Sampler(options)
        var context = prompt
        var generated: [Int] = []
        var emitted = 0  // UTF-8 bytes of the decoded text already given to `emit`
        var nextInput = prompt
        for _ in 0..<options.maxNewTokens {
            let logits = next(nextInput, context)
            let t = sampler.next(logits: logits, context: context)
            context.append(t)
            generated.append(t)
            nextInput = [t]
            let finished = options.endTokens.contains(t)
            guard let tokenizer else {
                if finished { break }
                continue
            }
            // The text is decoded whole each step: a token's text can depend on its neighbours (bytes that
            // complete a character, a leading space dropped only at the start).
            let text = Array(tokenizer.decode(generated).utf8)
            let cuts = options.stop.filter { !$0.isEmpty }.compactMap { stop in
                text[max(0, emitted - stop.utf8.count)...].firstRange(of: Array(stop.utf8))?.lowerBound
            }
            if let cut = cuts.min() {
                // Drop the tokens that made the stop string, emit the text before it.
                while !generated.isEmpty && tokenizer.decode(generated).utf8.count > cut { generated.removeLast() }
                if cut > emitted { emit?(String(decoding: text[emitted..<cut], as: UTF8.self)) }
                return generated
            }
            // Hold back a tail that could still grow into a stop string, and an unfinished character.
            let hold = options.stop.map { holdback(text, Array($0.utf8)) }.max() ?? 0
            let ready = settled(text, text.count - hold)
            if ready > emitted {
                emit?(String(decoding: text[emitted..<ready], as: UTF8.self))
                emitted = ready
            }
            if finished { break }
        }
        if let tokenizer {
            let text = Array(tokenizer.decode(generated).utf8)
            if text.count > emitted { emit?(String(decoding: text[emitted...], as: UTF8.self)) }
        }
        return generated
    }

    /// Bytes at the end of `text` that are a proper prefix of `stop`.
    static func holdback(_ t: [UInt8], _ s: [UInt8]) -> Int {
        var best = 0
        for n in 1..<max(s.count, 1) where n <= t.count && Array(t.suffix(n)) == Array(s.prefix(n)) { best = n }
        return best
    }

    /// `count` less any U+FFFD at its end: bytes of a character not all generated yet decode to U+FFFD and
    /// may still become the character.
    static func settled(_ text: [UInt8], _ count: Int) -> Int {
        var n = count
        while n >= 3 && text[(n - 3)..<n].elementsEqual([0xEF, 0xBF, 0xBD]) { n -= 3 }
        return n
    }
}
