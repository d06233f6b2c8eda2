/// The built-in, seeded, multi-domain corpus: one document per line, each from one of five domains with
/// distinct structure, so that expert specialization by domain is visible and arithmetic can be scored.
public enum Domain: String, CaseIterable, Sendable, Codable {
    case prose, arithmetic, code, records, sequences
}

public struct SyntheticCorpus: Sendable {
    public struct Document: Sendable {
        public let domain: Domain
        public let text: String  // without the newline
    }

    public let documents: [Document]

    /// A fixed table of people: the records domain states their attributes, always the same ones, so a
    /// model can only predict them by memorizing the table (where more parameters help).
    public struct Person: Sendable {
        public let name: String, age: Int, city: String, job: String
    }

    public let people: [Person]

    /// `count` documents, each of a domain drawn at random (so the order of domains carries no signal),
    /// all from `seed`.
    public init(seed: UInt64, count: Int, people peopleCount: Int = 1000) {
        var rng = RandomGenerator(seed: seed)
        people = Self.makePeople(peopleCount, &rng)
        var docs: [Document] = []
        docs.reserveCapacity(count)
        for _ in 0..<count {
            let d = Domain.allCases[rng.int(below: Domain.allCases.count)]
            docs.append(Document(domain: d, text: Self.generate(d, people: people, &rng)))
        }
        documents = docs
    }

    static let syllables = ["ka", "lo", "mi", "re", "tu", "sa", "no", "vi", "de", "ra", "po", "li", "ne", "zu", "ha", "bo", "ki", "me", "ta", "gu"]
    static let jobs = ["baker", "pilot", "nurse", "smith", "clerk", "judge", "miner", "poet", "tailor", "guard"]

    static func makePeople(_ n: Int, _ rng: inout RandomGenerator) -> [Person] {
        var seen = Set<String>()
        var out: [Person] = []
        while out.count < n {
            let name = (0..<(2 + rng.int(below: 2))).map { _ in pick(syllables, &rng) }.joined()
            guard seen.insert(name).inserted else { continue }
            out.append(Person(name: name, age: 18 + rng.int(below: 60), city: pick(cities, &rng), job: pick(jobs, &rng)))
        }
        return out
    }

    static let nouns = ["cat", "dog", "fox", "bird", "child", "farmer", "river", "forest", "teacher", "ship", "garden", "king", "horse", "storm", "city", "lamp"]
    static let adjectives = ["quiet", "red", "old", "small", "bright", "cold", "happy", "tall", "dark", "gentle", "green", "loud"]
    static let verbs = ["sees", "follows", "finds", "watches", "carries", "likes", "calls", "meets", "helps", "hides"]
    static let preps = ["near", "under", "behind", "beside", "across", "over"]
    static let cities = ["oslo", "lima", "kyoto", "cairo", "quito", "perth", "dakar", "riga", "hanoi", "tunis"]
    static let idents = ["x", "y", "n", "total", "count", "acc", "value", "idx"]

    static func pick(_ a: [String], _ rng: inout RandomGenerator) -> String { a[rng.int(below: a.count)] }

    static func generate(_ d: Domain, people: [Person], _ rng: inout RandomGenerator) -> String {
        switch d {
        case .prose:
            func np(_ rng: inout RandomGenerator) -> String {
                let det = rng.int(below: 2) == 0 ? "the" : "a"
                return rng.int(below: 2) == 0 ? "\(det) \(pick(adjectives, &rng)) \(pick(nouns, &rng))" : "\(det) \(pick(nouns, &rng))"
            }
            var s = "\(np(&rng)) \(pick(verbs, &rng)) \(np(&rng))"
            if rng.int(below: 2) == 0 { s += " \(pick(preps, &rng)) \(np(&rng))" }
            return s + "."
        case .arithmetic:
            let (a, b) = arithmeticOperands(&rng, heldOut: false)
            return "\(a)+\(b)=\(a + b)"
        case .code:
            let v = pick(idents, &rng), k = rng.int(below: 9) + 1, c = rng.int(below: 20)
            switch rng.int(below: 3) {
            case 0: return "def f\(k)(\(v)): return \(v) * \(k) + \(c)"
            case 1: return "for i in range(\(k)): \(v) += i * \(c)"
            default: return "if \(v) > \(c): \(v) = \(v) - \(k)"
            }
        case .records:
            let p = people[rng.int(below: people.count)]
            return "name=\(p.name);age=\(p.age);city=\(p.city);job=\(p.job)"
        case .sequences:
            let start = rng.int(below: 20), step = 1 + rng.int(below: 9), len = 5 + rng.int(below: 4)
            return "seq " + (0..<len).map { String(start + $0 * step) }.joined(separator: " ")
        }
    }

    /// A two-digit and a one-digit operand; a fixed tenth of the pairs (by a hash of the pair) never appears
    /// in training and is kept for measuring arithmetic on unseen problems.
    public static func arithmeticOperands(_ rng: inout RandomGenerator, heldOut: Bool) -> (Int, Int) {
        while true {
            let a = 10 + rng.int(below: 90), b = 1 + rng.int(below: 9)
            if isHeldOut(a, b) == heldOut { return (a, b) }
        }
    }

    public static func isHeldOut(_ a: Int, _ b: Int) -> Bool { (a * 131 + b * 71) % 10 == 3 }

    /// `count` held-out problems as (prompt "a+b=", answer "a+b").
    public static func heldOutProblems(seed: UInt64, count: Int) -> [(prompt: String, answer: String)] {
        var rng = RandomGenerator(seed: seed ^ 0xA5A5)
        return (0..<count).map { _ in
            let (a, b) = arithmeticOperands(&rng, heldOut: true)
            return ("\(a)+\(b)=", String(a + b))
        }
    }
}
