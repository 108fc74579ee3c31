// `cairn gateway`: the block frontends daemon. Every block volume is an NBD export named after
// the volume, on TCP and optionally on a unix socket (see docs/nbd.md), and an iSCSI target
// (see docs/iscsi.md).
import ArgumentParser
import CairnClient
import CairnCore
import CairnMetrics
import CairnNBD
import CairnNet
import Foundation
import Logging

extension NBDTLSMode: ExpressibleByArgument {}

struct GatewayCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gateway", abstract: "Serve every block volume as an NBD export and an iSCSI target.")

    @Option(help: "TCP address to serve NBD on ('none' for no TCP listener).")
    var nbd = "127.0.0.1:10809"
    @Option(name: .customLong("nbd-socket"), help: "Unix socket path to serve NBD on as well.")
    var nbdSocket: String?
    @OptionGroup var iscsi: ISCSIGatewayOptions
    @Option(help: "TLS: off, on (offered) or require (nothing but STARTTLS in the clear).")
    var tls: NBDTLSMode = .off
    @Option(name: .customLong("tls-cert"), help: "PEM certificate chain for TLS.")
    var tlsCert: String?
    @Option(name: .customLong("tls-key"), help: "PEM private key for TLS.")
    var tlsKey: String?
    @Option(name: .customLong("client-id"), help: "Writer id the gateway attaches volumes with (default: nbd-gateway-HOST).")
    var clientID: String?
    @Option(help: "Manager address.")
    var manager: String?
    @Option(name: .customLong("secret-file"), help: "File holding the cluster secret (default: $CAIRN_SECRET, then the config file).")
    var secretFile: String?
    @Option(help: "Address to serve /metrics, /healthz and /readyz on ('none' for nowhere).")
    var http = "127.0.0.1:9430"

    func run() async throws {
        try await runReporting {
            let logger = Runtime.logger("cairn.gateway")
            let c = try ClientConfig.resolve(manager: manager, secretFile: secretFile)
            // A stable id: a restarted gateway takes its own attachments back without --force.
            let id = clientID ?? "nbd-gateway-\(ProcessInfo.processInfo.hostName)"
            let mc = ManagerClient(baseURL: c.manager, secret: c.secret, group: Runtime.group)
            let pool = DataConnectionPool(secret: c.secret, client: id, group: Runtime.group)
            let exports = VolumeExports(control: mc, transport: pool, clientID: id,
                                        localNode: ProcessInfo.processInfo.environment["CAIRN_LOCAL_NODE"],
                                        logger: Runtime.logger("cairn.client"))
            var config = NBDServerConfig()
            if nbd != "none" {
                let (host, port) = try parseHostPort(nbd)
                config.tcpHost = host
                config.tcpPort = port
            }
            config.unixSocketPath = nbdSocket
            guard config.tcpHost != nil || nbdSocket != nil else {
                throw CairnError.invalidArgument("give --nbd HOST:PORT or --nbd-socket PATH")
            }
            config.tlsMode = tls
            config.tlsCertificatePath = tlsCert
            config.tlsKeyPath = tlsKey
            let server = try NBDServer(config: config, exports: exports.frontend("nbd"), group: Runtime.group, logger: logger)
            let endpoints = try await server.start()
            let iscsiServer = try await iscsi.start(exports: exports.frontend("iscsi"), group: Runtime.group, logger: Runtime.logger("cairn.iscsi"))
            let status = try await GatewayStatus.start(http: http, manager: mc, logger: logger)
            print("NBD gateway serving \(endpoints.joined(separator: " "))")
            fflush(stdout)
            _ = await Runtime.waitForTermination()
            logger.info("gateway stopping")
            await status.stop()
            await server.stop()
            await iscsiServer?.stop()
            await exports.closeAll()
            pool.closeAll()
        }
    }
}

/// A client daemon's /metrics, /healthz and /readyz (the gateway's, a FUSE mount's): alive
/// while it serves (it is started after the daemon's own service is up), ready while the
/// manager answers it too. `role` prefixes its own metric.
struct GatewayStatus {
    static let probeInterval: Duration = .seconds(1)
    static let managerStaleAfter: Duration = .seconds(5)
    let server: HTTPServer?
    let watcher: Task<Void, Never>

    static func start(http: String, manager: ManagerClient, logger: Logger,
                      role: String = "gateway") async throws -> GatewayStatus {
        let contact = ContactTracker("the manager", staleAfter: managerStaleAfter)
        let age = MetricsRegistry.shared.gauge("\(role)_manager_contact_age", unit: .seconds,
                                               help: "Seconds since the manager last answered the \(role) daemon (-1: never).")
        MetricsRegistry.shared.onScrape { age.set(contact.age?.secondsDouble ?? -1) }
        let watcher = Task { await contact.watch(every: probeInterval) { _ = try await manager.nodes() } }
        guard http != "none" else { return GatewayStatus(server: nil, watcher: watcher) }
        let health = Health()
        health.addReadinessCheck("manager", contact.check)
        let (host, port) = try parseHostPort(http)
        let (server, bound) = try await MetricsEndpoint(health: health).serve(host: host, port: port, group: Runtime.group)
        logger.info("\(role) metrics and health", metadata: ["http": "http://\(host):\(bound)"])
        return GatewayStatus(server: server, watcher: watcher)
    }

    func stop() async {
        watcher.cancel()
        await server?.stop()
    }
}
