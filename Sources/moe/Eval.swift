import ArgumentParser
import Foundation
import MoEAnalysis

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Validation loss, bits per byte and held-out arithmetic accuracy of a checkpoint.")

    @Option(help: "Checkpoint directory, or a run directory (its newest checkpoint).") var checkpoint: String
    @Option(help: "Evaluate on this file instead of the data the checkpoint was trained on.") var data: String?
    @Option(help: "Held-out arithmetic problems to score (built-in corpus).") var problems = 200
    @Flag(help: "Print one JSON object.") var json = false

    func run() throws {
        guard problems >= 1 && problems <= 100_000 else { throw UsageError("invalid --problems \(problems): use between 1 and 100000") }
        let (dir, model) = try ModelLocation.loadModel(checkpoint)
        var config = TrainConfig()
        if let stateData = try? Data(contentsOf: URL(fileURLWithPath: dir + "/trainer_state.json")),
           let state = try? JSONDecoder().decode(TrainerState.self, from: stateData) {
            config = state.train
        }
        if let data { config.data = data }
        let dataset: TextDataset
        if let path = config.data {
            do { dataset = try TextDataset(file: path, minimumValidation: config.sequence + 2) } catch let e as TextDataset.DataError { throw UsageError(e.description) }
        } else {
            dataset = TextDataset(seed: config.seed)
        }
        let report = Evaluation.run(model, data: dataset, config: config, arithmeticProblems: problems)
        if json {
            let enc = JSONEncoder()
            enc.outputFormatting = [.sortedKeys]
            print(String(decoding: try enc.encode(report), as: UTF8.self))
            return
        }
        print("checkpoint: \(dir)")
        print("data: \(dataset.source)")
        print(String(format: "validation loss: %.4f nats per byte", report.validationLoss))
        print(String(format: "bits per byte:   %.4f", report.bitsPerByte))
        if report.domainLoss != nil { print("validation loss by domain:") }
        if let d = report.domainLoss {
            for k in Domain.allCases { if let v = d[k.rawValue] { print(String(format: "  %-12@ %.4f", k.rawValue as NSString, v)) } }
        }
        if let a = report.arithmeticAccuracy {
            print(String(format: "arithmetic:      %.1f%% exact match on %d held-out problems", a * 100, report.arithmeticProblems))
        }
    }
}
