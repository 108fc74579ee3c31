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
    /// The layer (snapshot id) this one reads through to for chunks it has no record of;
    /// nil for a volume that was never snapshotted or cloned. See "Snapshots and clones".
    public var backing: VolumeID?
    /// Set on snapshot records: the name of the volume the snapshot was taken of.
    public var snapshotOf: String?
    /// Set on clones: what the volume was cloned from.
    public var contentSource: VolumeSource?

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
/// addresses of the nodes holding them, all as of `volume.epoch`; `backing` lists the
/// layers the volume reads through to for chunks it does not own, nearest first.
public struct VolumeMap: Codable, Sendable {
    public var volume: VolumeRecord
    public var chunks: [ChunkRecord]
    public var nodes: [NodeRecord]
    public var backing: [BackingLayer]?
    public init(volume: VolumeRecord, chunks: [ChunkRecord], nodes: [NodeRecord], backing: [BackingLayer]? = nil) {
        self.volume = volume; self.chunks = chunks; self.nodes = nodes; self.backing = backing
    }
}

/// A snapshot layer a volume reads through to: its id and epoch (what requests to its
/// chunks carry) and its chunk records.
public struct BackingLayer: Codable, Sendable, Equatable {
    public var id: VolumeID
    public var epoch: Epoch
    public var chunks: [ChunkRecord]
    public init(id: VolumeID, epoch: Epoch, chunks: [ChunkRecord]) { self.id = id; self.epoch = epoch; self.chunks = chunks }
}

/// Where a clone's data comes from.
public enum VolumeSource: Codable, Sendable, Equatable, CustomStringConvertible {
    case snapshot(String)
    case volume(String)
    public var description: String {
        switch self {
        case .snapshot(let s): return "snapshot '\(s)'"
        case .volume(let v): return "volume '\(v)'"
        }
    }
}

/// A point-in-time, read-only image of a block volume (see "Snapshots and clones").
public struct SnapshotRecord: Codable, Sendable, Equatable {
    /// Cluster-wide unique.
    public var name: String
    /// The volume it was taken of (which may have been deleted since).
    public var volume: String
    /// The layer id its chunks are stored under.
    public var id: VolumeID
    public var sizeBytes: UInt64
    /// Seconds since 1970.
    public var createdAt: Double
    /// Always true: a snapshot can be read and cloned as soon as it exists.
    public var readyToUse: Bool
    public var replicas: Int
    public init(name: String, volume: String, id: VolumeID, sizeBytes: UInt64, createdAt: Double, readyToUse: Bool,
                replicas: Int) {
        self.name = name; self.volume = volume; self.id = id; self.sizeBytes = sizeBytes; self.createdAt = createdAt
        self.readyToUse = readyToUse; self.replicas = replicas
    }
}
