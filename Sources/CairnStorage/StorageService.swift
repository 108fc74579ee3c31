// The storage node's request handling: checks every request's epoch against the
// volume's fencing epoch, validates ranges, and runs it on the chunk backend of the data
// directory that holds (or will hold) the chunk.
//
// Invariant: a request whose epoch is older than the volume's stored epoch changes
// nothing and is answered `staleEpoch` with the current epoch; a newer epoch is stored
// durably before the request runs.
import CairnChunkStore
import CairnCore
import CairnNet
import CairnWire
import Foundation
import Logging
import NIOCore

public final class StorageService: DataService, @unchecked Sendable {
    let backends: [ChunkBackend]
    let logger: Logger
    let rebuilder: Rebuilder
    /// Which backend holds each chunk; chunks not listed go to the emptiest one.
    private let placement = Locked<[ChunkKey: Int]>([:])
    private let epochs = Locked<[VolumeID: Epoch]>([:])
    /// Chunks made by copy-ups, with when (monotonic seconds): the manager lists a copy in
    /// the chunk's record only after the copy answered, so a garbage list computed from an
    /// inventory taken in between must not delete it.
    private let copiedAt = Locked<[ChunkKey: Double]>([:])
    /// How long a fresh copy is safe from heartbeat garbage collection.
    static let copyGraceSeconds = 120.0

    public var chunkSize: Int { backends[0].chunkSize }

    public init(backends: [ChunkBackend], transport: @escaping RebuildTransport, logger: Logger) {
        precondition(!backends.isEmpty, "a storage node needs at least one data directory")
        self.backends = backends
        self.logger = logger
        self.rebuilder = Rebuilder(transport: transport, logger: logger)
        placement.withLock { p in
            for (i, b) in backends.enumerated() { for key in b.inventory() { p[key] = i } }
        }
    }

    func backend(for key: ChunkKey) -> ChunkBackend {
        let index = placement.withLock { p -> Int in
            if let i = p[key] { return i }
            let emptiest = backends.indices.max { a, b in
                let ua = backends[a].usage(), ub = backends[b].usage()
                return (ua.capacityBytes &- ua.usedBytes) < (ub.capacityBytes &- ub.usedBytes)
            }!
            p[key] = emptiest
            return emptiest
        }
        return backends[index]
    }

    // MARK: Epochs (kept in the first data directory)

    func currentEpoch(_ volume: VolumeID) -> Epoch {
        epochs.withLock { e in
            if let v = e[volume] { return v }
            let v = backends[0].epoch(of: volume)
            e[volume] = v
            return v
        }
    }

    /// Refuses an older epoch; stores a newer one before the request runs.
    func admit(_ volume: VolumeID, epoch: Epoch) throws {
        let current = currentEpoch(volume)
        if epoch < current { throw CairnError.staleEpoch(current: current) }
        if epoch > current { try raise(volume, to: epoch) }
    }

    @discardableResult
    func raise(_ volume: VolumeID, to epoch: Epoch) throws -> Epoch {
        try epochs.withLock { e in
            let stored = try backends[0].raiseEpoch(of: volume, to: epoch)
            e[volume] = stored
            return stored
        }
    }

    // MARK: Requests

    func checkRange(_ offset: UInt32, _ length: Int) throws {
        guard length <= WireLimits.ioLengthMax, Int(offset) + length <= chunkSize else {
            throw CairnError.invalidArgument("range \(offset)+\(length) is outside a chunk of \(chunkSize) bytes")
        }
    }

    func checkBlocks(_ first: UInt32, _ count: UInt32) throws {
        let blocks = chunkSize / blockSize
        guard count <= UInt32(blocks), Int(first) + Int(count) <= blocks else {
            throw CairnError.invalidArgument("blocks \(first)+\(count) are outside a chunk of \(blocks) blocks")
        }
    }

