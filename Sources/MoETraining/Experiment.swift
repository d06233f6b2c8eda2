import Foundation

/// One cell of an experiment's table: a number or a label.
public enum ExperimentCell: Codable, Sendable, Equatable, CustomStringConvertible {
    case number(Double)
    case text(String)

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .number(let v): try c.encode(v)
        case .text(let s): try c.encode(s)
        }
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let v = try? c.decode(Double.self) { self = .number(v) } else { self = .text(try c.decode(String.self)) }
    }

    public var description: String {
        switch self {
        case .text(let s): return s
        case .number(let v):
            if v == v.rounded() && abs(v) < 1e9 { return String(Int(v)) }
            return abs(v) >= 100 ? String(format: "%.0f", v) : String(format: "%.4f", v)
        }
    }
}

/// What an experiment found: a table (one row per arm, mean and spread over seeds), the criterion it tests,
/// whether it reproduced, and the per-seed values behind the table.
public struct ExperimentReport: Codable, Sendable {
    public var experiment: String
    public var columns: [String]
    public var rows: [[ExperimentCell]]
    public var criterion: String
    /// The numbers the verdict rests on, in words.
    public var finding: String
    public var reproduced: Bool
    public var seeds: [UInt64]
    public var steps: Int
    public var seconds: Double
    /// Per arm, the per-seed runs.
    public var runs: [String: [ArmRun]]

    enum CodingKeys: String, CodingKey {
        case experiment, columns, criterion, finding, reproduced, seeds, steps, seconds, runs, table
    }

    public init(experiment: String, columns: [String], rows: [[ExperimentCell]], criterion: String, finding: String,
                reproduced: Bool, seeds: [UInt64], steps: Int, seconds: Double, runs: [String: [ArmRun]]) {
        self.experiment = experiment
        self.columns = columns
        self.rows = rows
        self.criterion = criterion
        self.finding = finding
        self.reproduced = reproduced
        self.seeds = seeds
        self.steps = steps
        self.seconds = seconds
        self.runs = runs
    }

    /// The table is written as a list of objects keyed by column name.
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(experiment, forKey: .experiment)
        try c.encode(rows.map { Dictionary(uniqueKeysWithValues: zip(columns, $0)) }, forKey: .table)
        try c.encode(columns, forKey: .columns)
        try c.encode(criterion, forKey: .criterion)
        try c.encode(finding, forKey: .finding)
        try c.encode(reproduced, forKey: .reproduced)
        try c.encode(seeds, forKey: .seeds)
        try c.encode(steps, forKey: .steps)
        try c.encode(seconds, forKey: .seconds)
        try c.encode(runs, forKey: .runs)
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        experiment = try c.decode(String.self, forKey: .experiment)
        let names = try c.decode([String].self, forKey: .columns)
        let table = try c.decode([[String: ExperimentCell]].self, forKey: .table)
        columns = names
        rows = table.map { row in names.map { row[$0] ?? .text("") } }
        criterion = try c.decode(String.self, forKey: .criterion)
        finding = try c.decode(String.self, forKey: .finding)
        reproduced = try c.decode(Bool.self, forKey: .reproduced)
        seeds = try c.decode([UInt64].self, forKey: .seeds)
        steps = try c.decode(Int.self, forKey: .steps)
        seconds = try c.decode(Double.self, forKey: .seconds)
        runs = try c.decode([String: [ArmRun]].self, forKey: .runs)
    }

    /// The table as aligned text columns.
    public func table() -> String {
        let cells = [columns] + rows.map { $0.map(\.description) }
        let widths = columns.indices.map { i in cells.map { $0[i].count }.max() ?? 0 }
        return cells.enumerated().map { (r, row) in
            let line = row.enumerated().map { (i, s) in
                i == 0 ? s.padding(toLength: widths[i], withPad: " ", startingAt: 0)
                    : String(repeating: " ", count: widths[i] - s.count) + s
            }.joined(separator: "  ")
            return r == 0 ? line + "\n" + String(repeating: "-", count: line.count) : line
        }.joined(separator: "\n")
    }
}

