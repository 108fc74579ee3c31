// `cairn gateway`: the NBD frontend daemon. Every block volume is an NBD export named after
// the volume, on TCP and optionally on a unix socket (see docs/nbd.md).
import ArgumentParser
import CairnClient
import CairnCore
import CairnNBD
import CairnNet
import Foundation

extension NBDTLSMode: ExpressibleByArgument {}

struct GatewayCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gateway", abstract: "Serve every block volume as an NBD export.")

    @Option(help: "TCP address to serve NBD on ('none' for no TCP listener).")
    var nbd = "127.0.0.1:10809"
    @Option(name: .customLong("nbd-socket"), help: "Unix socket path to serve NBD on as well.")
    var nbdSocket: String?
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
            let server = try NBDServer(config: config, exports: exports, group: Runtime.group, logger: logger)
            let endpoints = try await server.start()
            print("NBD gateway serving \(endpoints.joined(separator: " "))")
            fflush(stdout)
            _ = await Runtime.waitForTermination()
            logger.info("gateway stopping")
            await server.stop()
            await exports.closeAll()
            pool.closeAll()
        }
    }
}
