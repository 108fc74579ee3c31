// The two seams of the volume client: the manager (control) and the storage nodes
// (data). Real processes use ManagerClient and DataConnectionPool; the simulation plugs
// in an in-process manager and a faulty in-memory network.
import CairnCore
import CairnNet
import CairnWire
import NIOCore

public protocol ClusterControl: Sendable {
    func map(_ name: String) async throws -> VolumeMap
    func attach(_ name: String, _ req: AttachRequest) async throws -> VolumeMap
    func detach(_ name: String, client: String) async throws
    func allocateChunk(_ name: String, index: ChunkIndex, _ req: AllocateChunkRequest) async throws -> VolumeMap
    func reportFailure(_ name: String, index: ChunkIndex, _ report: ReplicaFailureReport) async throws -> VolumeMap
}

public protocol ReplicaTransport: Sendable {
    /// Sends `request` to the storage node at `address`; returns the OK payload or throws
    /// the node's error (`unavailable` when it cannot be reached in `timeout`).
    func send(_ address: String, _ request: DataRequest, timeout: TimeAmount?) async throws -> ByteBuffer
}

extension ManagerClient: ClusterControl {}

extension DataConnectionPool: ReplicaTransport {
    public func send(_ address: String, _ request: DataRequest, timeout: TimeAmount?) async throws -> ByteBuffer {
        try await expectOK(address, request, timeout: timeout)
    }
}
