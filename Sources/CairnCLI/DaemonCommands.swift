// `cairn manager` and `cairn storage`: the long-running daemons.
import ArgumentParser
import CairnCore
import CairnEtcd
import CairnManager
import CairnMeta
import CairnNet
import CairnStorage
import Foundation

struct ManagerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "manager", abstract: "Run the cluster manager (node registry, volumes, placement, health, rebuilds).")

    @Option(help: "Address to serve the HTTP API on.")
    var listen = "127.0.0.1:9400"
    @Option(help: "Metadata store: a SQLite file path (sqlite:PATH or PATH), or etcd://HOST:PORT[,HOST:PORT...] for several managers on one etcd cluster.")
    var meta = "./cairn-manager.db"
    @Option(help: "With etcd: the API address other processes reach this manager at (default: http://LISTEN).")
    var advertise: String?
    @Option(name: .customLong("etcd-namespace"), help: "With etcd: the key prefix this cluster's metadata lives under.")
    var etcdNamespace = "/cairn"
    @Option(name: .customLong("leader-ttl"), help: "With etcd: the leader's lease; a dead leader is replaced after about this long.")
    var leaderTTL = DurationArgument(argument: "5s")!
    @Option(name: .customLong("secret-file"), help: "File holding the cluster secret (default: $CAIRN_SECRET, then the config file).")
    var secretFile: String?
    @Option(name: .customLong("heartbeat-timeout"), help: "A node silent this long is down.")
    var heartbeatTimeout = DurationArgument(argument: "5s")!
    @Option(name: .customLong("grace-period"), help: "A down node's replicas are rebuilt elsewhere after this long.")
    var gracePeriod = DurationArgument(argument: "30s")!
    @Option(name: .customLong("chunk-size"), help: "Chunk size of new volumes; storage nodes must use the same.")
    var chunkSize = SizeArgument(argument: "64MiB")!
    @Option(name: .customLong("rebuild-rate"), help: "Copy rate limit of one rebuild, per second.")
    var rebuildRate = SizeArgument(argument: "256MiB")!
    @Option(name: .customLong("rebuilds-max"), help: "Rebuilds running at once in the cluster.")
    var rebuildsMax = 8

    func run() async throws {
        try await runReporting {
            let logger = Runtime.logger("cairn.manager")
            let secret = try ClientConfig.resolve(manager: nil, secretFile: secretFile).secret
            var config = ManagerConfig()
            config.heartbeatTimeout = heartbeatTimeout.value
            config.gracePeriod = gracePeriod.value
            config.chunkSizeDefault = chunkSize.bytes
            config.rebuildBytesPerSecond = rebuildRate.bytes
            config.rebuildsMax = rebuildsMax
            let (host, port) = try parseHostPort(listen)
            if meta.hasPrefix("etcd://") {
                try await ReplicatedManager(
                    endpoints: try EtcdClient.parseEndpoints(meta), namespace: etcdNamespace, host: host, port: port,
                    advertise: advertise, leaderTTL: leaderTTL.value, secret: secret, config: config, logger: logger
                ).run()
                return
            }
            let path = meta.hasPrefix("sqlite:") ? String(meta.dropFirst("sqlite:".count)) : meta
            let store = try SQLiteMetaStore(path: path)
            let pool = DataConnectionPool(secret: secret, client: "manager", group: Runtime.group)
            let manager = Manager(store: store, config: config, nodes: DataNodeCommander(pool: pool), logger: logger)
            let api = ManagerAPI(manager: manager, secret: secret)
            let server = HTTPServer(host: host, port: port, group: Runtime.group) { await api.handle($0) }
            let bound = try await server.start()
            logger.info("manager serving", metadata: ["api": "http://\(host):\(bound)", "meta": "\(path)"])
            let supervisor = Task { await manager.supervise() }
            _ = await Runtime.waitForTermination()
            logger.info("manager stopping")
            supervisor.cancel()
            await server.stop()
            pool.closeAll()
            try? await store.close()
        }
    }
}

struct StorageCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "storage", abstract: "Run a storage node serving chunk replicas from one or more data directories.")

    @Option(name: .customLong("data"), help: "Data directory (one per disk); repeat for several.")
    var data: [String] = []
    @Option(help: "Address to serve the data path on.")
    var listen = "127.0.0.1:9410"
    @Option(help: "host:port others use to reach this node (default: the listen address).")
    var advertise: String?
    @Option(help: "Manager address.")
    var manager: String?
    @Option(name: .customLong("secret-file"), help: "File holding the cluster secret (default: $CAIRN_SECRET, then the config file).")
    var secretFile: String?
    @Option(name: .customLong("node-id"), help: "Node id (default: kept in the first data directory).")
    var nodeID: String?
    @Option(help: "Zone label; replicas of a chunk go to distinct zones when nodes have them.")
    var zone: String?
    @Option(name: .customLong("chunk-size"), help: "Chunk size; must match the manager's.")
    var chunkSize = SizeArgument(argument: "64MiB")!
    @Option(name: .customLong("journal-size"), help: "Write-ahead journal size per data directory.")
    var journalSize = SizeArgument(argument: "256MiB")!
    @Option(help: "Address to serve /metrics, /healthz and /readyz on ('none' for nowhere).")
    var http = "127.0.0.1:9420"

    func run() async throws {
        try await runReporting {
            guard !data.isEmpty else { throw CairnError.invalidArgument("give at least one --data directory") }
            let logger = Runtime.logger("cairn.storage")
            let client = try ClientConfig.resolve(manager: manager, secretFile: secretFile)
            let (host, port) = try parseHostPort(listen)
            var config = StorageNodeConfig(dataDirectories: data, manager: client.manager, secret: client.secret)
            config.listenHost = host
            config.listenPort = port
            config.advertise = advertise
            config.nodeID = nodeID
            config.zone = zone
            config.chunkSize = Int(chunkSize.bytes)
            config.journalBytes = Int(journalSize.bytes)
            if http == "none" {
                config.httpHost = nil
            } else {
                let (httpHost, httpPort) = try parseHostPort(http)
                config.httpHost = httpHost
                config.httpPort = httpPort
            }
            let node = try StorageNode(config: config, group: Runtime.group, logger: logger)
            _ = try await node.start()
            let beats = Task { await node.heartbeatLoop() }
            _ = await Runtime.waitForTermination()
            logger.info("storage node stopping")
            beats.cancel()
            await node.stop()
        }
    }
}
