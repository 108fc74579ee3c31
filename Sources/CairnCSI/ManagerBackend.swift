// ClusterBackend over the manager's HTTP API (ManagerClient) and its /csi/ records.
import CairnClient
import CairnCore
import CairnFS
import CairnMeta
import NIOCore

public struct ManagerBackend: ClusterBackend {
    let client: ManagerClient
    public let records: MetaStore

    public init(managers: String, secret: String, group: EventLoopGroup) {
        client = ManagerClient(baseURL: managers, secret: secret, group: group)
        records = RemoteMetaStore(csiRecordsAt: managers, secret: secret, group: group)
    }

    public func clusterStatus() async throws -> ClusterStatus { try await client.status() }

    public func volume(_ name: String) async throws -> VolumeStatus? {
        do { return try await client.volume(name) } catch CairnError.notFound { return nil }
    }

    public func volumeNames(prefix: String) async throws -> [String] {
        try await client.volumes().map(\.volume.name).filter { $0.hasPrefix(prefix) }
    }

    public func createVolume(_ request: CreateVolumeRequest) async throws -> VolumeRecord {
        try await client.createVolume(request)
    }

    public func deleteVolume(_ name: String) async throws {
        do { try await client.deleteVolume(name, force: false) } catch CairnError.notFound {}
    }

    public func resizeVolume(_ name: String, sizeBytes: UInt64) async throws -> VolumeRecord {
        try await client.resizeVolume(name, sizeBytes: sizeBytes)
    }

    public func cloneVolume(name: String, from: VolumeSource, replicas: Int?, replicasMin: Int?, sizeBytes: UInt64,
                            requestID: String) async throws -> VolumeRecord {
        try await client.cloneVolume(name: name, from: from, replicas: replicas, minReplicas: replicasMin, sizeBytes: sizeBytes,
                                     requestID: requestID)
    }

    /// A snapshot's CSI id is its name, unique in the cluster.
    static func info(_ s: SnapshotRecord) -> SnapshotInfo {
        SnapshotInfo(id: s.name, name: s.name, volume: s.volume, sizeBytes: s.sizeBytes, createdAt: s.createdAt,
                     readyToUse: s.readyToUse)
    }

    public func createSnapshot(volume: String, name: String, requestID: String) async throws -> SnapshotInfo {
        Self.info(try await client.createSnapshot(volume: volume, name: name, requestID: requestID))
    }

    public func snapshots(volume: String?) async throws -> [SnapshotInfo] {
        try await client.snapshots(volume: volume).map(Self.info)
    }

    public func snapshot(_ id: String) async throws -> SnapshotInfo? {
        do { return Self.info(try await client.snapshot(id)) } catch CairnError.notFound { return nil }
    }

    public func deleteSnapshot(_ id: String) async throws {
        do { try await client.deleteSnapshot(id) } catch CairnError.notFound {}
    }
}
