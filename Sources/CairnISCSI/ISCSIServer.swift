// The iSCSI listener: every block volume is the target iqn.2026-11.io.cairn:VOLUME with
// LUN 0. Each connection is an ISCSIConnectionHandler; at most `ISCSILimits.connectionsMax`
// at once (more are closed on accept). Volumes are opened through the same export
// provider as the NBD gateway, so one gateway holds one VolumeClient per volume.
import CairnCore
import CairnNBD
import Logging
import NIOCore
import NIOPosix

public struct ISCSIServerConfig: Sendable {
    public var host = "127.0.0.1"
    public var port = 3260
    public var auth = ISCSIAuthConfig()
    public init() {}
}

/// What every connection shares.
struct ISCSIServerContext: Sendable {
    let exports: NBDExportProvider
    let auth: ISCSIAuthConfig
    let reservations: SCSIReservationRegistry
}

public final class ISCSIServer: @unchecked Sendable {
    let config: ISCSIServerConfig
    let context: ISCSIServerContext
    let group: EventLoopGroup
    let logger: Logger
    private let nextTSIH = Locked<UInt16>(1)
    private let listener = Locked<Channel?>(nil)
    /// Accepted connections, closed by `stop()`.
    private let admission: ConnectionAdmission

    public init(config: ISCSIServerConfig, exports: NBDExportProvider, group: EventLoopGroup, logger: Logger) throws {
        guard config.auth.chap != nil || config.auth.allowNone else {
            throw CairnError.invalidArgument("iSCSI needs CHAP credentials or AuthMethod None allowed explicitly")
        }
        if config.auth.mutualCHAP != nil && config.auth.chap == nil {
            throw CairnError.invalidArgument("mutual CHAP needs the initiator's CHAP credentials as well")
        }
        self.config = config; self.group = group; self.logger = logger
        admission = ConnectionAdmission(limit: ISCSILimits.connectionsMax, logger: logger)
        context = ISCSIServerContext(exports: exports, auth: config.auth, reservations: SCSIReservationRegistry())
    }

    /// Binds the listener; returns its address for people.
    public func start() async throws -> String {
        let ch = try await bootstrap().bind(host: config.host, port: config.port).get()
        listener.withLock { $0 = ch }
        let endpoint = "iscsi://\(config.host):\(ch.localAddress?.port ?? config.port)"
        logger.info("iSCSI target serving", metadata: ["endpoint": "\(endpoint)", "chap": "\(config.auth.chap != nil)"])
        return endpoint
    }

    public func stop() async {
        if let ch = listener.withLock({ l -> Channel? in defer { l = nil }; return l }) { try? await ch.close() }
        await admission.closeAll()
    }

    private func tsih() -> UInt16 {
        nextTSIH.withLock { n in
            defer { n = n == UInt16.max ? 1 : n + 1 }
            return n
        }
    }

    private func bootstrap() -> ServerBootstrap {
        ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.autoRead, value: true)
            .childChannelInitializer { [self] channel in
                guard admission.admit(channel) else { return channel.close() }
                var log = logger
                log[metadataKey: "peer"] = "\(channel.remoteAddress.map { "\($0)" } ?? "?")"
                let handler = ISCSIConnectionHandler(server: context, tsih: tsih(), logger: log)
                return channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(handler) }
            }
    }
}
