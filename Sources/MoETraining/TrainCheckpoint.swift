import Foundation

/// The trainer's own state, saved beside the weights: where the run is and every random stream's position.
public struct TrainerState: Codable, Sendable, Equatable {
    public var step: Int
    public var adamSteps: Int
    public var sampler: BatchSampler
    public var random: RandomGenerator
    public var train: TrainConfig
    public var dataSource: String
    /// Experts added during the run, in order (lifelong growth).
    public var growth: [ExpertGrowth] = []

    public init(step: Int, adamSteps: Int, sampler: BatchSampler, random: RandomGenerator, train: TrainConfig, dataSource: String) {
        (self.step, self.adamSteps, self.sampler, self.random, self.train, self.dataSource) = (step, adamSteps, sampler, random, train, dataSource)
    }

    enum CodingKeys: String, CodingKey { case step, adamSteps, sampler, random, train, dataSource, growth }

    /// Checkpoints from before lifelong growth have no `growth`.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        step = try c.decode(Int.self, forKey: .step)
        adamSteps = try c.decode(Int.self, forKey: .adamSteps)
        sampler = try c.decode(BatchSampler.self, forKey: .sampler)
        random = try c.decode(RandomGenerator.self, forKey: .random)
        train = try c.decode(TrainConfig.self, forKey: .train)
        dataSource = try c.decode(String.self, forKey: .dataSource)
        growth = try c.decodeIfPresent([ExpertGrowth].self, forKey: .growth) ?? []
    }
}

/// One growth of every MoE layer: at `step`, `added` experts (indices from `firstNew`), the older ones frozen or
/// not, on the data named by `dataSource`.
public struct ExpertGrowth: Codable, Sendable, Equatable {
    public var step: Int
    public var firstNew: Int
    public var added: Int
    public var frozeOld: Bool
    public var dataSource: String
    /// Coefficient of the distillation term from the model before this growth (0: none); the checkpoint then
    /// holds that model in `teacher/`.
    public var distill: Double

    public init(step: Int, firstNew: Int, added: Int, frozeOld: Bool, dataSource: String, distill: Double = 0) {
        (self.step, self.firstNew, self.added, self.frozeOld, self.dataSource, self.distill) = (step, firstNew, added, frozeOld, dataSource, distill)
    }

    enum CodingKeys: String, CodingKey {
        case step, firstNew = "first_new", added, frozeOld = "froze_old", dataSource = "data_source", distill
    }
}

/// A checkpoint directory: `model.safetensors` (weights and buffers by parameter path), `config.json`,
/// `optimizer.safetensors` (AdamW moments `m.<path>`, `v.<path>`) and `trainer_state.json`. Each file is
/// written atomically; the directory is assembled under a temporary name and renamed into place, so a
/// crash leaves either the old checkpoint or the new one, never half of one.
public enum TrainCheckpoint {
    public struct CheckpointError: Error, CustomStringConvertible {
        public let description: String
    }

    public static func name(step: Int) -> String { "step-" + String(format: "%07d", step) }

    public static func save(
        model: MoETransformer<Float>, optimizer: AdamW<Float>, state: TrainerState, to dir: String, teacher: MoETransformer<Float>? = nil
    ) throws {
        let fm = FileManager.default
        let parent = (dir as NSString).deletingLastPathComponent
        do { try fm.createDirectory(atPath: parent, withIntermediateDirectories: true) } catch {
            throw CheckpointError(description: "\(parent): cannot be created (\(reason(error))); choose another --out")
        }
        removeUnfinished(parent)
        let tmp = parent + "/." + (dir as NSString).lastPathComponent + ".tmp-\(getpid())"
        // A failed write (a full disk, a read-only folder) removes its partial directory and leaves every earlier
        // checkpoint as it was.
        do {
            try? fm.removeItem(atPath: tmp)
            try fm.createDirectory(atPath: tmp, withIntermediateDirectories: false)
            try write(model: model, optimizer: optimizer, state: state, teacher: teacher, into: tmp)
        } catch {
            try? fm.removeItem(atPath: tmp)
            throw CheckpointError(description: "\(dir): cannot be written (\(reason(error))); the earlier checkpoints are untouched; free space or choose another --out")
        }
        if fm.fileExists(atPath: dir) { try fm.removeItem(atPath: dir) }
        guard rename(tmp, dir) == 0 else {
            throw CheckpointError(description: "cannot move \(tmp) to \(dir): \(String(cString: strerror(errno)))")
        }
        AtomicFile.syncDirectory(parent)
    }

