// The controller's seam to the cluster: the manager's volume and snapshot calls, and
// the plugin's own records in the manager's metadata store under /csi/.
import CairnCore
import CairnMeta
import Foundation

/// A snapshot as the controller sees it.
public struct SnapshotInfo: Codable, Sendable, Equatable {
    /// The CSI snapshot_id.
    public var id: String
    /// The name the snapshot was created with (unique in the cluster).
    public var name: String
    public var volume: String
    public var sizeBytes: UInt64
    /// Seconds since 1970.
    public var createdAt: Double
    public var readyToUse: Bool
    public init(id: String, name: String, volume: String, sizeBytes: UInt64, createdAt: Double, readyToUse: Bool) {
        self.id = id; self.name = name; self.volume = volume; self.sizeBytes = sizeBytes; self.createdAt = createdAt
        self.readyToUse = readyToUse
    }
}

/// What the controller asks of the cluster; ManagerBackend in production, a fake in tests.
public protocol ClusterBackend: Sendable {
    func clusterStatus() async throws -> ClusterStatus
    /// nil when there is no such volume.
    func volume(_ name: String) async throws -> VolumeStatus?
    /// The names of every volume whose name starts with `prefix`.
    func volumeNames(prefix: String) async throws -> [String]
    func createVolume(_ request: CreateVolumeRequest) async throws -> VolumeRecord
    func cloneVolume(name: String, from: VolumeSource, replicas: Int?, replicasMin: Int?, sizeBytes: UInt64,
                     requestID: String) async throws -> VolumeRecord
    /// Succeeds when the volume is already gone.
    func deleteVolume(_ name: String) async throws
    func resizeVolume(_ name: String, sizeBytes: UInt64) async throws -> VolumeRecord
    func createSnapshot(volume: String, name: String, requestID: String) async throws -> SnapshotInfo
    func snapshots(volume: String?) async throws -> [SnapshotInfo]
    /// nil when there is no such snapshot.
    func snapshot(_ id: String) async throws -> SnapshotInfo?
    /// Succeeds when the snapshot is already gone.
    func deleteSnapshot(_ id: String) async throws
    /// The metadata store holding the plugin's records (keys under /csi/).
    var records: MetaStore { get }
}

/// One node's use of a volume, as ControllerPublishVolume recorded it.
public struct Publication: Codable, Sendable, Equatable {
    public var readOnly: Bool
    /// VolumeCapability.AccessMode.Mode's number.
    public var accessMode: Int
    public var access: VolumeAccess
}

/// What the plugin keeps about each volume it created (/csi/volumes/NAME).
public struct CSIVolumeRecord: Codable, Sendable, Equatable {
    /// The CO's name (CreateVolumeRequest.name).
    public var csiName: String
    public var volume: String
    public var parameters: VolumeParameters
    public var source: VolumeSource?
    /// The manager's create request id, so a retried create returns the same volume.
    public var requestID: String
    /// node id -> publication.
    public var publications: [String: Publication]
}

/// A node plugin's registration (/csi/nodes/ID): written when a plugin with --node
/// starts, so the controller can tell an unknown node id (NOT_FOUND) from a known one.
public struct CSINodeRecord: Codable, Sendable, Equatable {
    public var nodeID: String
    public var zone: String?
    public init(nodeID: String, zone: String?) { self.nodeID = nodeID; self.zone = zone }
}

/// The node registrations, over any MetaStore.
public struct CSINodes: Sendable {
    let store: MetaStore
    public init(store: MetaStore) { self.store = store }
    static let nodesPrefix = MetaWire.csiPrefix + "nodes/"
    static func key(_ node: String) -> String { nodesPrefix + node }

    /// Writes (or rewrites, when the zone changed) the node's record.
    public func register(_ record: CSINodeRecord) async throws {
        if let (old, _) = try await get(record.nodeID), old == record { return }
        _ = try await store.txn(compare: [], success: [try store.putJSON(Self.key(record.nodeID), record)], failure: [])
    }

    public func get(_ node: String) async throws -> (CSINodeRecord, Int64)? {
        try await store.getJSON(Self.key(node), as: CSINodeRecord.self)
    }
}

/// The records, over any MetaStore; every change is a compare-and-swap on the key.
struct CSIRecords: Sendable {
    let store: MetaStore
    static let volumesPrefix = MetaWire.csiPrefix + "volumes/"
    static func key(_ volume: String) -> String { volumesPrefix + volume }

    func get(_ volume: String) async throws -> (CSIVolumeRecord, Int64)? {
        try await store.getJSON(Self.key(volume), as: CSIVolumeRecord.self)
    }

    func all() async throws -> [CSIVolumeRecord] {
        try await store.rangeAll(prefix: Self.volumesPrefix).map {
            try JSONDecoder().decode(CSIVolumeRecord.self, from: Data($0.value))
        }
    }

    /// Puts `record` if the key is still at `revision` (0: absent); false if it moved.
    func put(_ record: CSIVolumeRecord, ifRevision revision: Int64) async throws -> Bool {
        let key = Self.key(record.volume)
        return try await store.txn(compare: [.modRevision(key: key, equals: revision)],
                                   success: [try store.putJSON(key, record)], failure: []).succeeded
    }

    func delete(_ volume: String) async throws {
        _ = try await store.txn(compare: [], success: [.delete(key: Self.key(volume))], failure: [])
    }

    /// Applies `change` to the record until the compare-and-swap wins; NOT_FOUND without one.
    func update(_ volume: String, _ change: (inout CSIVolumeRecord) throws -> Void) async throws -> CSIVolumeRecord {
        for _ in 0..<MetaLimits.updateRetriesMax {
            guard let (before, revision) = try await get(volume) else {
                throw CSIError.notFound("no volume '\(volume)'")
            }
            var record = before
            try change(&record)
            if record == before { return record }
            if try await put(record, ifRevision: revision) { return record }
        }
        throw CSIError(.aborted, "volume '\(volume)' changed concurrently too often; try again")
    }
}
