// Chunk replicas in memory, for the deterministic simulation and tests. Same semantics
// as DiskChunkStore (the block rules are shared in ChunkOps); everything is "durable" the
// moment a call returns. One lock guards all state; calls never suspend while holding it.
import CairnCore
import Foundation

public final class MemoryChunkBackend: ChunkBackend, @unchecked Sendable {
    public let chunkSize: Int
    /// Reported by `usage()`.
    public var capacityBytes: UInt64
    private let geometry: ChunkGeometry
    private let lock = NSLock()
    private var chunks: [ChunkKey: MemoryChunk] = [:]
    private var epochs: [VolumeID: Epoch] = [:]
    private var closed = false

    public init(chunkSize: Int = chunkSizeDefault, capacityBytes: UInt64 = 1 << 40) throws {
        geometry = try ChunkGeometry(chunkSize: chunkSize)
        self.chunkSize = chunkSize
        self.capacityBytes = capacityBytes
    }

    public func write(_ key: ChunkKey, offset: Int, data: [UInt8], version: BlockVersion) async throws {
        try geometry.checkRange(offset: offset, length: data.count)
        try withChunk(key, create: !data.isEmpty) { chunk in
            try data.withUnsafeBytes { try ChunkOps.write(chunk!, offset: offset, data: $0, version: version, verifyOld: true) }
        }
    }

    public func trim(_ key: ChunkKey, offset: Int, length: Int, version: BlockVersion) async throws {
        try geometry.checkRange(offset: offset, length: length)
        try withChunk(key, create: length > 0) { chunk in
            try ChunkOps.trim(chunk!, offset: offset, length: length, version: version, verifyOld: true)
        }
    }

    public func read(_ key: ChunkKey, offset: Int, length: Int) async throws -> [UInt8] {
        try geometry.checkRange(offset: offset, length: length)
        return try withChunk(key, create: false) { chunk in
            guard let chunk else { return [UInt8](repeating: 0, count: length) }
            return try ChunkOps.read(chunk, offset: offset, length: length)
        }
    }

    public func blockTable(_ key: ChunkKey, first: Int, count: Int) async throws -> [BlockEntry] {
        try geometry.checkBlocks(first: first, count: count)
        return try withChunk(key, create: false) { chunk in
            guard let chunk else { return [BlockEntry](repeating: .hole, count: count) }
            return try chunk.readEntries(first: first, count: count)
        }
    }

    public func putBlocks(_ key: ChunkKey, blocks: [BlockCopy], overwriteBelow: Epoch) async throws -> Int {
        try geometry.checkCopies(blocks)
        guard !blocks.isEmpty else { return 0 }
        return try withChunk(key, create: true) { chunk in
            let chunk = chunk!
            let chosen = ChunkOps.selectCopies(blocks, overwriteBelow: overwriteBelow) { chunk.entries[$0].version }
            for position in chosen {
                let copy = blocks[position]
                if let data = copy.data, copy.entry.state == .data {
                    try data.withUnsafeBytes { try ChunkOps.put(chunk, index: copy.index, entry: copy.entry, data: $0) }
                } else {
                    try ChunkOps.put(chunk, index: copy.index, entry: copy.entry, data: nil)
                }
            }
            return chosen.count
        }
    }

    public func readBlockRaw(_ key: ChunkKey, index: Int) async throws -> (BlockEntry, [UInt8]) {
        try geometry.checkBlocks(first: index, count: 1)
        return try withChunk(key, create: false) { chunk in
            guard let chunk else { return (.hole, [UInt8](repeating: 0, count: blockSize)) }
            return try ChunkOps.readRaw(chunk, index: index)
        }
    }

    public func copyChunk(from: ChunkKey, to: ChunkKey) async throws -> Bool {
        try locked {
            guard chunks[to] == nil, let source = chunks[from] else { return false }
            let copy = MemoryChunk(blockCount: geometry.blockCount)
            copy.entries = source.entries
            copy.blocks = source.blocks
            chunks[to] = copy
            return true
        }
    }

    public func deleteChunk(_ key: ChunkKey) async throws {
        try locked { chunks[key] = nil }
    }

    public func deleteVolume(_ volume: VolumeID) async throws {
        try locked {
            chunks = chunks.filter { $0.key.volume != volume }
            epochs[volume] = nil
        }
    }

    public func epoch(of volume: VolumeID) -> Epoch {
        lock.withLock { epochs[volume] ?? 0 }
    }

    public func raiseEpoch(of volume: VolumeID, to epoch: Epoch) throws -> Epoch {
        try locked {
            let stored = max(epochs[volume] ?? 0, epoch)
            epochs[volume] = stored
            return stored
        }
    }

    public func inventory() -> [ChunkKey] {
        lock.withLock { chunks.keys.sorted { ($0.volume, $0.chunk) < ($1.volume, $1.chunk) } }
    }

    public func usage() -> (capacityBytes: UInt64, usedBytes: UInt64) {
        lock.withLock {
            (capacityBytes, chunks.values.reduce(0) { $0 + UInt64($1.blocks.count * blockSize) })
        }
    }

    public func close() throws {
        lock.withLock { closed = true }
    }

    // MARK: Fault hooks

    /// Flips one byte of a stored data block without updating its CRC (bit rot).
    public func corruptBlock(_ key: ChunkKey, index: Int) {
        lock.withLock {
            guard let chunk = chunks[key], chunk.blocks[index] != nil else { return }
            chunk.blocks[index]![0] ^= 0xFF
        }
    }

    private func locked<T>(_ body: () throws -> T) throws -> T {
        try lock.withLock {
            guard !closed else { throw CairnError.unavailable("memory chunk backend is closed") }
            return try body()
        }
    }

    private func withChunk<T>(_ key: ChunkKey, create: Bool, _ body: (MemoryChunk?) throws -> T) throws -> T {
        try locked {
            if create && chunks[key] == nil { chunks[key] = MemoryChunk(blockCount: geometry.blockCount) }
            return try body(chunks[key])
        }
    }
}

/// One chunk in memory: its table and the blocks that hold data (absent blocks are zero).
final class MemoryChunk: ChunkMedium {
    var entries: [BlockEntry]
    var blocks: [Int: [UInt8]] = [:]

    init(blockCount: Int) { entries = [BlockEntry](repeating: .hole, count: blockCount) }

    func readEntries(first: Int, count: Int) throws -> [BlockEntry] { Array(entries[first ..< first + count]) }

    func writeEntries(_ entries: [BlockEntry], first: Int) throws {
        self.entries.replaceSubrange(first ..< first + entries.count, with: entries)
    }

    func readBlocks(first: Int, into buffer: UnsafeMutableRawBufferPointer) throws {
        for i in 0 ..< buffer.count / blockSize {
            let target = UnsafeMutableRawBufferPointer(rebasing: buffer[i * blockSize ..< (i + 1) * blockSize])
            if let block = blocks[first + i] {
                block.withUnsafeBytes { target.copyMemory(from: $0) }
            } else {
                target.initializeMemory(as: UInt8.self, repeating: 0)
            }
        }
    }

    func writeBlocks(first: Int, from buffer: UnsafeRawBufferPointer) throws {
        for i in 0 ..< buffer.count / blockSize {
            blocks[first + i] = [UInt8](UnsafeRawBufferPointer(rebasing: buffer[i * blockSize ..< (i + 1) * blockSize]))
        }
    }

    func punchBlocks(first: Int, count: Int) throws {
        for index in first ..< first + count { blocks[index] = nil }
    }
}