    public func handle(_ request: DataRequest) async throws -> ByteBuffer {
        switch request {
        case .hello, .ping:
            return ByteBuffer()
        case .read(let a, let offset, let length):
            try checkRange(offset, Int(length))
            try admit(a.volume, epoch: a.epoch)
            let key = ChunkKey(volume: a.volume, chunk: a.chunk)
            return ByteBuffer(bytes: try await backend(for: key).read(key, offset: Int(offset), length: Int(length)))
        case .write(let a, let seq, let offset, let data):
            try checkRange(offset, data.readableBytes)
            try admit(a.volume, epoch: a.epoch)
            let key = ChunkKey(volume: a.volume, chunk: a.chunk)
            try await backend(for: key).write(key, offset: Int(offset), payload: Self.payload(data),
                                              version: BlockVersion(epoch: a.epoch, seq: seq))
            return ByteBuffer()
        case .trim(let a, let seq, let offset, let length):
            try checkRange(offset, Int(length))
            try admit(a.volume, epoch: a.epoch)
            let key = ChunkKey(volume: a.volume, chunk: a.chunk)
            try await backend(for: key).trim(key, offset: Int(offset), length: Int(length), version: BlockVersion(epoch: a.epoch, seq: seq))
            return ByteBuffer()
        case .blockTable(let a, let first, let count):
            try checkBlocks(first, count)
            try admit(a.volume, epoch: a.epoch)
            let key = ChunkKey(volume: a.volume, chunk: a.chunk)
            return DataResponse.encodeEntries(try await backend(for: key).blockTable(key, first: Int(first), count: Int(count)))
        case .readBlocksRaw(let a, let first, let count):
            try checkBlocks(first, count)
            guard Int(count) * blockSize <= WireLimits.ioLengthMax else {
                throw CairnError.invalidArgument("READ_BLOCKS_RAW of \(count) blocks is above the limit")
            }
            try admit(a.volume, epoch: a.epoch)
            let key = ChunkKey(volume: a.volume, chunk: a.chunk)
            return DataResponse.encodeRawBlocks(try await rawBlocks(key, first: Int(first), count: Int(count)))
        case .putBlocks(let a, let blocks):
            try admit(a.volume, epoch: a.epoch)
            let key = ChunkKey(volume: a.volume, chunk: a.chunk)
            let applied = try await putBlocks(key, blocks, overwriteBelow: 0)
            return DataResponse.u64(UInt64(applied))
        case .fence(let volume, let epoch):
            return DataResponse.u64(try raise(volume, to: epoch))
        case .deleteChunk(let a):
            try admit(a.volume, epoch: a.epoch)
            let key = ChunkKey(volume: a.volume, chunk: a.chunk)
            try await backend(for: key).deleteChunk(key)
            _ = placement.withLock { $0.removeValue(forKey: key) }
            return ByteBuffer()
        case .deleteVolume(let volume, let epoch):
            // Checked, not stored: the delete removes the epoch file anyway, and storing it
            // first could fail on the full disk the delete is meant to relieve.
            let current = currentEpoch(volume)
            if epoch < current { throw CairnError.staleEpoch(current: current) }
            try await deleteVolume(volume)
            return ByteBuffer()
        case .copyChunk(let from, let to):
            try admit(from.volume, epoch: from.epoch)
            try admit(to.volume, epoch: to.epoch)
            let source = ChunkKey(volume: from.volume, chunk: from.chunk)
            let target = ChunkKey(volume: to.volume, chunk: to.chunk)
            let backend = place(target, beside: source)
            let copied = try await backend.copyChunk(from: source, to: target)
            copiedAt.withLock { $0[target] = Self.monotonicSeconds() }
            return DataResponse.u64(copied ? 1 : 0)
        case .rebuild(let order):
            try admit(order.address.volume, epoch: order.address.epoch)
            let copied = try await rebuilder.run(order, service: self)
            return DataResponse.u64(copied)
        }
    }

    /// The readable bytes of a request's buffer, borrowed (not copied) for the chunk store:
    /// the payload keeps the buffer's storage alive, and NIO copies before any writer
    /// changes storage that is referenced twice.
    static func payload(_ data: ByteBuffer) -> ChunkPayload {
        data.withUnsafeReadableBytesWithStorageManagement { bytes, storage in
            ChunkPayload(borrowing: bytes, owner: storage.takeUnretainedValue())
        }
    }

    /// The backend for a copy of `source`: the source's own (the copy is a local file
    /// copy), unless the target is placed already.
    func place(_ target: ChunkKey, beside source: ChunkKey) -> ChunkBackend {
        _ = backend(for: source)  // Places the source if it had no place yet.
        let index = placement.withLock { p -> Int in
            if let i = p[target] { return i }
            let i = p[source]!
            p[target] = i
            return i
        }
        return backends[index]
    }

    static func monotonicSeconds() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    /// Whether a garbage-collection delete of `key` must wait: a copy-up made it recently.
    public func recentlyCopied(_ key: ChunkKey) -> Bool {
        let now = Self.monotonicSeconds()
        return copiedAt.withLock { c in
            c = c.filter { now - $0.value < Self.copyGraceSeconds }
            return c[key] != nil
        }
    }

    func rawBlocks(_ key: ChunkKey, first: Int, count: Int) async throws -> [BlockPut] {
        let backend = self.backend(for: key)
        let table = try await backend.blockTable(key, first: first, count: count)
        var out: [BlockPut] = []
        out.reserveCapacity(count)
        for (i, entry) in table.enumerated() {
            if entry.state == .data {
                let (e, data) = try await backend.readBlockRaw(key, index: first + i)
                out.append(BlockPut(index: UInt32(first + i), entry: e, data: data))
            } else {
                out.append(BlockPut(index: UInt32(first + i), entry: entry, data: nil))
            }
        }
        return out
    }

    func putBlocks(_ key: ChunkKey, _ blocks: [BlockPut], overwriteBelow: Epoch) async throws -> Int {
        let blocksPerChunk = chunkSize / blockSize
        for b in blocks {
            guard Int(b.index) < blocksPerChunk else {
                throw CairnError.invalidArgument("block \(b.index) is outside a chunk of \(blocksPerChunk) blocks")
            }
            if b.entry.state == .data, b.data?.count != blockSize {
                throw CairnError.invalidArgument("block \(b.index) carries no 4096 bytes of data")
            }
        }
        return try await backend(for: key).putBlocks(
            key, blocks: blocks.map { (index: Int($0.index), entry: $0.entry, data: $0.data) }, overwriteBelow: overwriteBelow)
    }

    func deleteVolume(_ volume: VolumeID) async throws {
        for b in backends { try await b.deleteVolume(volume) }
        placement.withLock { p in p = p.filter { $0.key.volume != volume } }
        epochs.withLock { _ = $0.removeValue(forKey: volume) }
    }

    public func deleteChunk(_ key: ChunkKey) async throws {
        try await backend(for: key).deleteChunk(key)
        _ = placement.withLock { $0.removeValue(forKey: key) }
    }

    public func inventory() -> [ChunkKey] { backends.flatMap { $0.inventory() } }

    public func usage() -> (capacityBytes: UInt64, usedBytes: UInt64) {
        backends.reduce((0, 0)) { acc, b in
            let u = b.usage()
            return (acc.0 + u.capacityBytes, acc.1 + u.usedBytes)
        }
    }
}
