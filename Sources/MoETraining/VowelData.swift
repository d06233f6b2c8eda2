import MoENN

/// A seeded vowel-discrimination task built from the mean formant frequencies of Peterson & Barney (1952),
/// "Control methods used in a study of the vowels", JASA 24:175-184, Table II.
///
/// Ten American-English vowels (in h_d words) by three speaker groups. Each synthetic speaker scales all
/// formants by a vocal-tract factor (log-normal, sd 6%), and each token adds independent formant jitter
/// (sd 7% on F1, 5% on F2, 4% on F3): about the spread the original measurements show. As in the paper's
/// data there are 33 men, 28 women and 15 children, each saying every vowel twice.
public struct VowelData: Sendable {
    public static let vowels = ["i (heed)", "ɪ (hid)", "ɛ (head)", "æ (had)", "ɑ (hod)",
                                "ɔ (hawed)", "ʊ (hood)", "u (who'd)", "ʌ (hud)", "ɝ (heard)"]
    public static let groups = ["men", "women", "children"]
    public static let speakersPerGroup = [33, 28, 15]

    /// Mean F1, F2, F3 in Hz: [group][vowel][formant].
    public static let meanFormants: [[[Double]]] = [
        [[270, 2290, 3010], [390, 1990, 2550], [530, 1840, 2480], [660, 1720, 2410], [730, 1090, 2440],
         [570, 840, 2410], [440, 1020, 2240], [300, 870, 2240], [640, 1190, 2390], [490, 1350, 1690]],
        [[310, 2790, 3310], [430, 2480, 3070], [610, 2330, 2990], [860, 2050, 2850], [850, 1220, 2810],
         [590, 920, 2710], [470, 1160, 2680], [370, 950, 2670], [760, 1400, 2780], [500, 1640, 1960]],
        [[370, 3200, 3730], [530, 2730, 3600], [690, 2610, 3570], [1010, 2320, 3320], [1030, 1370, 3170],
         [680, 1060, 3180], [560, 1410, 3310], [430, 1170, 3260], [850, 1590, 3360], [560, 1820, 2160]],
    ]

    public struct Sample: Sendable {
        public let formants: [Double]  // F1, F2, F3 in Hz
        public let vowel: Int
        public let group: Int
        public let speaker: Int
    }

    public let train: [Sample]
    public let test: [Sample]
    /// Mean and standard deviation of the log formants over the training set (for standardizing inputs).
    public let featureMean: [Double]
    public let featureStd: [Double]

    public init(seed: UInt64, tokensPerVowel: Int = 2) {
        var rng = RandomGenerator(seed: seed)
        // Train and test come from disjoint speakers: the test measures generalization to new voices.
        train = Self.speakers(&rng, tokens: tokensPerVowel, firstID: 0)
        test = Self.speakers(&rng, tokens: tokensPerVowel, firstID: 1000)
        let logs = train.map { $0.formants.map { Double.log($0) } }
        featureMean = (0..<3).map { f in logs.reduce(0) { $0 + $1[f] } / Double(logs.count) }
        featureStd = (0..<3).map { f in
            let m = logs.reduce(0) { $0 + $1[f] } / Double(logs.count)
            return (logs.reduce(0) { $0 + ($1[f] - m) * ($1[f] - m) } / Double(logs.count)).squareRoot()
        }
    }

    static func speakers(_ rng: inout RandomGenerator, tokens: Int, firstID: Int) -> [Sample] {
        let jitter = [0.07, 0.05, 0.04]
        var out: [Sample] = []
        var id = firstID
        for (g, count) in speakersPerGroup.enumerated() {
            for _ in 0..<count {
                let tract = 0.06 * rng.normal()
                for v in 0..<vowels.count {
                    for _ in 0..<tokens {
                        let f = (0..<3).map { k in meanFormants[g][v][k] * Double.exp(tract + jitter[k] * rng.normal()) }
                        out.append(Sample(formants: f, vowel: v, group: g, speaker: id))
                    }
                }
                id += 1
            }
        }
        return out
    }

    /// Standardized log-formant features [N, 3] and one-hot targets [N, 10].
    public func tensors<T: TensorScalar>(_ samples: [Sample], as: T.Type = T.self) -> (x: Tensor<T>, y: Tensor<T>) {
        var x = [T](), y = [T](repeating: 0, count: samples.count * Self.vowels.count)
        for (i, s) in samples.enumerated() {
            for f in 0..<3 { x.append(T((Double.log(s.formants[f]) - featureMean[f]) / featureStd[f])) }
            y[i * Self.vowels.count + s.vowel] = 1
        }
        return (Tensor(shape: [samples.count, 3], x), Tensor(shape: [samples.count, Self.vowels.count], y))
    }
}
