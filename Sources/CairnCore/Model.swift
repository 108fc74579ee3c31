// The cluster's records as the manager stores them and as its API returns them.
// Plain Codable values: no runtime state, no connections.
import Foundation

public enum VolumeKind: String, Codable, Sendable, CaseIterable {
    case block
    case filesystem
}

public enum NodeState: String, Codable, Sendable {
    case up
    case down
    case draining
}

public struct NodeRecord: Codable, Sendable, Equatable {
    public var id: NodeID
    /// host:port of the node's data path.
    public var address: String
    public var zone: String?
    public var state: NodeState
    public var capacityBytes: UInt64
    public var usedBytes: UInt64
    /// Wall-clock seconds since 1970 of the last heartbeat the manager accepted.
    public var lastHeartbeat: Double
    /// When the node was declared down (seconds since 1970), for the grace period.
    public var downSince: Double?
    public var draining: Bool

    public init(id: NodeID, address: String, zone: String?, state: NodeState, capacityBytes: UInt64,
                usedBytes: UInt64, lastHeartbeat: Double, downSince: Double? = nil, draining: Bool = false) {
        self.id = id; self.address = address; self.zone = zone; self.state = state
        self.capacityBytes = capacityBytes; self.usedBytes = usedBytes
        self.lastHeartbeat = lastHeartbeat; self.downSince = downSince; self.draining = draining
    }
}

public struct VolumeRecord: Codable, Sendable, Equatable {
    public var id: VolumeID
    public var name: String
    public var sizeBytes: UInt64
    public var kind: VolumeKind
    public var replicas: Int
    public var replicasMin: Int
    public var chunkSizeBytes: UInt64
    /// Fencing epoch: bumped on every replica-set change and every writer change.
    public var epoch: Epoch
    /// The attached writer, if any (a client id chosen by the client).
    public var writer: String?
    public var readOnly: Bool
    public var createdAt: Double
    /// The `CreateVolumeRequest.requestID` that created the volume, if it had one.
    public var createRequestID: String?

    public init(id: VolumeID, name: String, sizeBytes: UInt64, kind: VolumeKind, replicas: Int,
                replicasMin: Int, chunkSizeBytes: UInt64, epoch: Epoch, writer: String? = nil,
                readOnly: Bool = false, createdAt: Double) {
        self.id = id; self.name = name; self.sizeBytes = sizeBytes; self.kind = kind
        self.replicas = replicas; self.replicasMin = replicasMin; self.chunkSizeBytes = chunkSizeBytes
        self.epoch = epoch; self.writer = writer; self.readOnly = readOnly; self.createdAt = createdAt
    }

    public var chunkCount: Int { Int((sizeBytes + chunkSizeBytes - 1) / chunkSizeBytes) }
}

public enum ReplicaState: String, Codable, Sendable {
    /// Holds every acknowledged write: serves reads and takes writes.
    case healthy
    /// Being filled by a rebuild or resync: takes writes, serves no reads.
    case rebuilding
}

public struct ReplicaRecord: Codable, Sendable, Equatable {
    public var node: NodeID
    public var state: ReplicaState
    /// For a resync: blocks written at or after this epoch are copied; 0 means a full copy.
    public var sinceEpoch: Epoch
    public init(node: NodeID, state: ReplicaState, sinceEpoch: Epoch = 0) {
        self.node = node; self.state = state; self.sinceEpoch = sinceEpoch
    }
}

/// A replica that left a chunk's set while its node was unreachable; kept so the node can
/// be resynced by copying only what changed since `leftAtEpoch`.
public struct StaleReplica: Codable, Sendable, Equatable {
    public var node: NodeID
    public var leftAtEpoch: Epoch
    public init(node: NodeID, leftAtEpoch: Epoch) { self.node = node; self.leftAtEpoch = leftAtEpoch }
}

public struct ChunkRecord: Codable, Sendable, Equatable {
    public var volume: VolumeID
    public var index: ChunkIndex
    public var replicas: [ReplicaRecord]
    public var stale: [StaleReplica]
    public init(volume: VolumeID, index: ChunkIndex, replicas: [ReplicaRecord], stale: [StaleReplica] = []) {
        self.volume = volume; self.index = index; self.replicas = replicas; self.stale = stale
    }
    public var healthyCount: Int { replicas.filter { $0.state == .healthy }.count }
}

/// What a volume client needs to do I/O: the volume, its allocated chunks and the
/// addresses of the nodes holding them, all as of `volume.epoch`.
public struct VolumeMap: Codable, Sendable {
    public var volume: VolumeRecord
    public var chunks: [ChunkRecord]
    public var nodes: [NodeRecord]
    public init(volume: VolumeRecord, chunks: [ChunkRecord], nodes: [NodeRecord]) {
        self.volume = volume; self.chunks = chunks; self.nodes = nodes
    }
}