    /// The system's reason, short (Foundation's errors carry a paragraph).
    public static func reason(_ error: Error) -> String {
        if let w = error as? AtomicFile.WriteError { return w.reason }
        let ns = error as NSError
        if let posix = ns.userInfo[NSUnderlyingErrorKey] as? NSError, posix.domain == NSPOSIXErrorDomain {
            return String(cString: strerror(Int32(posix.code)))
        }
        return "\(error)"
    }

    static func write(model: MoETransformer<Float>, optimizer: AdamW<Float>, state: TrainerState, teacher: MoETransformer<Float>?, into tmp: String) throws {
        let fm = FileManager.default
        try ModelFiles.saveWeights(model, to: tmp + "/model.safetensors")
        try ModelFiles.saveConfig(model.config, to: tmp)
        if let teacher {
            try fm.createDirectory(atPath: tmp + "/teacher", withIntermediateDirectories: false)
            try ModelFiles.saveWeights(teacher, to: tmp + "/teacher/model.safetensors")
            try ModelFiles.saveConfig(teacher.config, to: tmp + "/teacher")
        }
        var moments: [(String, SafetensorsWriter.Payload)] = []
        for p in model.parameters {
            if let m = optimizer.m[p.path], let v = optimizer.v[p.path] {
                moments.append(("m." + p.path, .float(m)))
                moments.append(("v." + p.path, .float(v)))
            }
        }
        try SafetensorsWriter.write(moments, metadata: ["adam_steps": String(optimizer.stepCount)], to: tmp + "/optimizer.safetensors")
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        try AtomicFile.write(try enc.encode(state), to: tmp + "/trainer_state.json")
        // Last: the manifest of every file's size and checksum. A directory without it, or whose files disagree
        // with it, was never finished (or was damaged since) and is never read.
        try writeManifest(tmp)
    }

