import Foundation

/// CRC-32 (IEEE 802.3, the polynomial of zlib and PNG), for the checkpoint manifest: cheap enough to run over
/// every checkpoint file, and it catches torn writes and flipped bits (it is not a defence against tampering).
public enum CRC32 {
    static let table: [UInt32] = (0..<256).map { i in
        var c = UInt32(i)
        for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }

    public static func checksum(_ bytes: UnsafeRawBufferPointer, continuing crc: UInt32 = 0) -> UInt32 {
        var c = ~crc
        table.withUnsafeBufferPointer { t in
            for b in bytes { c = t[Int((c ^ UInt32(b)) & 0xFF)] ^ (c >> 8) }
        }
        return ~c
    }

    /// The CRC-32 and size of a file, read in 4 MiB pieces; nil when it cannot be read.
    public static func file(_ path: String) -> (crc: UInt32, bytes: Int)? {
        guard let h = FileHandle(forReadingAtPath: path) else { return nil }
        defer { try? h.close() }
        var crc: UInt32 = 0, total = 0
        while true {
            let piece: Data?
            do { piece = try h.read(upToCount: 4 << 20) } catch { return nil }
            guard let chunk = piece, !chunk.isEmpty else { break }  // nil or empty: the end of the file
            crc = chunk.withUnsafeBytes { checksum($0, continuing: crc) }
            total += chunk.count
        }
        return (crc, total)
    }
}
