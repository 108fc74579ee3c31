// The manager's HTTP/JSON API. Every /v1 route needs `Authorization: Bearer <cluster
// secret>`; /healthz, /readyz and /metrics are open (they reveal no data).
//
//   GET    /v1/status                               ClusterStatus
//   GET    /v1/nodes                                [NodeRecord]
//   POST   /v1/nodes/heartbeat                      HeartbeatRequest -> HeartbeatReply
//   POST   /v1/nodes/{id}/drain
//   GET    /v1/volumes                              [VolumeStatus]
//   POST   /v1/volumes                              CreateVolumeRequest -> VolumeRecord
//   GET    /v1/volumes/{name}                       VolumeStatus
//   DELETE /v1/volumes/{name}[?force=1]
//   POST   /v1/volumes/{name}/resize                ResizeVolumeRequest -> VolumeRecord
//   POST   /v1/volumes/{name}/read-only             SetReadOnlyRequest -> VolumeRecord
//   GET    /v1/volumes/{name}/map                   VolumeMap
//   POST   /v1/volumes/{name}/attach                AttachRequest -> VolumeMap
//   POST   /v1/volumes/{name}/detach                DetachRequest
//   POST   /v1/volumes/{name}/chunks/{i}/allocate   AllocateChunkRequest -> VolumeMap
//   POST   /v1/volumes/{name}/chunks/{i}/failed     ReplicaFailureReport -> VolumeMap
//   POST   /v1/clones                               CloneVolumeRequest -> VolumeRecord
//   GET    /v1/snapshots[?volume=NAME]              [SnapshotRecord]
//   POST   /v1/snapshots                            CreateSnapshotRequest -> SnapshotRecord
//   GET    /v1/snapshots/{name}                     SnapshotRecord
//   DELETE /v1/snapshots/{name}
//   (a snapshot's map and status: /v1/volumes/VOLUME@SNAPSHOT/map and /v1/volumes/VOLUME@SNAPSHOT)
//   POST   /v1/fs/{name}/meta/{op}                  metadata proxy of a filesystem (FilesystemMetaAPI.swift)
// Errors: a status code and APIErrorBody {error, message[, epoch]}.
import CairnCore
import CairnMetrics
import CairnNet
import Foundation

public struct ManagerAPI: Sendable {
    let manager: Manager
    let secret: String
    let metrics: ManagerMetrics
    let statusEndpoint: MetricsEndpoint
    /// Filesystems the metadata proxy recently found to exist (FilesystemMetaAPI.swift).
    let filesystemsSeen = FilesystemsSeen()

    public init(manager: Manager, secret: String, registry: MetricsRegistry = .shared) {
        self.manager = manager; self.secret = secret
        metrics = ManagerMetrics(registry: registry, manager: manager)
        // Ready while the metadata store answers.
        let health = Health()
        health.addReadinessCheck("metadata store") {
            do { _ = try await manager.store.currentRevision(); return nil } catch { return "unavailable: \(error)" }
        }
        statusEndpoint = MetricsEndpoint(registry: registry, health: health)
    }

    public func handle(_ req: HTTPRequest) async -> HTTPResponse {
        if let answer = await statusEndpoint.handle(req) { return answer }
        guard req.path.hasPrefix("/v1/") else { return Self.error(CairnError.notFound("no such endpoint \(req.path)"), status: 404) }
        guard let auth = req.header("authorization"), auth == "Bearer \(secret)" else {
            return Self.error(CairnError.unauthenticated(
                "the manager refused the request: the cluster secret is missing or wrong"), status: 401)
        }
        do {
            return try await route(req)
        } catch let e as CairnError {
            return Self.error(e, status: Self.status(of: e))
        } catch let e as DecodingError {
            return Self.error(CairnError.invalidArgument("malformed request body: \(e)"), status: 400)
        } catch {
            return Self.error(CairnError.internalError("\(error)"), status: 500)
        }
    }

