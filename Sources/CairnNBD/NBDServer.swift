// The NBD listeners: TCP and/or a unix socket, each connection an NBDConnectionHandler,
// at most `NBDLimits.connectionsMax` at once (more are closed on accept).
import CairnCore
import Logging
import NIOCore
import NIOPosix
import NIOSSL

public struct NBDServerConfig: Sendable {
    public var tcpHost: String?
    public var tcpPort: Int = 10809
    public var unixSocketPath: String?
    public var tlsMode: NBDTLSMode = .off
    public var tlsCertificatePath: String?
    public var tlsKeyPath: String?
    public init() {}
}

public final class NBDServer: @unchecked Sendable {
    let config: NBDServerConfig
    let exports: NBDExportProvider
    let group: EventLoopGroup
    let logger: Logger
    let tls: NIOSSLContext?
    private let channels = Locked<[Channel]>([])
    /// Accepted connections, closed by `stop()`.
    private let admission: ConnectionAdmission

    public init(config: NBDServerConfig, exports: NBDExportProvider, group: EventLoopGroup, logger: Logger) throws {
        self.config = config; self.exports = exports; self.group = group; self.logger = logger
        admission = ConnectionAdmission(limit: NBDLimits.connectionsMax, logger: logger)
        guard config.tlsMode != .off else { tls = nil; return }
        guard let cert = config.tlsCertificatePath, let key = config.tlsKeyPath else {
            throw CairnError.invalidArgument("--tls \(config.tlsMode.rawValue) needs --tls-cert and --tls-key")
        }
        do {
            let chain = try NIOSSLCertificate.fromPEMFile(cert).map { NIOSSLCertificateSource.certificate($0) }
            let tlsConfig = TLSConfiguration.makeServerConfiguration(
                certificateChain: chain, privateKey: .privateKey(try NIOSSLPrivateKey(file: key, format: .pem)))
            tls = try NIOSSLContext(configuration: tlsConfig)
        } catch {
            throw CairnError.invalidArgument("cannot load the TLS certificate \(cert) or key \(key): \(error)")
        }
    }

    /// Binds every configured listener; returns their addresses for people.
    public func start() async throws -> [String] {
        var endpoints: [String] = []
        if let host = config.tcpHost {
            let ch = try await bootstrap(tcp: true).bind(host: host, port: config.tcpPort).get()
            channels.withLock { $0.append(ch) }
            endpoints.append("nbd://\(host):\(ch.localAddress?.port ?? config.tcpPort)")
        }
        if let path = config.unixSocketPath {
            let ch = try await bootstrap(tcp: false).bind(unixDomainSocketPath: path, cleanupExistingSocketFile: true).get()
            channels.withLock { $0.append(ch) }
            endpoints.append("nbd+unix:///?socket=\(path)")
        }
        logger.info("NBD gateway serving", metadata: ["endpoints": "\(endpoints.joined(separator: " "))", "tls": "\(config.tlsMode)"])
        return endpoints
    }

    public func stop() async {
        for ch in channels.withLock({ c -> [Channel] in defer { c = [] }; return c }) {
            try? await ch.close()
        }
        // Connections end before their exports close, so no request runs on a closed client.
        await admission.closeAll()
    }

    private func bootstrap(tcp: Bool) -> ServerBootstrap {
        var b = ServerBootstrap(group: group).serverChannelOption(.backlog, value: 256)
        if tcp {
            b = b.serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
        }
        return b.childChannelInitializer { [self] channel in
                guard admission.admit(channel) else { return channel.close() }
                var log = logger
                log[metadataKey: "peer"] = "\(channel.remoteAddress.map { "\($0)" } ?? "unix")"
                let handler = NBDConnectionHandler(exports: exports, tlsMode: config.tlsMode, tls: tls, logger: log)
                return channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(handler) }
            }
    }
}
