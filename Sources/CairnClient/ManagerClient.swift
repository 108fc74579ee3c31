// Typed client of the manager's HTTP/JSON API (see CairnManager/ManagerAPI.swift).
import CairnCore
import CairnNet
import Foundation
import NIOCore

public final class ManagerClient: @unchecked Sendable {
    /// As given: one address, or several separated by commas (managers on one etcd).
    public let baseURL: String
    /// Every manager address; calls go to the one that answered last.
    public var endpoints: [String] { managers.endpoints }
    let secret: String
    let group: EventLoopGroup
    private let managers: EndpointRotation
    /// With several managers, how long a call keeps looking for the leader (a takeover
    /// needs the old leader's lease to expire first).
    public var leaderSearch: Duration = .seconds(30)

    public init(baseURL: String, secret: String, group: EventLoopGroup) {
        self.baseURL = baseURL
        self.managers = EndpointRotation(baseURL.split(separator: ",").map { part in
            var url = part.trimmingCharacters(in: .whitespaces)
            while url.hasSuffix("/") { url.removeLast() }
            return url
        }.filter { !$0.isEmpty })
        self.secret = secret; self.group = group
    }

    /// With one manager, one attempt. With several, the call moves on from a manager that
    /// cannot be reached or stands by (503 `unavailable`) until one leads, for up to
    /// `leaderSearch`. A call whose answer was cut off may reach the new leader a second
    /// time, which is safe for the data: a create carries a request id and returns the
    /// volume it made, an attach bumps the epoch once more, a failure report for an epoch
    /// that moved on is refused as stale; a repeated delete answers `not_found`.
    func call<T: Decodable>(_ method: String, _ path: String, body: [UInt8] = [], as: T.Type) async throws -> T {
        guard endpoints.count > 1 else {
            return try await callOne(endpoints.first ?? baseURL, method, path, body: body, as: T.self)
        }
        return try await managers.call(window: leaderSearch, pause: .milliseconds(250),
                                       noAnswer: .unavailable("no manager answered"),
                                       moveOn: { if case .unavailable = $0 { return true } else { return false } }) {
            try await callOne($0, method, path, body: body, as: T.self)
        }
    }

    private func callOne<T: Decodable>(_ base: String, _ method: String, _ path: String, body: [UInt8],
                                       as: T.Type) async throws -> T {
        let response = try await HTTPClient.request(
            method, baseURL: base, path: path,
            headers: [("Authorization", "Bearer \(secret)"), ("Content-Type", "application/json")],
            body: body, group: group)
        guard (200..<300).contains(response.status) else {
            if let e = try? JSONDecoder().decode(APIErrorBody.self, from: Data(response.body)) {
                throw CairnError.from(code: e.error, message: e.message, epoch: e.epoch ?? 0)
            }
            throw CairnError.unavailable("the manager at \(base) answered HTTP \(response.status)")
        }
        do {
            return try JSONDecoder().decode(T.self, from: Data(response.body))
        } catch {
            throw CairnError.protocolError("unexpected answer from the manager: \(error)")
        }
    }

    func encode<T: Encodable>(_ v: T) throws -> [UInt8] { [UInt8](try JSONEncoder().encode(v)) }