    func route(_ req: HTTPRequest) async throws -> HTTPResponse {
        let parts = Array(req.path.split(separator: "/").map(String.init).dropFirst())  // after "v1"
        func at(_ method: String, _ pattern: String) -> [String]? {
            Self.match(method: method, pattern: pattern, request: req.method, parts: parts)
        }
        // First: a mount's metadata calls are by far the most frequent.
        if let a = at("POST", "fs/*/meta/*") { return try await filesystemMeta(a[0], a[1], req) }
        if at("GET", "status") != nil { return try Self.json(await manager.status()) }
        if at("GET", "nodes") != nil { return try Self.json(await manager.listNodes()) }
        if at("POST", "nodes/heartbeat") != nil {
            let reply = try Self.json(await manager.heartbeat(try Self.decode(req.body)))
            metrics.heartbeats.increment()
            return reply
        }
        if let a = at("POST", "nodes/*/drain") {
            try await manager.drain(a[0])
            return try Self.json(["drained": a[0]])
        }
        if at("GET", "volumes") != nil {
            var out: [VolumeStatus] = []
            for v in try await manager.listVolumes() { out.append(try await manager.volumeStatus(v.name)) }
            return try Self.json(out)
        }
        if at("POST", "volumes") != nil {
            return try Self.json(await manager.createVolume(try Self.decode(req.body)), status: 201)
        }
        if let a = at("GET", "volumes/*") { return try Self.json(await manager.volumeStatus(a[0])) }
        if let a = at("DELETE", "volumes/*") {
            try await manager.deleteVolume(a[0], force: req.query["force"] == "1")
            return try Self.json(["deleted": a[0]])
        }
        if let a = at("POST", "volumes/*/read-only") {
            let r: SetReadOnlyRequest = try Self.decode(req.body)
            return try Self.json(await manager.setReadOnly(a[0], readOnly: r.readOnly, force: r.force))
        }
        if let a = at("POST", "volumes/*/resize") {
            let r: ResizeVolumeRequest = try Self.decode(req.body)
            return try Self.json(await manager.resizeVolume(a[0], sizeBytes: r.sizeBytes))
        }
        if let a = at("GET", "volumes/*/map") { return try Self.json(await manager.map(a[0])) }
        if let a = at("POST", "volumes/*/attach") {
            return try Self.json(await manager.attach(a[0], try Self.decode(req.body)))
        }
        if let a = at("POST", "volumes/*/detach") {
            let r: DetachRequest = try Self.decode(req.body)
            try await manager.detach(a[0], client: r.client)
            return try Self.json(["detached": a[0]])
        }
        if let a = at("POST", "volumes/*/chunks/*/allocate") {
            return try Self.json(await manager.allocateChunk(a[0], index: try Self.chunkIndex(a[1]), try Self.decode(req.body)))
        }
        if let a = at("POST", "volumes/*/chunks/*/failed") {
            return try Self.json(await manager.reportFailure(a[0], index: try Self.chunkIndex(a[1]), try Self.decode(req.body)))
        }
        if at("POST", "clones") != nil {
            return try Self.json(await manager.cloneVolume(try Self.decode(req.body)), status: 201)
        }
        if at("GET", "snapshots") != nil {
            return try Self.json(await manager.snapshots(volume: req.query["volume"]))
        }
        if at("POST", "snapshots") != nil {
            return try Self.json(await manager.createSnapshot(try Self.decode(req.body)), status: 201)
        }
        if let a = at("GET", "snapshots/*") { return try Self.json(await manager.snapshot(a[0])) }
        if let a = at("DELETE", "snapshots/*") {
            try await manager.deleteSnapshot(a[0])
            return try Self.json(["deleted": a[0]])
        }
        if let a = at("POST", "csi/meta/*") { return try await csiMeta(a[0], req) }
        return Self.error(CairnError.notFound("no such endpoint \(req.method) \(req.path)"), status: 404)
    }

    /// Matches path segments against a pattern where `*` captures one segment.
    static func match(method: String, pattern: String, request: String, parts: [String]) -> [String]? {
        guard method == request else { return nil }
        let pat = pattern.split(separator: "/").map(String.init)
        guard pat.count == parts.count else { return nil }
        var captured: [String] = []
        for (p, s) in zip(pat, parts) {
            if p == "*" { captured.append(s) } else if p != s { return nil }
        }
        return captured
    }

    static func chunkIndex(_ s: String) throws -> ChunkIndex {
        guard let i = ChunkIndex(s) else { throw CairnError.invalidArgument("'\(s)' is not a chunk index") }
        return i
    }

    static func decode<T: Decodable>(_ body: [UInt8]) throws -> T {
        try JSONDecoder().decode(T.self, from: Data(body))
    }

    static func json<T: Encodable>(_ value: T, status: Int = 200) throws -> HTTPResponse {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        return HTTPResponse(status: status, body: [UInt8](try e.encode(value)))
    }

    static func error(_ e: CairnError, status: Int) -> HTTPResponse {
        var epoch: Epoch?
        if case .staleEpoch(let current) = e { epoch = current }
        if case .checksumMismatch(let block) = e { epoch = Epoch(block) }
        let body = APIErrorBody(error: e.code, message: e.message, epoch: epoch)
        return (try? json(body, status: status)) ?? .text(e.description, status: status)
    }

    static func status(of e: CairnError) -> Int {
        switch e {
        case .invalidArgument, .protocolError: return 400
        case .unauthenticated: return 401
        case .notFound: return 404
        case .alreadyExists, .conflict, .staleEpoch: return 409
        case .insufficientNodes, .noSpace: return 507
        case .unavailable: return 503
        default: return 500
        }
    }
}