/// One training run of one arm with one seed.
public struct ArmRun: Codable, Sendable, Equatable {
    public var seed: UInt64
    public var validationLoss: Double
    /// Over the MoE layers, the largest max/mean of the validation routing load (every kept top-k choice); nil
    /// without MoE layers.
    public var worstMaxOverMean: Double?
    /// Experts with no validation token, summed over the MoE layers.
    public var unusedExperts: Int
    public var tokensPerSecond: Double
    public var seconds: Double
    public var parameters: Int
    public var activeParameters: Int
    /// Anything else an experiment measures for this run (PEER's expert usage, the router's time share).
    public var extra: [String: Double] = [:]

    enum CodingKeys: String, CodingKey {
        case seed, validationLoss = "val_loss", worstMaxOverMean = "worst_max_over_mean", unusedExperts = "unused_experts"
        case tokensPerSecond = "tokens_per_s", seconds, parameters, activeParameters = "active_parameters", extra
    }
}

/// What every experiment shares: the seeds, the step count, and a progress callback.
public struct ExperimentOptions: Sendable {
    public var seeds: [UInt64] = [1, 2, 3]
    public var steps = 300
    public var batch = 16
    public var sequence = 128
    public init() {}
}

/// Trains arms and measures them. Each run is seeded by `seed` alone: the built-in corpus, the initialization,
/// the data order and every random draw; arms that share a seed see the same data.
public enum ExperimentRunner {
    public static func trainConfig(_ o: ExperimentOptions, seed: UInt64) -> TrainConfig {
        var c = TrainConfig()
        c.steps = o.steps
        c.batch = o.batch
        c.sequence = o.sequence
        c.warmup = min(c.warmup, o.steps / 5)
        c.seed = seed
        c.logEvery = o.steps
        c.evalEvery = o.steps
        c.checkpointEvery = o.steps
        return c
    }

    /// Trains `model` for the options' steps with `seed`, then measures validation loss and load.
    public static func run(
        _ model: TransformerConfig, seed: UInt64, options o: ExperimentOptions, data: TextDataset,
        progress: ((String) -> Void)? = nil
    ) throws -> (run: ArmRun, model: MoETransformer<Float>) {
        let c = trainConfig(o, seed: seed)
        let net = try MoETransformer<Float>(model, seed: seed)
        let seconds = train(Trainer(model: net, config: c, data: data, outDir: nil), until: c.steps, progress: progress)
        let run = measure(net, data: data, config: c, seed: seed, steps: c.steps, seconds: seconds)
        return (run, net)
    }

    /// Steps `trainer` up to step `until`, reporting "step s/until" at most every 5 s; returns the seconds taken.
    public static func train(_ trainer: Trainer, until: Int, progress: ((String) -> Void)? = nil) -> Double {
        let start = Date()
        var lastReport = Date.distantPast
        while trainer.state.step < until {
            trainer.step()
            if let progress, Date().timeIntervalSince(lastReport) > 5 || trainer.state.step == until {
                lastReport = Date()
                progress("step \(trainer.state.step)/\(until)")
            }
        }
        return Date().timeIntervalSince(start)
    }

    /// A trained model's validation loss and load; `steps` of `config`'s batches took `seconds`.
    public static func measure(
        _ net: MoETransformer<Float>, data: TextDataset, config c: TrainConfig, seed: UInt64, steps: Int, seconds: Double
    ) -> ArmRun {
        let loss = Evaluation.validationLoss(net, data: data, config: c)
        let load = validationLoad(net, data: data, config: c)
        var worst: Double? = load.isEmpty ? nil : 1, unused = 0
        for l in load where l.contains(where: { $0 > 0 }) {
            worst = max(worst ?? 1, RoutingStatistics.maxOverMean(l))
            unused += l.filter { $0 == 0 }.count
        }
        return ArmRun(
            seed: seed, validationLoss: loss, worstMaxOverMean: worst, unusedExperts: unused,
            tokensPerSecond: Double(steps * c.batch * c.sequence) / seconds, seconds: seconds,
            parameters: net.parameterCount, activeParameters: net.activeParameterCount)
    }

    /// Kept assignments per expert, per MoE layer, over the fixed validation windows, routed with `options`
    /// (inference by default; training routing for BASE's balanced assignment).
    public static func validationLoad(
        _ model: MoETransformer<Float>, data: TextDataset, config c: TrainConfig, options: RouteOptions = .inference
    ) -> [[Int]] {
        var load = model.moeLayers.map { [Int](repeating: 0, count: $0.config.numExperts) }
        guard !load.isEmpty else { return load }
        for (x, _) in Evaluation.validationBatches(data, config: c) {
            let out = model(ids: x, batch: c.batch, .inference, options: options)
            for (i, m) in out.moe.enumerated() {
                for (e, k) in m.statistics.tokensPerExpert.enumerated() { load[i][e] += k }
            }
        }
        return load
    }
}

