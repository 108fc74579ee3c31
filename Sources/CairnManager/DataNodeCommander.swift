// NodeCommander over the data-path protocol: how the real manager reaches storage nodes.
import CairnCore
import CairnNet
import CairnWire
import NIOCore

public struct DataNodeCommander: NodeCommander {
    let pool: DataConnectionPool

    public init(pool: DataConnectionPool) { self.pool = pool }

    public func fence(_ node: NodeRecord, volume: VolumeID, epoch: Epoch) async throws {
        _ = try await pool.expectOK(node.address, .fence(volume: volume, epoch: epoch), timeout: .seconds(2))
    }

    public func rebuild(_ node: NodeRecord, order: RebuildOrder) async throws {
        // A rebuild answers when the copy is done: no timeout beyond the connection's life.
        _ = try await pool.expectOK(node.address, .rebuild(order), timeout: nil)
    }

    public func deleteVolume(_ node: NodeRecord, volume: VolumeID, epoch: Epoch) async throws {
        _ = try await pool.expectOK(node.address, .deleteVolume(volume: volume, epoch: epoch), timeout: .seconds(5))
    }

    public func copyChunk(_ node: NodeRecord, from: ChunkAddress, to: ChunkAddress) async throws {
        // A local copy of at most one chunk (1 GiB at most, usually 64 MiB).
        _ = try await pool.expectOK(node.address, .copyChunk(from: from, to: to), timeout: .seconds(120))
    }
}