    /// Loads a checkpoint into a new model and optimizer; every file is checked strictly.
    public static func load(_ dir: String) throws -> (model: MoETransformer<Float>, optimizer: AdamW<Float>, state: TrainerState) {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: dir, isDirectory: &isDir), isDir.boolValue else {
            throw CheckpointError(description: "\(dir): checkpoint directory not found; pass a directory such as out/checkpoints/step-0000400")
        }
        for f in requiredFiles where !FileManager.default.fileExists(atPath: dir + "/" + f) {
            throw CheckpointError(description: "\(dir)/\(f): missing; the checkpoint is incomplete, use an earlier one")
        }
        if let problem = verify(dir) {
            throw CheckpointError(description: "\(dir): \(problem); use an earlier checkpoint (or resume from the run directory, which picks the newest intact one)")
        }
        let model = try ModelFiles.load(dir, as: Float.self)
        let stateData = try Data(contentsOf: URL(fileURLWithPath: dir + "/trainer_state.json"))
        let state: TrainerState
        do { state = try JSONDecoder().decode(TrainerState.self, from: stateData) } catch {
            throw CheckpointError(description: "\(dir)/trainer_state.json: corrupt or incomplete; use an earlier checkpoint")
        }
        let file = try SafetensorsFile(path: dir + "/optimizer.safetensors")
        var opt = Trainer.optimizer(for: model, weightDecay: state.train.weightDecay)
        opt.stepCount = state.adamSteps
        for p in model.parameters where file.info("m." + p.path) != nil {
            let m: Tensor<Float> = try file.tensor("m." + p.path)
            let v: Tensor<Float> = try file.tensor("v." + p.path)
            guard m.shape == p.shape, v.shape == p.shape else {
                throw CheckpointError(description: "\(dir)/optimizer.safetensors: moments of \(p.path) have shape \(Shape.describe(m.shape)), the model needs \(Shape.describe(p.shape)); the checkpoint is inconsistent")
            }
            opt.m[p.path] = m
            opt.v[p.path] = v
        }
        return (model, opt, state)
    }

    /// The distillation teacher saved with a checkpoint (`teacher/`), or nil; a checkpoint whose state asks for
    /// distillation without one is refused.
    public static func loadTeacher(_ dir: String, state: TrainerState) throws -> MoETransformer<Float>? {
        let coef = state.growth.last?.distill ?? 0
        guard FileManager.default.fileExists(atPath: dir + "/teacher/config.json") else {
            if coef > 0 { throw CheckpointError(description: "\(dir)/teacher: missing, but the run distills from it (coefficient \(coef)); the checkpoint is incomplete, use an earlier one") }
            return nil
        }
        return try ModelFiles.load(dir + "/teacher", as: Float.self)
    }

    public static let manifestName = "manifest.json"
    /// The files every checkpoint holds (a teacher's directory may come with them).
    static let requiredFiles = ["config.json", "model.safetensors", "optimizer.safetensors", "trainer_state.json"]

    /// Writes `dir/manifest.json`: every other file under `dir` with its size and CRC-32.
    static func writeManifest(_ dir: String) throws {
        var files: [String: [String: String]] = [:]
        for rel in try regularFiles(dir) where rel != manifestName {
            guard let (crc, bytes) = CRC32.file(dir + "/" + rel) else {
                throw CheckpointError(description: "\(dir)/\(rel): cannot be read back to checksum it")
            }
            files[rel] = ["bytes": String(bytes), "crc32": String(format: "%08x", crc)]
        }
        let data = try JSONSerialization.data(withJSONObject: ["files": files], options: [.prettyPrinted, .sortedKeys])
        try AtomicFile.write(data, to: dir + "/" + manifestName)
    }

    static func regularFiles(_ dir: String) throws -> [String] {
        guard let e = FileManager.default.enumerator(atPath: dir) else { return [] }
        var out: [String] = []
        while let rel = e.nextObject() as? String {
            var isDir: ObjCBool = false
            if FileManager.default.fileExists(atPath: dir + "/" + rel, isDirectory: &isDir), !isDir.boolValue { out.append(rel) }
        }
        return out.sorted()
    }

    /// Why the checkpoint in `dir` cannot be trusted, or nil when its manifest is there and every file matches it
    /// (and no file is missing from it).
    public static func verify(_ dir: String) -> String? {
        guard let data = FileManager.default.contents(atPath: dir + "/" + manifestName) else {
            return "\(manifestName) is missing (the checkpoint was never finished)"
        }
        guard let o = try? JSONSerialization.jsonObject(with: data) as? [String: Any], let files = o["files"] as? [String: [String: String]] else {
            return "\(manifestName) is not a manifest"
        }
        for rel in requiredFiles where files[rel] == nil {
            return "\(manifestName) does not list \(rel)"
        }
        for (rel, entry) in files.sorted(by: { $0.key < $1.key }) {
            guard let (crc, bytes) = CRC32.file(dir + "/" + rel) else { return "\(rel) is missing or unreadable" }
            guard String(bytes) == entry["bytes"], String(format: "%08x", crc) == entry["crc32"] else {
                return "\(rel) does not match \(manifestName) (\(bytes) bytes, crc32 \(String(format: "%08x", crc)); the manifest says \(entry["bytes"] ?? "?") bytes, crc32 \(entry["crc32"] ?? "?"))"
            }
        }
        return nil
    }

    /// The newest checkpoint under `root` that passes `verify`, each newer one skipped with a warning through
    /// `warn`; nil when none does.
    public static func newestIntact(_ root: String, warn: (String) -> Void) -> String? {
        for dir in list(root).reversed() {
            guard let problem = verify(dir) else { return dir }
            warn("warning: skipping \(dir): \(problem)")
        }
        return nil
    }

    /// Removes what a killed save left behind: `.step-*.tmp-*` directories under `root` (each save starts so).
    static func removeUnfinished(_ root: String) {
        for name in (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? [] where name.hasPrefix(".step-") && name.contains(".tmp-") {
            try? FileManager.default.removeItem(atPath: root + "/" + name)
        }
    }

    /// Checkpoint directories under `root`, oldest first.
    public static func list(_ root: String) -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []
        return names.filter { $0.hasPrefix("step-") && !$0.contains(".tmp") }.sorted().map { root + "/" + $0 }
    }
}