/// Mean and sample standard deviation, and the paired test the experiments use.
public enum SeedStatistics {
    public static func mean(_ v: [Double]) -> Double { v.reduce(0, +) / Double(max(v.count, 1)) }

    /// Sample standard deviation (n - 1); 0 for fewer than two values.
    public static func std(_ v: [Double]) -> Double {
        guard v.count > 1 else { return 0 }
        let m = mean(v)
        return (v.reduce(0) { $0 + ($1 - m) * ($1 - m) } / Double(v.count - 1)).squareRoot()
    }

    /// Whether `a` is below `b` beyond two standard deviations of the per-seed differences (paired by seed):
    /// mean(b - a) > 2 sd(b - a). With a single seed, whether a < b.
    public static func below(_ a: [Double], _ b: [Double]) -> Bool {
        precondition(a.count == b.count, "[paired] \(a.count) and \(b.count) seeds")
        let d = zip(b, a).map { $0 - $1 }
        return mean(d) > 0 && mean(d) > 2 * std(d)
    }

    /// "mean ± sd" with `digits` decimals.
    public static func format(_ v: [Double], digits: Int = 4) -> String {
        v.count > 1 ? String(format: "%.\(digits)f ± %.\(digits)f", mean(v), std(v)) : String(format: "%.\(digits)f", mean(v))
    }
}

/// One arm of an experiment: a name and the model it trains.
public struct ExperimentArm: Sendable {
    public var name: String
    public var model: TransformerConfig
    public init(_ name: String, _ model: TransformerConfig) {
        self.name = name
        self.model = model
    }
}

extension ExperimentRunner {
    /// Runs every arm with every seed (seed-major, so each seed's corpus is built once), reporting progress as
    /// "[arm seed s] ...". `measure` may add figures to a finished run from its trained model and the seed's data.
    public static func runArms(
        _ arms: [ExperimentArm], options o: ExperimentOptions, progress: ((String) -> Void)? = nil,
        measure: ((ExperimentArm, MoETransformer<Float>, TextDataset, inout ArmRun) -> Void)? = nil
    ) throws -> [String: [ArmRun]] {
        var runs: [String: [ArmRun]] = [:]
        for seed in o.seeds {
            let data = TextDataset(seed: seed)
            for arm in arms {
                var (run, model) = try ExperimentRunner.run(arm.model, seed: seed, options: o, data: data) { line in
                    progress?("[\(arm.name), seed \(seed)] \(line)")
                }
                measure?(arm, model, data, &run)
                let balance = run.worstMaxOverMean.map { String(format: ", worst max/mean %.2f, %d unused", $0, run.unusedExperts) } ?? ""
                progress?(String(format: "[%@, seed %llu] validation loss %.4f%@, %.0f tok/s",
                                 arm.name, seed, run.validationLoss, balance, run.tokensPerSecond))
                runs[arm.name, default: []].append(run)
            }
        }
        return runs
    }

    /// The standard columns: validation loss, worst layer's max/mean and unused experts (mean and sd over
    /// seeds), tokens per second.
    public static let standardColumns = ["arm", "val_loss", "val_loss_sd", "worst_max_over_mean", "worst_max_over_mean_sd", "unused_experts", "tokens_per_s"]

    public static func standardRow(_ name: String, _ r: [ArmRun]) -> [ExperimentCell] {
        let loss = r.map(\.validationLoss), worst = r.compactMap(\.worstMaxOverMean)
        let balance: [ExperimentCell] = worst.isEmpty ? [.text(""), .text("")] : [.number(SeedStatistics.mean(worst)), .number(SeedStatistics.std(worst))]
        return [.text(name), .number(SeedStatistics.mean(loss)), .number(SeedStatistics.std(loss))] + balance + [
                .number(SeedStatistics.mean(r.map { Double($0.unusedExperts) })), .number(SeedStatistics.mean(r.map(\.tokensPerSecond)))]
    }
}
