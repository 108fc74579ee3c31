// The `cairn storage` daemon: data directories, the data-path server and the heartbeat
// loop to the manager.
import CairnChunkStore
import CairnClient
import CairnCore
import CairnMetrics
import CairnNet
import CairnWire
import Foundation
import Logging
import NIOCore
import NIOPosix

public struct StorageNodeConfig: Sendable {
    public var dataDirectories: [String]
    public var listenHost = "127.0.0.1"
    public var listenPort = 9410
    /// host:port other nodes and clients use; defaults to the listen address.
    public var advertise: String?
    public var manager: String
    public var secret: String
    public var nodeID: NodeID?
    public var zone: String?
    public var chunkSize = chunkSizeDefault
    public var journalBytes = 256 << 20
    public var heartbeatInterval: Duration = .seconds(1)
    /// Where /metrics, /healthz and /readyz are served; nil for nowhere.
    public var httpHost: String? = "127.0.0.1"
    public var httpPort = 9420
    /// Not ready once the manager has not accepted a heartbeat for this long.
    public var managerStaleAfter: Duration = .seconds(5)
    public init(dataDirectories: [String], manager: String, secret: String) {
        self.dataDirectories = dataDirectories; self.manager = manager; self.secret = secret
    }
}

public final class StorageNode: @unchecked Sendable {
    public let config: StorageNodeConfig
    public let nodeID: NodeID
    let logger: Logger
    let group: EventLoopGroup
    let service: StorageService
    let pool: DataConnectionPool
    let managerClient: ManagerClient
    private var server: DataServer?
    private var httpServer: HTTPServer?
    private(set) public var address = ""
    private(set) public var httpPort: Int?
    let metrics: StorageMetrics
    public let health = Health()
    public let managerContact: ContactTracker

    public init(config: StorageNodeConfig, group: EventLoopGroup, logger: Logger) throws {
        guard let first = config.dataDirectories.first else {
            throw CairnError.invalidArgument("a storage node needs at least one --data directory")
        }
        self.config = config
        self.logger = logger
        self.group = group
        self.nodeID = try config.nodeID ?? Self.loadOrCreateNodeID(first)
        var backends: [ChunkBackend] = []
        for dir in config.dataDirectories {
            backends.append(try DiskChunkStore(directory: dir, chunkSize: config.chunkSize, journalBytes: config.journalBytes))
        }
        let pool = DataConnectionPool(secret: config.secret, client: "storage-\(nodeID)", group: group)
        self.pool = pool
        self.service = StorageService(backends: backends, transport: { address, request in
            try await pool.expectOK(address, request, timeout: .seconds(30))
        }, logger: logger)
        self.managerClient = ManagerClient(baseURL: config.manager, secret: config.secret, group: group)
        self.metrics = StorageMetrics(registry: .shared)
        self.managerContact = ContactTracker("the manager", staleAfter: config.managerStaleAfter)
        let metrics = self.metrics
        service.rebuilder.onCopied = { metrics.rebuildCopied.increment(by: Int64($0)) }
        metrics.addScrapeHook(.shared, service: service, manager: managerContact)
        addHealthChecks()
    }

    /// Alive while the data path listens; ready when, besides, every data directory takes
    /// writes and the manager accepted a heartbeat recently.
    func addHealthChecks() {
        health.addLivenessCheck("data path") { [weak self] in
            self?.server == nil ? "the data-path listener is not running" : nil
        }
        let backends = service.backends
        health.addReadinessCheck("data directories") {
            let problems = backends.compactMap { ($0 as? DiskChunkStore)?.unusableReason }
            return problems.isEmpty ? nil : problems.joined(separator: "; ")
        }
        health.addReadinessCheck("manager", managerContact.check)
    }

    static func loadOrCreateNodeID(_ dir: String) throws -> NodeID {
        let path = dir + "/node-id"
        if let data = FileManager.default.contents(atPath: path),
           let id = String(data: data, encoding: .utf8)?.trimmingCharacters(in: .whitespacesAndNewlines), !id.isEmpty {
            return id
        }
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let id = "node-" + String(UInt32.random(in: 0...UInt32.max), radix: 16)
        try Data((id + "\n").utf8).write(to: URL(fileURLWithPath: path), options: .atomic)
        return id
    }

    /// Starts serving; returns the bound port.
    public func start() async throws -> Int {
        let server = DataServer(host: config.listenHost, port: config.listenPort, secret: config.secret,
                                service: MeasuredDataService(service: service, metrics: metrics), group: group, logger: logger)
        let port = try await server.start()
        self.server = server
        if let httpHost = config.httpHost {
            let (http, bound) = try await MetricsEndpoint(health: health).serve(host: httpHost, port: config.httpPort, group: group)
            httpServer = http
            httpPort = bound
            logger.info("storage node metrics and health", metadata: ["http": "http://\(httpHost):\(bound)"])
        }
        address = config.advertise ?? "\(config.listenHost):\(port)"
        logger.info("storage node serving", metadata: ["node": "\(nodeID)", "address": "\(address)",
                                                       "data": "\(config.dataDirectories.joined(separator: ","))"])
        return port
    }

    /// Sends heartbeats until cancelled; applies the garbage list the manager returns.
    public func heartbeatLoop() async {
        var failures = 0
        while !Task.isCancelled {
            do {
                try await heartbeatOnce()
                managerContact.succeeded()
                metrics.heartbeatsOK.increment()
                if failures > 0 { logger.info("manager reachable again") }
                failures = 0
            } catch {
                managerContact.failed(error)
                metrics.heartbeatsFailed.increment()
                failures += 1
                if failures == 1 || failures % 30 == 0 {
                    logger.warning("heartbeat failed", metadata: ["error": "\(error)"])
                }
            }
            try? await Task.sleep(for: config.heartbeatInterval)
        }
    }

    public func heartbeatOnce() async throws {
        let usage = service.usage()
        let hb = HeartbeatRequest(
            id: nodeID, address: address, zone: config.zone, capacityBytes: usage.capacityBytes, usedBytes: usage.usedBytes,
            inventory: service.inventory().map { ChunkRef(volume: $0.volume, chunk: $0.chunk) },
            rebuilds: service.rebuilder.active, chunkSizeBytes: UInt64(config.chunkSize))
        let reply = try await managerClient.heartbeat(hb)
        for ref in reply.deleteChunks where !service.recentlyCopied(ChunkKey(volume: ref.volume, chunk: ref.chunk)) {
            logger.info("deleting an unreferenced chunk replica", metadata: ["volume": "\(ref.volume)", "chunk": "\(ref.chunk)"])
            do {
                try await service.deleteChunk(ChunkKey(volume: ref.volume, chunk: ref.chunk))
            } catch {
                logger.warning("cannot delete an unreferenced chunk replica", metadata: [
                    "volume": "\(ref.volume)", "chunk": "\(ref.chunk)", "error": "\(error)"])
            }
        }
    }

    public func stop() async {
        await httpServer?.stop()
        await server?.stop()
        pool.closeAll()
        for b in service.backends { try? b.close() }
    }
}

