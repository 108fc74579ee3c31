// /proc/self/mountinfo, parsed: the CSI node service asks the kernel what is mounted
// instead of remembering it, so a restarted plugin sees exactly what its predecessor left;
// attach, local up and umount ask it whether a path is a mountpoint without touching the
// path (a hung FUSE daemon would block a stat of it).
import Foundation

public struct MountEntry: Sendable, Equatable {
    public var mountID: Int
    /// major:minor of the mounted device.
    public var device: String
    /// The path inside the mounted filesystem that appears at the mount point ("/" usually;
    /// a bind mount of a device node shows its path in devtmpfs).
    public var root: String
    public var mountPoint: String
    public var options: [String]
    public var fsType: String
    public var source: String

    public var readOnly: Bool { options.contains("ro") }
}

public enum MountInfo {
    /// Parses the text of a mountinfo file; malformed lines are skipped (the kernel
    /// writes this file, but a line we cannot read must not stop a cleanup).
    public static func parse(_ text: String) -> [MountEntry] {
        text.split(separator: "\n").compactMap { parseLine(String($0)) }
    }

    /// One line: `36 35 98:0 /root /mnt opts - ext3 /dev/root rw,errors=continue`
    /// (fields 7.. until " - " are optional tags).
    static func parseLine(_ line: String) -> MountEntry? {
        let fields = line.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
        guard let dash = fields.firstIndex(of: "-"), dash >= 6, fields.count >= dash + 3,
              let id = Int(fields[0]) else { return nil }
        return MountEntry(mountID: id, device: fields[2], root: unescape(fields[3]), mountPoint: unescape(fields[4]),
                          options: fields[5].split(separator: ",").map(String.init),
                          fsType: fields[dash + 1], source: unescape(fields[dash + 2]))
    }

    /// The kernel writes space, tab, newline and backslash as \ooo octal escapes.
    static func unescape(_ s: String) -> String {
        guard s.contains("\\") else { return s }
        var out: [UInt8] = []
        let b = Array(s.utf8)
        var i = 0
        while i < b.count {
            if b[i] == UInt8(ascii: "\\"), i + 4 <= b.count,
               let v = UInt8(String(decoding: b[(i + 1)..<(i + 4)], as: UTF8.self), radix: 8) {
                out.append(v); i += 4
            } else {
                out.append(b[i]); i += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// This process's mounts now (none if the file cannot be read).
    public static func current() -> [MountEntry] {
        parse((try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)) ?? "")
    }

    /// Whether `path` (absolute or relative to the working directory) is a mountpoint now.
    public static func isMountpoint(_ path: String) -> Bool {
        mount(at: absolute(path), in: current()) != nil
    }

    /// `path` made absolute against the working directory, with "." and ".." resolved as
    /// text: nothing touches the filesystem (a stat of a hung FUSE mount would block).
    /// Symbolic links are not followed, as mountinfo does not follow them either.
    public static func absolute(_ path: String) -> String {
        let full = path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
        var parts: [Substring] = []
        for c in full.split(separator: "/") where c != "." {
            if c == ".." { _ = parts.popLast() } else { parts.append(c) }
        }
        return "/" + parts.joined(separator: "/")
    }

    /// The last (topmost) mount at `path`, if any.
    public static func mount(at path: String, in entries: [MountEntry]) -> MountEntry? {
        let p = normalise(path)
        return entries.last { $0.mountPoint == p }
    }

    public static func normalise(_ path: String) -> String {
        var p = path
        while p.count > 1 && p.hasSuffix("/") { p.removeLast() }
        return p
    }
}
