// Request and reply bodies of the manager's HTTP/JSON API (see docs/ARCHITECTURE.md,
// "Manager API"). Shared by the manager, the storage nodes, the volume client and the CLI.

public struct APIErrorBody: Codable, Sendable {
    public var error: String
    public var message: String
    public var epoch: Epoch?
    public init(error: String, message: String, epoch: Epoch? = nil) {
        self.error = error; self.message = message; self.epoch = epoch
    }
}

public struct CreateVolumeRequest: Codable, Sendable {
    public var name: String
    public var sizeBytes: UInt64
    public var replicas: Int?
    public var replicasMin: Int?
    public var kind: VolumeKind?
    public var chunkSizeBytes: UInt64?
    /// Makes a retried create (after a manager failover cut the answer off) return the
    /// volume the first attempt made instead of `already_exists`.
    public var requestID: String?
    public init(name: String, sizeBytes: UInt64, replicas: Int? = nil, replicasMin: Int? = nil,
                kind: VolumeKind? = nil, chunkSizeBytes: UInt64? = nil, requestID: String? = nil) {
        self.name = name; self.sizeBytes = sizeBytes; self.replicas = replicas
        self.replicasMin = replicasMin; self.kind = kind; self.chunkSizeBytes = chunkSizeBytes
        self.requestID = requestID
    }
}

public struct CreateSnapshotRequest: Codable, Sendable {
    public var volume: String
    public var name: String
    public var requestID: String?
    public init(volume: String, name: String, requestID: String? = nil) {
        self.volume = volume; self.name = name; self.requestID = requestID
    }
}

public struct CloneVolumeRequest: Codable, Sendable {
    public var name: String
    public var source: VolumeSource
    public var replicas: Int?
    public var replicasMin: Int?
    /// At least the source's size; nil keeps it.
    public var sizeBytes: UInt64?
    public var requestID: String?
    public init(name: String, source: VolumeSource, replicas: Int? = nil, replicasMin: Int? = nil, sizeBytes: UInt64? = nil,
                requestID: String? = nil) {
        self.name = name; self.source = source; self.replicas = replicas; self.replicasMin = replicasMin
        self.sizeBytes = sizeBytes; self.requestID = requestID
    }
}

public struct ResizeVolumeRequest: Codable, Sendable {
    public var sizeBytes: UInt64
    public init(sizeBytes: UInt64) { self.sizeBytes = sizeBytes }
}

/// Makes a volume read-only or writable again; `force` fences out an attached writer.
public struct SetReadOnlyRequest: Codable, Sendable {
    public var readOnly: Bool
    public var force: Bool
    public init(readOnly: Bool, force: Bool) { self.readOnly = readOnly; self.force = force }
}

public struct AttachRequest: Codable, Sendable {
    public var client: String
    /// Take the volume from another writer, fencing it first.
    public var force: Bool
    /// Readers do not become the writer and do not bump the epoch.
    public var readOnly: Bool
    public init(client: String, force: Bool, readOnly: Bool) {
        self.client = client; self.force = force; self.readOnly = readOnly
    }
}

public struct DetachRequest: Codable, Sendable {
    public var client: String
    public init(client: String) { self.client = client }
}

public struct AllocateChunkRequest: Codable, Sendable {
    public var client: String
    public var epoch: Epoch
    public init(client: String, epoch: Epoch) { self.client = client; self.epoch = epoch }
}

public struct ReplicaFailureReport: Codable, Sendable {
    public var node: NodeID
    public var epoch: Epoch
    public var reason: String
    public init(node: NodeID, epoch: Epoch, reason: String) { self.node = node; self.epoch = epoch; self.reason = reason }
}

public struct ChunkRef: Codable, Sendable, Hashable {
    public var volume: VolumeID
    public var chunk: ChunkIndex
    public init(volume: VolumeID, chunk: ChunkIndex) { self.volume = volume; self.chunk = chunk }
}

public struct RebuildProgress: Codable, Sendable, Equatable {
    public var volume: VolumeID
    public var chunk: ChunkIndex
    public var copiedBytes: UInt64
    public var totalBytes: UInt64
    public init(volume: VolumeID, chunk: ChunkIndex, copiedBytes: UInt64, totalBytes: UInt64) {
        self.volume = volume; self.chunk = chunk; self.copiedBytes = copiedBytes; self.totalBytes = totalBytes
    }
}

public struct HeartbeatRequest: Codable, Sendable {
    public var id: NodeID
    public var address: String
    public var zone: String?
    public var capacityBytes: UInt64
    public var usedBytes: UInt64
    public var inventory: [ChunkRef]
    public var rebuilds: [RebuildProgress]
    /// The node's chunk size; the manager refuses a node whose chunk size is not the cluster's.
    public var chunkSizeBytes: UInt64?
    public init(id: NodeID, address: String, zone: String?, capacityBytes: UInt64, usedBytes: UInt64,
                inventory: [ChunkRef], rebuilds: [RebuildProgress], chunkSizeBytes: UInt64? = nil) {
        self.id = id; self.address = address; self.zone = zone; self.capacityBytes = capacityBytes
        self.usedBytes = usedBytes; self.inventory = inventory; self.rebuilds = rebuilds
        self.chunkSizeBytes = chunkSizeBytes
    }
}

public struct HeartbeatReply: Codable, Sendable {
    /// Chunk replicas the node holds that belong to no replica set: delete them.
    public var deleteChunks: [ChunkRef]
    public init(deleteChunks: [ChunkRef]) { self.deleteChunks = deleteChunks }
}

public enum VolumeHealth: String, Codable, Sendable {
    case healthy, degraded, rebuilding
}

public struct VolumeStatus: Codable, Sendable {
    public var volume: VolumeRecord
    public var health: VolumeHealth
    public var chunksAllocated: Int
    public var chunksDegraded: Int
    public var chunksRebuilding: Int
    /// Bytes copied / to copy over the volume's rebuilds in progress.
    public var rebuildCopiedBytes: UInt64
    public var rebuildTotalBytes: UInt64
    public init(volume: VolumeRecord, health: VolumeHealth, chunksAllocated: Int, chunksDegraded: Int,
                chunksRebuilding: Int, rebuildCopiedBytes: UInt64, rebuildTotalBytes: UInt64) {
        self.volume = volume; self.health = health; self.chunksAllocated = chunksAllocated
        self.chunksDegraded = chunksDegraded; self.chunksRebuilding = chunksRebuilding
        self.rebuildCopiedBytes = rebuildCopiedBytes; self.rebuildTotalBytes = rebuildTotalBytes
    }
}

public struct ClusterStatus: Codable, Sendable {
    public var nodes: [NodeRecord]
    public var volumes: [VolumeStatus]
    public var capacityBytes: UInt64
    public var usedBytes: UInt64
    public init(nodes: [NodeRecord], volumes: [VolumeStatus], capacityBytes: UInt64, usedBytes: UInt64) {
        self.nodes = nodes; self.volumes = volumes; self.capacityBytes = capacityBytes; self.usedBytes = usedBytes
    }
}
