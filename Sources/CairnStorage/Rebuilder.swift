// Fills a chunk replica on this node from healthy replicas elsewhere (rebuild and resync).
//
// The target is already in the chunk's replica set (state `rebuilding`) at epoch E when
// the order arrives, so every write since E reaches it directly. The copy then compares
// the source's block table with its own and brings over only the blocks that differ:
// for a node that returns after a short absence (a resync, `sinceEpoch` > 0) that is
// what changed while it was away; for a new or emptied replica it is every written block.
// The per-block versions are the dirty-range log: no separate log to keep in step.
// Copies go through putBlocks with `overwriteBelow: E`: a local block older than E is
// replaced (it predates this membership, e.g. an unacknowledged write from before), while
// a block written at E or later is replaced only by a newer version. So a concurrent
// write is never undone by the copy.
import CairnChunkStore
import CairnCore
import CairnWire
import Foundation
import Logging
import NIOCore

/// Sends a request to another storage node (the rebuild source).
public typealias RebuildTransport = @Sendable (String, DataRequest) async throws -> ByteBuffer

final class Rebuilder: @unchecked Sendable {
    let transport: RebuildTransport
    let logger: Logger
    let progress = Locked<[ChunkKey: RebuildProgress]>([:])
    /// Told the bytes of each copied batch (the node's metrics); set before serving.
    var onCopied: (@Sendable (UInt64) -> Void)?
    /// Blocks copied per request to the source.
    static let batchBlocks = 256

    init(transport: @escaping RebuildTransport, logger: Logger) {
        self.transport = transport; self.logger = logger
    }

    func run(_ order: RebuildOrder, service: StorageService) async throws -> UInt64 {
        let a = order.address
        let key = ChunkKey(volume: a.volume, chunk: a.chunk)
        let count = service.chunkSize / blockSize
        let local = try await service.backend(for: key).blockTable(key, first: 0, count: count)
        var lastError: Error = CairnError.unavailable("no rebuild source for chunk \(key)")
        for source in order.sources {
            do {
                let payload = try await transport(source, .blockTable(a, first: 0, count: UInt32(count)))
                let remote = try DataResponse.decodeEntries(payload)
                guard remote.count == count else { throw CairnError.protocolError("source returned \(remote.count) entries") }
                // Every block whose entry differs (state, checksum or version): the tables
                // are small (24 bytes a block), so comparing all of them is cheap, and it
                // also catches blocks a returning node missed before it left (an
                // unacknowledged write that reached only the other replicas).
                let wanted = (0..<count).filter { remote[$0] != local[$0] }
                let copied = try await copy(wanted, from: source, order: order, key: key, service: service)
                logger.info("rebuild copied", metadata: [
                    "chunk": "\(key)", "blocks": "\(wanted.count)", "bytes": "\(copied)", "source": "\(source)",
                    "since": "\(order.sinceEpoch)"])
                return copied
            } catch let e as CairnError {
                if case .staleEpoch = e { throw e }
                lastError = e
                logger.warning("rebuild source failed", metadata: ["chunk": "\(key)", "source": "\(source)", "error": "\(e)"])
            }
        }
        throw lastError
    }

    func copy(_ wanted: [Int], from source: String, order: RebuildOrder, key: ChunkKey,
              service: StorageService) async throws -> UInt64 {
        let total = UInt64(wanted.count * blockSize)
        progress.withLock { $0[key] = RebuildProgress(volume: key.volume, chunk: key.chunk, copiedBytes: 0, totalBytes: total) }
        defer { _ = progress.withLock { $0.removeValue(forKey: key) } }
        var copied: UInt64 = 0
        let started = Date()
        var i = 0
        while i < wanted.count {
            // One request per run of nearby wanted blocks, at most `batchBlocks` long.
            let first = wanted[i]
            var j = i
            while j + 1 < wanted.count && wanted[j + 1] - first < Self.batchBlocks { j += 1 }
            let span = wanted[j] - first + 1
            let payload = try await transport(source, .readBlocksRaw(order.address, first: UInt32(first), count: UInt32(span)))
            let want = Set(wanted[i...j])
            let blocks = try DataResponse.decodeRawBlocks(payload).filter { want.contains(Int($0.index)) }
            _ = try await service.putBlocks(key, blocks, overwriteBelow: order.address.epoch)
            copied += UInt64(blocks.count * blockSize)
            onCopied?(UInt64(blocks.count * blockSize))
            progress.withLock { $0[key]?.copiedBytes = copied }
            i = j + 1
            try await throttle(copied: copied, since: started, bytesPerSecond: order.bytesPerSecond)
        }
        return copied
    }

    /// Sleeps as long as the copy is ahead of its rate limit.
    func throttle(copied: UInt64, since start: Date, bytesPerSecond: UInt64) async throws {
        guard bytesPerSecond > 0 else { return }
        let due = Double(copied) / Double(bytesPerSecond)
        let elapsed = Date().timeIntervalSince(start)
        if due > elapsed { try await Task.sleep(for: .milliseconds(Int((due - elapsed) * 1000))) }
    }

    var active: [RebuildProgress] { Array(progress.snapshot.values) }
}
