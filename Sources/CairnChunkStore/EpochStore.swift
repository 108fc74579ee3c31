// Per-volume fencing epochs of a data directory, one small file each:
// epochs/<volume hex 16> = epoch u64 LE + CRC32C u32 LE of those 8 bytes.
// Replaced atomically: write a temporary file, fsync it, rename, fsync the directory.
import CairnCore
import Foundation
import Glibc

final class EpochStore: @unchecked Sendable {
    private let directory: String
    private let lock = NSLock()
    /// Guarded by `lock`; loaded at open, so reads never touch the disk.
    private var epochs: [VolumeID: Epoch] = [:]

    init(directory: String) throws {
        self.directory = directory
        try Sys.mkdir(directory)
        for name in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [] {
            if name.hasSuffix(".tmp") {
                unlink("\(directory)/\(name)")  // an interrupted raise; the old file still holds
                continue
            }
            guard name.count == 16, let volume = UInt64(name, radix: 16) else { continue }
            epochs[volume] = try Self.load("\(directory)/\(name)")
        }
    }

    func epoch(of volume: VolumeID) -> Epoch {
        lock.withLock { epochs[volume] ?? 0 }
    }

    /// Stores max(current, epoch); holds the lock across the fsyncs so raises are ordered.
    func raise(_ volume: VolumeID, to epoch: Epoch) throws -> Epoch {
        try lock.withLock {
            let current = epochs[volume] ?? 0
            guard epoch > current else { return current }
            let path = "\(directory)/\(ChunkKey.hex(volume))"
            var bytes = [UInt8](repeating: 0, count: 12)
            bytes.withUnsafeMutableBytes { b in
                b.storeBytes(of: epoch.littleEndian, toByteOffset: 0, as: UInt64.self)
                let crc = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: b[0..<8]))
                b.storeBytes(of: crc.littleEndian, toByteOffset: 8, as: UInt32.self)
            }
            let fd = try Sys.open(path + ".tmp", O_WRONLY | O_CREAT | O_TRUNC)!
            defer { Glibc.close(fd) }
            try bytes.withUnsafeBytes { try Sys.pwriteFull(fd, $0, 0, path) }
            try Sys.fsync(fd, path + ".tmp")
            guard rename(path + ".tmp", path) == 0 else { throw Sys.error("rename", path) }
            try Sys.fsyncDirectory(directory)
            epochs[volume] = epoch
            return epoch
        }
    }

    func remove(_ volume: VolumeID) throws {
        try lock.withLock {
            let path = "\(directory)/\(ChunkKey.hex(volume))"
            guard unlink(path) == 0 || errno == ENOENT else { throw Sys.error("unlink", path) }
            try Sys.fsyncDirectory(directory)
            epochs[volume] = nil
        }
    }

    private static func load(_ path: String) throws -> Epoch {
        guard let data = FileManager.default.contents(atPath: path), data.count == 12 else {
            throw CairnError.io("\(path): epoch file is not 12 bytes")
        }
        return try [UInt8](data).withUnsafeBytes { b in
            let epoch = UInt64(littleEndian: b.loadUnaligned(fromByteOffset: 0, as: UInt64.self))
            let crc = UInt32(littleEndian: b.loadUnaligned(fromByteOffset: 8, as: UInt32.self))
            guard crc == CRC32C.checksum(UnsafeRawBufferPointer(rebasing: b[0..<8])) else {
                throw CairnError.io("\(path): epoch file fails its checksum")
            }
            return epoch
        }
    }
}
