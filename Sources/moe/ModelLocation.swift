import Foundation
import MoEAnalysis

/// Resolves --checkpoint: a checkpoint directory, or a run directory whose newest checkpoint is used.
enum ModelLocation {
    static func checkpointDirectory(_ path: String) throws -> String {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue else {
            throw UsageError("\(path): not found; pass a checkpoint directory (runs/default/checkpoints/step-0001200) or a run directory (runs/default)")
        }
        if FileManager.default.fileExists(atPath: path + "/config.json") { return path }
        if let newest = TrainCheckpoint.list(path + "/checkpoints").last { return newest }
        throw UsageError("\(path): holds neither config.json nor checkpoints/; pass a checkpoint or run directory")
    }

    static func loadModel(_ path: String) throws -> (dir: String, model: MoETransformer<Float>) {
        let dir = try checkpointDirectory(path)
        do { return (dir, try ModelFiles.load(dir, as: Float.self)) } catch { throw UsageError("\(error)") }
    }

    /// A Hugging Face model directory (any supported model_type) or a swift-moe checkpoint or run directory.
    static func loadAny(_ path: String) throws -> MoETransformer<Float> {
        let dir = try checkpointDirectory(path)
        do { return try HuggingFace.load(dir) } catch { throw UsageError("\(error)") }
    }
}
