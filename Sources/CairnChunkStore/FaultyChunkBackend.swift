// A fault-injecting filter over any backend: I/O errors on writes or reads, and delays.
// Used by tests and, behind a flag, by operators rehearsing failures. The switches may be
// flipped from any thread while calls are in flight; one lock guards them.
import CairnCore
import Foundation

public final class FaultyChunkBackend: ChunkBackend, @unchecked Sendable {
    public let inner: ChunkBackend
    private let lock = NSLock()
    private var _failWrites = false
    private var _failReads = false
    private var _delay: Duration?

    public init(wrapping inner: ChunkBackend) { self.inner = inner }

    /// Mutations (write, trim, putBlocks, deletes, raiseEpoch) throw `CairnError.io`.
    public var failWrites: Bool {
        get { lock.withLock { _failWrites } }
        set { lock.withLock { _failWrites = newValue } }
    }
    /// Reads (read, blockTable, readBlockRaw) throw `CairnError.io`.
    public var failReads: Bool {
        get { lock.withLock { _failReads } }
        set { lock.withLock { _failReads = newValue } }
    }
    /// Added before every async call.
    public var delay: Duration? {
        get { lock.withLock { _delay } }
        set { lock.withLock { _delay = newValue } }
    }

    public var chunkSize: Int { inner.chunkSize }

    public func write(_ key: ChunkKey, offset: Int, data: [UInt8], version: BlockVersion) async throws {
        try await fault(write: true, "write \(key)")
        try await inner.write(key, offset: offset, data: data, version: version)
    }

    public func write(_ key: ChunkKey, offset: Int, payload: ChunkPayload, version: BlockVersion) async throws {
        try await fault(write: true, "write \(key)")
        try await inner.write(key, offset: offset, payload: payload, version: version)
    }

    public func trim(_ key: ChunkKey, offset: Int, length: Int, version: BlockVersion) async throws {
        try await fault(write: true, "trim \(key)")
        try await inner.trim(key, offset: offset, length: length, version: version)
    }

    public func read(_ key: ChunkKey, offset: Int, length: Int) async throws -> [UInt8] {
        try await fault(write: false, "read \(key)")
        return try await inner.read(key, offset: offset, length: length)
    }

    public func blockTable(_ key: ChunkKey, first: Int, count: Int) async throws -> [BlockEntry] {
        try await fault(write: false, "block table \(key)")
        return try await inner.blockTable(key, first: first, count: count)
    }

    public func putBlocks(_ key: ChunkKey, blocks: [BlockCopy], overwriteBelow: Epoch) async throws -> Int {
        try await fault(write: true, "put blocks \(key)")
        return try await inner.putBlocks(key, blocks: blocks, overwriteBelow: overwriteBelow)
    }

    public func readBlockRaw(_ key: ChunkKey, index: Int) async throws -> (BlockEntry, [UInt8]) {
        try await fault(write: false, "raw read \(key)")
        return try await inner.readBlockRaw(key, index: index)
    }

    public func deleteChunk(_ key: ChunkKey) async throws {
        try await fault(write: true, "delete \(key)")
        try await inner.deleteChunk(key)
    }

    public func copyChunk(from: ChunkKey, to: ChunkKey) async throws -> Bool {
        try await fault(write: true, "copy \(from) to \(to)")
        return try await inner.copyChunk(from: from, to: to)
    }

    public func deleteVolume(_ volume: VolumeID) async throws {
        try await fault(write: true, "delete volume \(volume)")
        try await inner.deleteVolume(volume)
    }

    public func epoch(of volume: VolumeID) -> Epoch { inner.epoch(of: volume) }

    public func raiseEpoch(of volume: VolumeID, to epoch: Epoch) throws -> Epoch {
        if failWrites { throw CairnError.io("injected fault: raise epoch of \(volume)") }
        return try inner.raiseEpoch(of: volume, to: epoch)
    }

    public func inventory() -> [ChunkKey] { inner.inventory() }
    public func usage() -> (capacityBytes: UInt64, usedBytes: UInt64) { inner.usage() }
    public func close() throws { try inner.close() }

    private func fault(write: Bool, _ what: String) async throws {
        if let delay { try await Task.sleep(for: delay) }
        if write ? failWrites : failReads { throw CairnError.io("injected fault: \(what)") }
    }
}
