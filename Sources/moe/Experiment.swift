import ArgumentParser
import Foundation
import MoEAnalysis

struct ExperimentCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "experiment",
        abstract: "Run a seeded experiment of the MoE literature; print its table and verdict, write its plot and JSON.",
        discussion: """
            Experiments: balancing (the load-balancing methods on the default model), experts (expert count at fixed \
            active compute, Clark et al. 2022), granularity (fine-grained experts at fixed parameters, Krajewski et \
            al. 2024), peer (PEER at growing N against a dense FFN and a coarse MoE, He 2024), upcycling (a dense model \
            continued as dense or upcycled to an MoE, Komatsuzaki et al. 2022; --steps is S = T), base (BASE layers against top-1 Switch, Lewis et al. 2021), lifelong (prose, then code, then records: naive \
            fine-tuning against expert growth, with freezing and distillation, Chen et al. 2023; each stage is half of \
            --steps). Each trains every arm with every seed for the same steps, prints a table (mean and standard \
            deviation over seeds), then the criterion it tests and "reproduced: yes/no". An effect counts only beyond \
            2 standard deviations of the per-seed differences. Writes OUT/NAME.svg and OUT/NAME.json.
            """)

    static let names = ["balancing", "experts", "granularity", "peer", "upcycling", "base", "lifelong"]

    @Argument(help: "The experiment: balancing, experts, granularity, peer, upcycling, base or lifelong.") var name: String
    @Option(help: "Number of seeds (1, 2, ... counted from --seed).") var seeds = 3
    @Option(help: "First seed.") var seed: UInt64 = 1
    @Option(help: "Training steps per run.") var steps = 300
    @Option(help: "Directory for NAME.svg and NAME.json.") var out = "runs/experiments"
    @Option(help: "peer: PEER expert counts, comma-separated squares (default 1024,4096,16384).") var peerSizes: String?
    @Option(help: "peer: PEER heads (default 4).") var peerHeads: Int?
    @Option(name: .customLong("peer-k"), help: "peer: experts per head, at most √N (default 16).") var peerK: Int?
    @Flag(help: "Print one JSON object (experiment, table, reproduced, ...) instead of the table.") var json = false

    /// The PEER options, checked against every size.
    func peerOptions() throws -> PEERExperiment.Options {
        var p = PEERExperiment.Options()
        if let peerSizes {
            let parts = peerSizes.split(separator: ",", omittingEmptySubsequences: false).map { Int($0.trimmingCharacters(in: .whitespaces)) }
            guard !parts.isEmpty, parts.allSatisfy({ $0 != nil }) else { throw UsageError("invalid --peer-sizes \(peerSizes): give expert counts such as 1024,4096,16384") }
            p.sizes = parts.map { $0! }
        }
        if let peerHeads { p.heads = peerHeads }
        if let peerK { p.expertsPerHead = peerK }
        for n in p.sizes {
            do { try PEERExperiment.peer(n, p).validate() } catch {
                throw UsageError("invalid PEER size \(n) (--peer-sizes, --peer-k, --peer-heads): \(error)")
            }
        }
        guard Set(p.sizes).count == p.sizes.count, p.sizes == p.sizes.sorted() else {
            throw UsageError("invalid --peer-sizes \(peerSizes ?? ""): list distinct sizes in increasing order")
        }
        return p
    }

    func validate() throws {
        guard Self.names.contains(name) else {
            throw UsageError("unknown experiment \(name): use one of \(Self.names.joined(separator: ", "))")
        }
        guard seeds >= 1 && seeds <= 20 else { throw UsageError("invalid --seeds \(seeds): use between 1 and 20 seeds") }
        guard steps >= 10 && steps <= 100_000 else { throw UsageError("invalid --steps \(steps): use between 10 and 100000 steps") }
        if name != "peer" {
            let given = [("--peer-sizes", peerSizes != nil), ("--peer-heads", peerHeads != nil), ("--peer-k", peerK != nil)].filter(\.1).map(\.0)
            if !given.isEmpty { throw UsageError("\(given.joined(separator: ", ")) \(given.count == 1 ? "applies" : "apply") only to the peer experiment; drop \(given.count == 1 ? "it" : "them") for \(name)") }
        } else {
            _ = try peerOptions()
        }
    }

    func run() throws {
        var o = ExperimentOptions()
        o.seeds = (0..<seeds).map { seed &+ UInt64($0) }
        o.steps = steps
        try prepareOut()
        let interactive = isatty(2) != 0
        let progress: (String) -> Void = { line in
            FileHandle.standardError.write(Data((interactive ? "\r\u{1B}[K" + line : line + "\n").utf8))
        }
        let report: ExperimentReport
        var metrics: [(String, (ArmRun) -> Double)] = [("validation loss (nats/byte)", { $0.validationLoss })]
        do {
            switch name {
            case "balancing":
                report = try BalancingExperiment.run(o, progress: progress)
                metrics.append(("worst layer max/mean load", { $0.worstMaxOverMean ?? .nan }))
            case "experts":
                report = try ExpertCountExperiment.run(o, progress: progress)
            case "peer":
                let p = try peerOptions()
                report = try PEERExperiment.run(o, peer: p, progress: progress)
                metrics.append(("PEER experts retrieved on validation (share)", { $0.extra["expert_usage"] ?? .nan }))
            case "base":
                report = try BASEExperiment.run(o, progress: progress)
                metrics.append(("worst layer max/mean load (inference)", { $0.worstMaxOverMean ?? .nan }))
                metrics.append(("worst layer max/mean load (training routing)", { $0.extra["train_worst_max_over_mean"] ?? .nan }))
            case "lifelong":
                report = try LifelongExperiment.run(o, progress: progress)
                metrics = [("forgetting on A (loss rise after C)", { $0.extra["forgetting_A"] ?? .nan }), ("loss on C (the last distribution)", { $0.extra["loss_C"] ?? .nan })]
            case "upcycling":
                report = try UpcyclingExperiment.run(o, progress: progress)
                metrics.append(("worst layer max/mean load", { $0.worstMaxOverMean ?? .nan }))
            default:
                report = try GranularityExperiment.run(o, progress: progress)
                metrics.append(("routing share of an MoE layer's forward", { ($0.extra["routing_ms"] ?? .nan) / ($0.extra["layer_ms"] ?? .nan) }))
            }
        } catch let e as ConfigError { throw UsageError("\(e)") }
        if interactive { FileHandle.standardError.write(Data("\n".utf8)) }
        // Every experiment's table has one row per arm, named in its first column.
        let arms = report.rows.compactMap { row -> String? in if case .text(let name) = row.first { return name } else { return nil } }
        let svg = ExperimentPlot.render(report, arms: arms, metrics: metrics)
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys, .prettyPrinted]
        let data = try enc.encode(report)
        do {
            try svg.write(to: out + "/\(name).svg")
            try AtomicFile.write(data + Data("\n".utf8), to: out + "/\(name).json")
        } catch { throw UsageError("cannot write to \(out): \(error)") }
        if json {
            print(String(decoding: data, as: UTF8.self))
            return
        }
        print("moe experiment \(name): \(seeds) seed\(seeds == 1 ? "" : "s") (\(o.seeds.map(String.init).joined(separator: ", "))), \(report.steps) steps per run, \(Int(report.seconds)) s")
        print(report.table())
        print("\nfinding: \(report.finding)")
        print("criterion: \(report.criterion)")
        print("reproduced: \(report.reproduced ? "yes" : "no")")
        print("wrote \(out)/\(name).svg and \(out)/\(name).json")
    }

    func prepareOut() throws {
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: out, isDirectory: &isDir) {
            guard isDir.boolValue else { throw UsageError("--out \(out) is a file; give a directory") }
        } else {
            do { try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true) } catch {
                throw UsageError("cannot create --out \(out): \(error.localizedDescription)")
            }
        }
        guard FileManager.default.isWritableFile(atPath: out) else { throw UsageError("--out \(out) is not writable; choose another directory") }
    }
}
