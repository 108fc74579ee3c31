// `cairn manager --meta etcd://...`: one of several managers on one etcd cluster. Every
// such process serves its HTTP port at once; the elected one runs the Manager (API and
// supervisor) with its metadata writes fenced on its term, the others stand by (see
// ManagerGate) until the leader's lease ends, then campaign again.
import CairnCore
import CairnEtcd
import CairnManager
import CairnNet
import Foundation
import Logging

struct ReplicatedManager {
    let endpoints: [String]
    let namespace: String
    let host: String
    let port: Int
    let advertise: String?
    let leaderTTL: Duration
    let secret: String
    let config: ManagerConfig
    let logger: Logger

    func run() async throws {
        let client = try EtcdClient(endpoints: endpoints, group: Runtime.group)
        let store = try EtcdMetaStore(client: client, namespace: namespace)
        let pool = DataConnectionPool(secret: secret, client: "manager", group: Runtime.group)
        let gate = ManagerGate()
        let server = HTTPServer(host: host, port: port, group: Runtime.group) { await gate.handle($0) }
        let bound = try await server.start()
        let address = advertise ?? "http://\(host):\(bound)"
        let ttl = max(2, leaderTTL.components.seconds)
        let election = try EtcdLeaderElection(client: client, key: namespace + "/leader", candidate: address,
                                              ttlSeconds: ttl, logger: logger)
        gate.standBy(leader: await election.leader())
        logger.info("manager serving, standing by for the leadership",
                    metadata: ["api": "\(address)", "meta": "\(endpoints.joined(separator: ","))", "namespace": "\(namespace)"])
        let config = self.config, secret = self.secret, logger = self.logger
        let roles = Task {
            while !Task.isCancelled {
                let term: EtcdLeaderElection.Term
                do { term = try await election.campaign() } catch { return }  // Cancelled: stopping.
                store.setFence(key: election.key, modRevision: term.revision)
                let manager = Manager(store: store, config: config, nodes: DataNodeCommander(pool: pool), logger: logger)
                gate.lead(ManagerAPI(manager: manager, secret: secret))
                let supervisor = Task {
                    // Give every storage node time to find this leader before judging nodes
                    // by their heartbeats, which stopped while there was none.
                    try? await Task.sleep(for: config.heartbeatTimeout)
                    guard !Task.isCancelled else { return }
                    await manager.supervise()
                }
                var stopping = false
                do { try await election.hold(term) } catch { stopping = true }
                supervisor.cancel()
                gate.standBy(leader: nil)
                if stopping {
                    await election.resign(term)
                    return
                }
                logger.warning("this manager lost the leadership; standing by")
                gate.standBy(leader: await election.leader())
            }
        }
        _ = await Runtime.waitForTermination()
        logger.info("manager stopping")
        roles.cancel()
        await roles.value
        await server.stop()
        pool.closeAll()
        try? await store.close()
    }
}