    static func escape(_ name: String) -> String {
        name.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: ".-_"))) ?? name
    }

    public func status() async throws -> ClusterStatus { try await call("GET", "/v1/status", as: ClusterStatus.self) }
    public func nodes() async throws -> [NodeRecord] { try await call("GET", "/v1/nodes", as: [NodeRecord].self) }
    public func drain(_ id: NodeID) async throws {
        _ = try await call("POST", "/v1/nodes/\(Self.escape(id))/drain", as: [String: String].self)
    }
    public func heartbeat(_ hb: HeartbeatRequest) async throws -> HeartbeatReply {
        try await call("POST", "/v1/nodes/heartbeat", body: try encode(hb), as: HeartbeatReply.self)
    }
    public func createVolume(_ req: CreateVolumeRequest) async throws -> VolumeRecord {
        var req = req
        if req.requestID == nil { req.requestID = UUID().uuidString }
        return try await call("POST", "/v1/volumes", body: try encode(req), as: VolumeRecord.self)
    }
    public func volumes() async throws -> [VolumeStatus] { try await call("GET", "/v1/volumes", as: [VolumeStatus].self) }
    public func volume(_ name: String) async throws -> VolumeStatus {
        try await call("GET", "/v1/volumes/\(Self.escape(name))", as: VolumeStatus.self)
    }
    public func deleteVolume(_ name: String, force: Bool) async throws {
        _ = try await call("DELETE", "/v1/volumes/\(Self.escape(name))\(force ? "?force=1" : "")", as: [String: String].self)
    }
    public func resizeVolume(_ name: String, sizeBytes: UInt64) async throws -> VolumeRecord {
        try await call("POST", "/v1/volumes/\(Self.escape(name))/resize", body: try encode(ResizeVolumeRequest(sizeBytes: sizeBytes)),
                       as: VolumeRecord.self)
    }
    public func setReadOnly(_ name: String, readOnly: Bool, force: Bool) async throws -> VolumeRecord {
        try await call("POST", "/v1/volumes/\(Self.escape(name))/read-only",
                       body: try encode(SetReadOnlyRequest(readOnly: readOnly, force: force)), as: VolumeRecord.self)
    }
    public func map(_ name: String) async throws -> VolumeMap {
        try await call("GET", "/v1/volumes/\(Self.escape(name))/map", as: VolumeMap.self)
    }
    public func attach(_ name: String, _ req: AttachRequest) async throws -> VolumeMap {
        try await call("POST", "/v1/volumes/\(Self.escape(name))/attach", body: try encode(req), as: VolumeMap.self)
    }
    public func detach(_ name: String, client: String) async throws {
        _ = try await call("POST", "/v1/volumes/\(Self.escape(name))/detach", body: try encode(DetachRequest(client: client)),
                           as: [String: String].self)
    }
    public func allocateChunk(_ name: String, index: ChunkIndex, _ req: AllocateChunkRequest) async throws -> VolumeMap {
        try await call("POST", "/v1/volumes/\(Self.escape(name))/chunks/\(index)/allocate", body: try encode(req), as: VolumeMap.self)
    }
    // MARK: Snapshots and clones (docs/ARCHITECTURE.md, "Snapshots and clones")

    public typealias VolumeSource = CairnCore.VolumeSource

    /// Takes a snapshot of a block volume. The same name for the same volume returns the
    /// existing snapshot; the same name for another volume is `alreadyExists`.
    public func createSnapshot(volume: String, name: String, requestID: String? = nil) async throws -> SnapshotRecord {
        try await call("POST", "/v1/snapshots",
                       body: try encode(CreateSnapshotRequest(volume: volume, name: name, requestID: requestID ?? UUID().uuidString)),
                       as: SnapshotRecord.self)
    }
    /// Snapshots of one volume, or all, oldest first.
    public func snapshots(volume: String? = nil) async throws -> [SnapshotRecord] {
        try await call("GET", "/v1/snapshots" + (volume.map { "?volume=\(Self.escape($0))" } ?? ""), as: [SnapshotRecord].self)
    }
    /// `notFound` when there is no such snapshot.
    public func snapshot(_ name: String) async throws -> SnapshotRecord {
        try await call("GET", "/v1/snapshots/\(Self.escape(name))", as: SnapshotRecord.self)
    }
    /// `notFound` when there is no such snapshot. Volumes cloned from it keep their data.
    public func deleteSnapshot(_ name: String) async throws {
        _ = try await call("DELETE", "/v1/snapshots/\(Self.escape(name))", as: [String: String].self)
    }
    /// A new volume with the data of a snapshot or of a volume as it is now; `sizeBytes`
    /// at least the source's (nil keeps it), `replicas` nil keeps the source's. The same
    /// name and source again returns the existing clone.
    public func cloneVolume(name: String, from source: VolumeSource, replicas: Int?, minReplicas: Int?, sizeBytes: UInt64?,
                            requestID: String? = nil) async throws -> VolumeRecord {
        let req = CloneVolumeRequest(name: name, source: source, replicas: replicas, replicasMin: minReplicas,
                                     sizeBytes: sizeBytes, requestID: requestID ?? UUID().uuidString)
        return try await call("POST", "/v1/clones", body: try encode(req), as: VolumeRecord.self)
    }

    public func reportFailure(_ name: String, index: ChunkIndex, _ report: ReplicaFailureReport) async throws -> VolumeMap {
        try await call("POST", "/v1/volumes/\(Self.escape(name))/chunks/\(index)/failed", body: try encode(report), as: VolumeMap.self)
    }
}
