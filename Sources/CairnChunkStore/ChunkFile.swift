// One chunk replica on disk and the bounded cache of open chunk files.
//
// File layout: [block table: blockCount × 24-byte entries, padded to a 4 KiB multiple]
// [data region: chunkSize bytes, sparse]. A new file is all zeroes: every entry is a
// hole at version zero, which is what a never-written chunk means.
import CairnCore
import Foundation
import Glibc

final class ChunkFile: ChunkMedium, @unchecked Sendable {
    let key: ChunkKey
    let path: String
    let fd: Int32
    let dataOffset: Int
    /// Held shared by readers, exclusively by the committer while it applies a mutation.
    let lock = ReadWriteLock()
    /// Guarded by the cache lock.
    fileprivate var users = 0
    fileprivate var lastUse: UInt64 = 0

    init(key: ChunkKey, path: String, fd: Int32, dataOffset: Int) {
        self.key = key; self.path = path; self.fd = fd; self.dataOffset = dataOffset
    }
    deinit { Glibc.close(fd) }

    static func tableBytes(_ geometry: ChunkGeometry) -> Int {
        let raw = geometry.blockCount * BlockEntry.encodedSize
        return (raw + blockSize - 1) / blockSize * blockSize
    }

    func readEntries(first: Int, count: Int) throws -> [BlockEntry] {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: count * BlockEntry.encodedSize, alignment: 8)
        defer { buffer.deallocate() }
        try Sys.preadFull(fd, buffer, first * BlockEntry.encodedSize, path)
        return try BlockEntry.decode(UnsafeRawBufferPointer(buffer), count: count)
    }

    func writeEntries(_ entries: [BlockEntry], first: Int) throws {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: entries.count * BlockEntry.encodedSize, alignment: 8)
        defer { buffer.deallocate() }
        BlockEntry.encode(entries, into: buffer)
        try Sys.pwriteFull(fd, UnsafeRawBufferPointer(buffer), first * BlockEntry.encodedSize, path)
    }

    func readBlocks(first: Int, into buffer: UnsafeMutableRawBufferPointer) throws {
        try Sys.preadFull(fd, buffer, dataOffset + first * blockSize, path)
    }

    func writeBlocks(first: Int, from buffer: UnsafeRawBufferPointer) throws {
        try Sys.pwriteFull(fd, buffer, dataOffset + first * blockSize, path)
    }

    func punchBlocks(first: Int, count: Int) throws {
        try Sys.punchHole(fd, dataOffset + first * blockSize, count * blockSize, path)
    }
}

/// Open chunk files, at most `openFilesMax` that nobody is using. Files in use are never
/// closed under their users (the count is kept under the cache lock), so a reader and the
/// committer always share one `ChunkFile` and therefore one lock per chunk.
final class ChunkFileCache: @unchecked Sendable {
    static let openFilesMax = 256

    private let root: String
    private let geometry: ChunkGeometry
    private let lock = NSLock()
    private var files: [ChunkKey: ChunkFile] = [:]
    private var clock: UInt64 = 0

    init(root: String, geometry: ChunkGeometry) {
        self.root = root; self.geometry = geometry
    }

    func volumeDirectory(_ volume: VolumeID) -> String { "\(root)/\(ChunkKey.hex(volume))" }
    func path(_ key: ChunkKey) -> String { "\(volumeDirectory(key.volume))/\(key.chunk).chunk" }

    /// Runs `body` with the chunk's file; nil (without creating it) if it does not exist.
    /// With `create`, a missing file is created at full size (the committer only).
    /// `created` reports directories whose entries changed, for the next checkpoint.
    func withFile<T>(_ key: ChunkKey, create: Bool, created: (String) -> Void = { _ in },
                     _ body: (ChunkFile?) throws -> T) throws -> T {
        let file = try acquire(key, create: create, created: created)
        defer { if let file { release(file) } }
        return try body(file)
    }

    /// Unlinks the chunk's file and forgets it, both under the cache lock so no reader can
    /// cache the old file in between; current users keep reading the unlinked file.
    func removeFile(_ key: ChunkKey) throws {
        try lock.withLock {
            let path = path(key)
            guard unlink(path) == 0 || errno == ENOENT else { throw Sys.error("unlink", path) }
            files.removeValue(forKey: key)
        }
    }

    /// Moves a finished copy (`temporary`, synced) into place as the chunk's file, unless
    /// the chunk exists already; under the cache lock, so no reader sees a half state.
    /// Returns whether it was moved.
    func install(_ key: ChunkKey, from temporary: String) throws -> Bool {
        try lock.withLock {
            guard files[key] == nil, !Sys.exists(path(key)) else { return false }
            try Sys.rename(temporary, path(key))
            return true
        }
    }

    /// Removes the volume's directory with every chunk in it.
    func removeVolume(_ volume: VolumeID) throws {
        try lock.withLock {
            let directory = volumeDirectory(volume)
            if access(directory, F_OK) == 0 {
                do { try FileManager.default.removeItem(atPath: directory) } catch {
                    throw CairnError.io("removing \(directory): \(error)")
                }
            }
            files = files.filter { $0.key.volume != volume }
        }
    }

    func removeAll() {
        lock.withLock { files.removeAll() }
    }

    private func acquire(_ key: ChunkKey, create: Bool, created: (String) -> Void) throws -> ChunkFile? {
        lock.lock()
        defer { lock.unlock() }
        clock += 1
        if let file = files[key] {
            file.users += 1
            file.lastUse = clock
            return file
        }
        guard let file = try open(key, create: create, created: created) else { return nil }
        evictIfFull()
        file.users = 1
        file.lastUse = clock
        files[key] = file
        return file
    }

    private func release(_ file: ChunkFile) {
        lock.withLock {
            precondition(file.users > 0, "chunk file released more often than acquired")
            file.users -= 1
        }
    }

    /// Drops the least recently used idle file when the cache is full. When every file is
    /// busy the cache grows past its limit; that is bounded by the number of concurrent
    /// operations, which the mutation queue and the read pool bound.
    private func evictIfFull() {
        guard files.count >= Self.openFilesMax else { return }
        var victim: ChunkFile?
        for file in files.values where file.users == 0 {
            if victim == nil || file.lastUse < victim!.lastUse { victim = file }
        }
        if let victim { files.removeValue(forKey: victim.key) }
    }

    private func open(_ key: ChunkKey, create: Bool, created: (String) -> Void) throws -> ChunkFile? {
        let path = path(key)
        let dataOffset = ChunkFile.tableBytes(geometry)
        if let fd = try Sys.open(path, O_RDWR, missingOK: true) {
            return ChunkFile(key: key, path: path, fd: fd, dataOffset: dataOffset)
        }
        guard create else { return nil }
        let directory = volumeDirectory(key.volume)
        if access(directory, F_OK) != 0 {
            try Sys.mkdir(directory)
            created(root)
        }
        let fd = try Sys.open(path, O_RDWR | O_CREAT, missingOK: false)!
        let file = ChunkFile(key: key, path: path, fd: fd, dataOffset: dataOffset)
        try Sys.ftruncate(fd, dataOffset + geometry.chunkSize, path)
        created(directory)
        return file
    }
}
