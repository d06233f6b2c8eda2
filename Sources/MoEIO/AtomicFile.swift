import Foundation

/// Atomic file replacement: write a temporary file beside the target, fsync it, rename it over the target.
public enum AtomicFile {
    public struct WriteError: Error, CustomStringConvertible {
        public let path: String
        public let reason: String
        public var description: String { "cannot write \(path): \(reason)" }
    }

    public static func write(_ data: Data, to path: String) throws {
        try write(to: path) { fd in
            try data.withUnsafeBytes { try writeAll(fd, $0, path: path) }
        }
    }

    /// Writes through `body` (which gets the open descriptor) into a temporary file beside `path`, then
    /// fsyncs and renames it over `path`, and fsyncs the directory so the rename itself is durable.
    public static func write(to path: String, _ body: (Int32) throws -> Void) throws {
        let url = URL(fileURLWithPath: path)
        let dir = url.deletingLastPathComponent().path
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: dir, isDirectory: &isDir), isDir.boolValue else {
            throw WriteError(path: path, reason: "directory \(dir) does not exist; create it or choose another path")
        }
        let tmp = dir + "/." + url.lastPathComponent + ".tmp-\(getpid())"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { throw WriteError(path: path, reason: String(cString: strerror(errno))) }
        do {
            try body(fd)
        } catch {
            close(fd)
            unlink(tmp)
            throw error
        }
        let synced = fsync(fd) == 0
        close(fd)
        guard synced, rename(tmp, path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(tmp)
            throw WriteError(path: path, reason: reason)
        }
        syncDirectory(dir)
    }

    /// Writes every byte of `buffer` to `fd`.
    public static func writeAll(_ fd: Int32, _ buffer: UnsafeRawBufferPointer, path: String) throws {
        var off = 0
        while off < buffer.count {
            let n = Foundation.write(fd, buffer.baseAddress! + off, buffer.count - off)
            if n <= 0 { throw WriteError(path: path, reason: String(cString: strerror(errno))) }
            off += n
        }
    }

    /// fsync on a directory, so that renames inside it survive a crash.
    public static func syncDirectory(_ dir: String) {
        let fd = open(dir, O_RDONLY)
        if fd >= 0 {
            fsync(fd)
            close(fd)
        }
    }
}
