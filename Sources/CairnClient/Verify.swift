// Replica verification (scrub): do the replicas of each chunk agree, and does every
// stored block still match its checksum? Reads only; repairs nothing.
import CairnCore
import CairnWire
import NIOCore

public struct ChunkVerification: Codable, Sendable {
    public var chunk: ChunkIndex
    public var replicas: [NodeID]
    /// Blocks whose state or checksum differ between replicas.
    public var differingBlocks: Int
    /// Replicas that could not be asked.
    public var unreachable: [NodeID]
    /// Replicas holding a block that fails its checksum, with the first such block.
    public var corrupt: [String: UInt32]
    public var ok: Bool { differingBlocks == 0 && unreachable.isEmpty && corrupt.isEmpty }
}

extension VolumeClient {
    /// Compares the block tables of every chunk's healthy replicas; with `deep`, also
    /// reads every replica in full so each block's checksum is checked on its node.
    public func verifyReplicas(deep: Bool) async throws -> [ChunkVerification] {
        try await refresh()
        let (v, chunks, addresses) = state.withLock { ($0.map.volume, $0.chunks.values.sorted { $0.index < $1.index }, $0.addresses) }
        let count = UInt32(v.chunkSizeBytes / UInt64(blockSize))
        var out: [ChunkVerification] = []
        for chunk in chunks {
            let address = ChunkAddress(volume: v.id, chunk: chunk.index, epoch: v.epoch)
            var result = ChunkVerification(chunk: chunk.index, replicas: chunk.replicas.map(\.node), differingBlocks: 0,
                                           unreachable: [], corrupt: [:])
            var tables: [[BlockEntry]] = []
            for r in chunk.replicas where r.state == .healthy {
                guard let addr = addresses[r.node] else { result.unreachable.append(r.node); continue }
                do {
                    tables.append(try DataResponse.decodeEntries(
                        try await transport.send(addr, .blockTable(address, first: 0, count: count), timeout: options.requestTimeout)))
                    if deep, let bad = try await firstCorruptBlock(addr, address: address, size: Int(v.chunkSizeBytes)) {
                        result.corrupt[r.node] = bad
                    }
                } catch {
                    result.unreachable.append(r.node)
                }
            }
            if let first = tables.first {
                for i in 0..<Int(count) where tables.contains(where: { $0[i].state != first[i].state || $0[i].crc != first[i].crc }) {
                    result.differingBlocks += 1
                }
            }
            out.append(result)
        }
        return out
    }

    /// Reads a whole chunk replica; returns the first block failing its checksum.
    func firstCorruptBlock(_ addr: String, address: ChunkAddress, size: Int) async throws -> UInt32? {
        let step = 4 << 20
        var offset = 0
        while offset < size {
            let n = min(step, size - offset)
            do {
                _ = try await transport.send(addr, .read(address, offset: UInt32(offset), length: UInt32(n)), timeout: options.requestTimeout)
            } catch CairnError.checksumMismatch(let block) {
                return block
            }
            offset += n
        }
        return nil
    }
}
