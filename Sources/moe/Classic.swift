import ArgumentParser
import Foundation
import MoEAnalysis

struct Classic: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train the Jacobs-Jordan-Nowlan-Hinton (1991) mixture of local experts on Peterson & Barney vowels.",
        discussion: """
            Trains two mixtures on the same seeded data, one with the cooperative loss ||d - sum p_i o_i||^2 and \
            one with the competitive loss -log sum p_i exp(-||d - o_i||^2 / 2), then reports test accuracy, \
            which expert wins each vowel and speaker group, and writes the vowel-plane plot as SVG.
            """)

    @Option(help: "Number of experts (1-64).") var experts = 4
    @Option(help: "Hidden units per expert; 0 = linear experts as in the paper.") var hidden = 0
    @Option(help: "Full-batch training steps per mixture.") var steps = 2000
    @Option(name: .customLong("lr"), help: "Adam learning rate.") var learningRate = 0.02
    @Option(help: "Seed for the data and the initialization.") var seed: UInt64 = 1
    @Option(help: "Which objective(s) to train: both, competitive or cooperative.") var loss = "both"
    @Option(help: "Where to write the SVG plot.") var plot = "classic-moe.svg"
    @Flag(help: "Print the results as one JSON object instead of tables.") var json = false

    func run() throws {
        var config = ClassicConfig()
        config.experts = experts
        config.hidden = hidden
        config.steps = steps
        config.learningRate = learningRate
        config.seed = seed
        do { try config.validate() } catch { throw UsageError("\(error)") }
        let kinds: [ClassicMixture<Float>.Loss]
        switch loss {
        case "both": kinds = [.competitive, .cooperative]
        case "competitive": kinds = [.competitive]
        case "cooperative": kinds = [.cooperative]
        default: throw UsageError("invalid --loss \(loss): use both, competitive or cooperative")
        }
        let plotDir = URL(fileURLWithPath: plot).deletingLastPathComponent().path
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: plotDir, isDirectory: &isDir), isDir.boolValue else {
            throw UsageError("cannot write \(plot): directory \(plotDir) does not exist; create it or choose another path")
        }
        let data = VowelData(seed: seed)
        let interactive = isatty(2) != 0
        var results: [(title: String, result: ClassicResult, report: LocalizationReport)] = []
        for kind in kinds {
            let started = Date()
            let result = ClassicExperiment.run(config, loss: kind, data: data) { step, l in
                // A live line on a terminal; a line per 500 steps in logs.
                if !json && (interactive || step % 500 == 0) {
                    let line = String(format: "[%@] step %5d/%d  loss %.4f", kind.rawValue, step + 1, steps, l)
                    FileHandle.standardError.write(Data((interactive ? "\r" + line : line + "\n").utf8))
                }
            }
            if !json {
                let took = String(format: "[%@] done in %.1fs\n", kind.rawValue, Date().timeIntervalSince(started))
                FileHandle.standardError.write(Data(((interactive ? "\n" : "") + took).utf8))
            }
            let report = LocalizationReport(gates: result.testGates, samples: result.testSamples, experts: experts)
            results.append(("\(kind.rawValue) loss", result, report))
        }
        do { try ClassicPlot.render(results).write(to: plot) } catch { throw UsageError("\(error)") }
        if json {
            printJSON(results)
            return
        }
        print("Mixture of local experts (Jacobs et al. 1991) on Peterson & Barney (1952) vowels")
        print("data: \(data.train.count) training tokens, \(data.test.count) test tokens from new speakers; \(experts) \(hidden == 0 ? "linear" : "\(hidden)-hidden-unit") experts; seed \(seed)\n")
        for (title, r, rep) in results {
            print("== \(title) ==")
            print(String(format: "final training loss %.4f   train accuracy %.1f%%   test accuracy %.1f%%",
                         r.finalLoss, r.trainAccuracy * 100, r.testAccuracy * 100))
            print(String(format: "top-gated expert alone: test accuracy %.1f%%", r.winnerAloneAccuracy * 100))
            print(String(format: "localization: mean max gate %.3f, inputs with one dominant expert (gate >= 0.9) %.1f%%, effective experts per input %.2f, experts in use %d",
                         rep.meanMaxGate, rep.dominatedFraction * 100, rep.effectiveExpertsPerInput, rep.expertsInUse()))
            print("inputs won per expert: " + rep.winShare.enumerated().map { String(format: "E%d %.0f%%", $0.offset, $0.element * 100) }.joined(separator: "  "))
            print("winning expert (mean gate share) per vowel and speaker group:")
            print(rep.table())
            print("")
        }
        print("plot written to \(plot)")
    }

    private func printJSON(_ results: [(title: String, result: ClassicResult, report: LocalizationReport)]) {
        let objects: [[String: Any]] = results.map { _, r, rep in
            [
                "loss": r.loss.rawValue, "final_loss": r.finalLoss, "train_accuracy": r.trainAccuracy,
                "test_accuracy": r.testAccuracy, "winner_alone_accuracy": r.winnerAloneAccuracy,
                "mean_max_gate": rep.meanMaxGate, "dominated_fraction": rep.dominatedFraction,
                "effective_experts_per_input": rep.effectiveExpertsPerInput, "experts_in_use": rep.expertsInUse(),
                "win_share": rep.winShare,
                "winners": rep.cells.map { ["vowel": VowelData.vowels[$0.vowel], "group": VowelData.groups[$0.group], "expert": $0.winner, "share": $0.share] as [String: Any] },
            ]
        }
        let payload: [String: Any] = ["experts": experts, "seed": seed, "steps": steps, "results": objects, "plot": plot]
        if let data = try? JSONSerialization.data(withJSONObject: payload, options: [.sortedKeys]) {
            print(String(decoding: data, as: UTF8.self))
        }
    }
}
