// Small JSON state files written so that a crash leaves the old content or the new one.
import Foundation

public enum AtomicFile {
    /// Encodes `value` as sorted, pretty-printed JSON into `path`: created with `mode` under
    /// a temporary name next to it, synced, then renamed over the old file. The parent
    /// directory is created when missing.
    public static func writeJSON<T: Encodable>(_ value: T, to path: String, mode: mode_t = 0o600) throws {
        let parent = URL(fileURLWithPath: path).deletingLastPathComponent().path
        try FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: true)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let data = [UInt8](try encoder.encode(value))
        let temp = path + ".tmp-\(getpid())"
        let fd = open(temp, O_WRONLY | O_CREAT | O_TRUNC, mode)
        guard fd >= 0 else { throw CairnError.io("cannot create \(temp): \(String(cString: strerror(errno)))") }
        let written = data.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        let synced = fsync(fd)
        close(fd)
        guard written == data.count, synced == 0, rename(temp, path) == 0 else {
            unlink(temp)
            throw CairnError.io("cannot write \(path): \(String(cString: strerror(errno)))")
        }
    }
}
