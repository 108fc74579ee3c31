// Serves the CSI services on a unix socket until asked to stop.
import CairnAttach
import CairnCore
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import Foundation
import Logging
import NIOCore

public enum CSIPlugin {
    /// The socket path of an endpoint: unix:///path, unix:/path or a bare path.
    public static func socketPath(_ endpoint: String) throws -> String {
        var p = endpoint
        if p.hasPrefix("unix://") { p.removeFirst("unix://".count) } else if p.hasPrefix("unix:") { p.removeFirst("unix:".count) }
        guard p.hasPrefix("/"), p.count > 1 else {
            throw CairnError.invalidArgument("endpoint '\(endpoint)' is not a unix socket: use unix:///path/csi.sock")
        }
        return p
    }

    /// Serves until `stop` returns, then finishes the calls in flight.
    public static func serve(socket: String, services: [any RegistrableRPCService], logger: Logger,
                             stop: @escaping @Sendable () async -> Void) async throws {
        let server = GRPCServer(
            transport: .http2NIOPosix(address: .unixDomainSocket(path: socket), transportSecurity: .plaintext),
            services: services)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await server.serve() }
            group.addTask {
                await stop()
                logger.info("stopping: finishing the calls in flight")
                server.beginGracefulShutdown()
            }
            if let address = try await server.listeningAddress {
                logger.info("CSI plugin serving", metadata: ["address": "\(address)"])
            }
            try await group.waitForAll()
        }
    }
}

/// Everything `cairn csi` needs to serve.
public struct CSIPluginConfig: Sendable {
    public var endpoint: String
    public var nodeID: String
    public var controller: Bool
    public var node: Bool
    public var stateDirectory: String
    public var zone: String?
    public var managers: String
    public var secret: String
    /// Where the node attaches volumes from with the nbd and iscsi methods (the gateway).
    public var nbdAddress: String
    public var iscsiPortal: String
    public init(endpoint: String, nodeID: String, controller: Bool, node: Bool, stateDirectory: String, zone: String?,
                managers: String, secret: String, nbdAddress: String, iscsiPortal: String) {
        self.endpoint = endpoint; self.nodeID = nodeID; self.controller = controller; self.node = node
        self.stateDirectory = stateDirectory; self.zone = zone; self.managers = managers; self.secret = secret
        self.nbdAddress = nbdAddress; self.iscsiPortal = iscsiPortal
    }
}

extension CSIPlugin {
    /// Builds the services `config` asks for and serves them until `stop` returns.
    public static func run(_ config: CSIPluginConfig, group: EventLoopGroup, logger: Logger,
                           stop: @escaping @Sendable () async -> Void) async throws {
        guard config.controller || config.node else { throw CairnError.invalidArgument("pass --controller, --node or both") }
        guard !config.nodeID.isEmpty else { throw CairnError.invalidArgument("--node-id is empty") }
        let socket = try socketPath(config.endpoint)
        try FileManager.default.createDirectory(atPath: (socket as NSString).deletingLastPathComponent,
                                                withIntermediateDirectories: true)
        let backend = ManagerBackend(managers: config.managers, secret: config.secret, group: group)
        var services: [any RegistrableRPCService] = [
            IdentityService(controller: config.controller, logger: logger) { _ = try await backend.clusterStatus() },
        ]
        if config.controller { services.append(ControllerService(core: ControllerCore(backend: backend), logger: logger)) }
        if config.node {
            try FileManager.default.createDirectory(atPath: config.stateDirectory, withIntermediateDirectories: true)
            let options = NodeOptions(nodeID: config.nodeID, zone: config.zone, stateDirectory: config.stateDirectory,
                                      cairnBinary: currentExecutable(),
                                      daemonEnvironment: ["CAIRN_MANAGER": config.managers, "CAIRN_SECRET": config.secret])
            // Attachments are recorded beside the plugin's own records, one state directory per node id.
            let attacher = CairnAttacher(options: AttachOptions(
                managers: config.managers.split(separator: ",").map(String.init), secret: config.secret,
                stateDirectory: config.stateDirectory + "/attach", cairnBinary: currentExecutable(),
                nbdAddress: config.nbdAddress, iscsiPortal: config.iscsiPortal))
            services.append(NodeService(core: NodeCore(options: options, system: LinuxNodeSystem(), attacher: attacher), logger: logger))
        }
        if config.node {
            let registration = CSINodeRecord(nodeID: config.nodeID, zone: config.zone)
            // Once before serving (so a publish right after the socket appears finds the
            // node), then in the background while the manager is unreachable.
            let nodes = CSINodes(store: backend.records)
            if (try? await nodes.register(registration)) == nil {
                Task { await register(registration, in: nodes, logger: logger) }
            }
        }
        try await serve(socket: socket, services: services, logger: logger, stop: stop)
    }

    /// Registers the node id with the cluster, retrying every second while the manager is
    /// unreachable (ControllerPublishVolume answers NOT_FOUND for a node id never registered).
    static func register(_ record: CSINodeRecord, in nodes: CSINodes, logger: Logger) async {
        var reported = false
        while !Task.isCancelled {
            do {
                try await nodes.register(record)
                logger.info("node registered", metadata: ["node-id": "\(record.nodeID)"])
                return
            } catch {
                if !reported { logger.warning("cannot register the node yet; retrying every second: \(error)") }
                reported = true
                try? await Task.sleep(nanoseconds: 1_000_000_000)
            }
        }
    }

    /// This process's executable (to start `cairn mount` daemons with the same binary).
    public static func currentExecutable() -> String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    }
}
