// CairnFS: the shared POSIX filesystem's logic, pure Swift, testable without a kernel.
//
// Invariants:
// - All metadata lives in a MetaStore under one prefix (/fs/<name>/): inodes at
//   i/<ino>, directory entries at d/<parent ino>/<name>, the inode counter at next-ino,
//   o/<ino> an inode without names that a mount still has open.
// - Every change is one store transaction whose compares name the modRevision of every
//   key it read (FSTransaction), so mounts on several hosts changing the same namespace
//   serialise at the store and never corrupt it; a loser re-reads and retries.
// - Adding or removing an entry of a directory also rewrites the directory's inode
//   (mtime/ctime), so the directory inode's modRevision versions its entry set: rmdir's
//   emptiness check and a concurrent create in that directory conflict at the store.
// - File data never enters the store: it is written first, durably, as immutable
//   slices on replicated data volumes (SliceStore); only then does a transaction make
//   the file's map reference it. A reader therefore never sees a map naming data that
//   is not on the storage nodes yet. A file's map is sorted and non-overlapping.
import CairnCore

/// File type bits of `mode` (Linux values).
public enum FileType {
    public static let mask: UInt32 = 0o170000
    public static let socket: UInt32 = 0o140000
    public static let symlink: UInt32 = 0o120000
    public static let regular: UInt32 = 0o100000
    public static let block: UInt32 = 0o060000
    public static let directory: UInt32 = 0o040000
    public static let char: UInt32 = 0o020000
    public static let fifo: UInt32 = 0o010000
}

public typealias InodeNumber = UInt64

/// A point in time in nanoseconds since the Unix epoch.
public struct FSTime: Codable, Sendable, Equatable {
    public var nanoseconds: Int64
    public init(nanoseconds: Int64) { self.nanoseconds = nanoseconds }
    public var seconds: Int64 { nanoseconds >= 0 ? nanoseconds / 1_000_000_000 : (nanoseconds - 999_999_999) / 1_000_000_000 }
    public var subsecondNanoseconds: Int64 { nanoseconds - seconds * 1_000_000_000 }
}

/// Where one piece of a file's data lives: `length` bytes of the data volume `volume`
/// from `volumeOffset`, holding the file's bytes from `fileOffset`. Immutable once
/// written; a later write of the same range makes a new slice that replaces it in the map.
public struct Slice: Codable, Sendable, Equatable {
    public var fileOffset: UInt64
    public var length: UInt64
    public var volume: String
    public var volumeOffset: UInt64
    public init(fileOffset: UInt64, length: UInt64, volume: String, volumeOffset: UInt64) {
        self.fileOffset = fileOffset; self.length = length; self.volume = volume; self.volumeOffset = volumeOffset
    }
    public var fileEnd: UInt64 { fileOffset + length }
}

public struct Inode: Codable, Sendable, Equatable {
    public var ino: InodeNumber
    /// Type and permission bits, as st_mode.
    public var mode: UInt32
    public var uid: UInt32
    public var gid: UInt32
    public var nlink: UInt32
    public var size: UInt64
    public var rdev: UInt64
    public var atime: FSTime
    public var mtime: FSTime
    public var ctime: FSTime
    /// A symlink's target.
    public var target: String?
    /// A regular file's data, sorted by fileOffset, non-overlapping; gaps are holes.
    public var slices: [Slice]
    public var xattrs: [String: [UInt8]]
    /// A directory's parent (the root is its own parent); nil for other types.
    public var parent: InodeNumber?

    public var type: UInt32 { mode & FileType.mask }
    public var isDirectory: Bool { type == FileType.directory }
    public var isRegular: Bool { type == FileType.regular }

    public init(ino: InodeNumber, mode: UInt32, uid: UInt32, gid: UInt32, now: FSTime) {
        self.ino = ino; self.mode = mode; self.uid = uid; self.gid = gid
        nlink = (mode & FileType.mask) == FileType.directory ? 2 : 1
        size = 0; rdev = 0; atime = now; mtime = now; ctime = now
        target = nil; slices = []; xattrs = [:]; parent = nil
    }
}

/// One entry of a directory.
public struct DirEntry: Codable, Sendable, Equatable {
    public var ino: InodeNumber
    /// The target's type bits, for readdir.
    public var type: UInt32
    public init(ino: InodeNumber, type: UInt32) { self.ino = ino; self.type = type }
}

/// A filesystem error: the errno a POSIX caller sees, and why.
public struct FSError: Error, CustomStringConvertible, Equatable {
    public var errno: Int32
    public var message: String
    public init(_ errno: Int32, _ message: String) { self.errno = errno; self.message = message }
    public var description: String { "errno \(errno): \(message)" }

    // Linux errno values; CairnFS stays free of libc so it is testable anywhere.
    public static func noEntry(_ m: String) -> FSError { FSError(2, m) }
    public static func io(_ m: String) -> FSError { FSError(5, m) }
    public static func exists(_ m: String) -> FSError { FSError(17, m) }
    public static func crossDevice(_ m: String) -> FSError { FSError(18, m) }
    public static func notDirectory(_ m: String) -> FSError { FSError(20, m) }
    public static func isDirectory(_ m: String) -> FSError { FSError(21, m) }
    public static func invalid(_ m: String) -> FSError { FSError(22, m) }
    public static func tooBig(_ m: String) -> FSError { FSError(27, m) }
    public static func noSpace(_ m: String) -> FSError { FSError(28, m) }
    public static func range(_ m: String) -> FSError { FSError(34, m) }
    public static func nameTooLong(_ m: String) -> FSError { FSError(36, m) }
    public static func notEmpty(_ m: String) -> FSError { FSError(39, m) }
    public static func tooManyLinks(_ m: String) -> FSError { FSError(31, m) }
    public static func noData(_ m: String) -> FSError { FSError(61, m) }
    public static func notPermitted(_ m: String) -> FSError { FSError(1, m) }
    public static func busy(_ m: String) -> FSError { FSError(16, m) }
}
