// The manager's metrics: nodes (up/down, heartbeat age, capacity), volumes by health,
// chunk replica states and rebuild progress, read from the cluster status on each scrape;
// heartbeats as a counter. Per-node and per-volume gauges are made once and removed when
// the node or volume goes away.
import CairnCore
import CairnMetrics
import Foundation
import Prometheus

final class ManagerMetrics: Sendable {
    let heartbeats: Counter
    private let registry: MetricsRegistry
    private let nodesByState: [NodeState: Gauge]
    private let volumesByHealth: [VolumeHealth: Gauge]
    private let chunksByState: [String: Gauge]
    private let capacity: Gauge
    private let used: Gauge
    private let rebuildCopied: Gauge
    private let rebuildTotal: Gauge
    private let statusOK: Gauge
    private let perNode = Locked<[NodeID: [Gauge]]>([:])
    private let perVolume = Locked<[String: [Gauge]]>([:])

    static let chunkStates = ["allocated", "degraded", "rebuilding"]

    init(registry: MetricsRegistry, manager: Manager) {
        self.registry = registry
        heartbeats = registry.counter("manager_heartbeats", help: "Storage node heartbeats the manager accepted.")
        nodesByState = Dictionary(uniqueKeysWithValues: [NodeState.up, .down, .draining].map {
            ($0, registry.gauge("manager_nodes", help: "Storage nodes by state.", labels: [("state", $0.rawValue)]))
        })
        volumesByHealth = Dictionary(uniqueKeysWithValues: [VolumeHealth.healthy, .degraded, .rebuilding].map {
            ($0, registry.gauge("manager_volumes", help: "Volumes by health.", labels: [("health", $0.rawValue)]))
        })
        chunksByState = Dictionary(uniqueKeysWithValues: Self.chunkStates.map {
            ($0, registry.gauge("manager_chunks", help: "Chunks with replicas: all allocated, those short of healthy replicas (degraded), those with a replica being rebuilt.",
                                labels: [("state", $0)]))
        })
        capacity = registry.gauge("manager_capacity", unit: .bytes, help: "Capacity of the live storage nodes.")
        used = registry.gauge("manager_used", unit: .bytes, help: "Bytes used on the live storage nodes.")
        rebuildCopied = registry.gauge("manager_rebuild_copied", unit: .bytes, help: "Bytes copied by rebuilds in progress.")
        rebuildTotal = registry.gauge("manager_rebuild_total", unit: .bytes, help: "Bytes to copy by rebuilds in progress.")
        statusOK = registry.gauge("manager_status_ok", help: "1 when the last scrape could read the cluster status from the metadata store.")
        registry.onScrape(key: "manager") { [self] in
            do {
                update(try await manager.status(), now: Date().timeIntervalSince1970)
                statusOK.set(to: 1)
            } catch {
                statusOK.set(to: 0)
            }
        }
    }

    func update(_ s: ClusterStatus, now: Double) {
        for (state, gauge) in nodesByState { gauge.set(Double(s.nodes.filter { $0.state == state }.count)) }
        for (health, gauge) in volumesByHealth { gauge.set(Double(s.volumes.filter { $0.health == health }.count)) }
        chunksByState["allocated"]!.set(Double(s.volumes.reduce(0) { $0 + $1.chunksAllocated }))
        chunksByState["degraded"]!.set(Double(s.volumes.reduce(0) { $0 + $1.chunksDegraded }))
        chunksByState["rebuilding"]!.set(Double(s.volumes.reduce(0) { $0 + $1.chunksRebuilding }))
        capacity.set(Double(s.capacityBytes))
        used.set(Double(s.usedBytes))
        rebuildCopied.set(Double(s.volumes.reduce(UInt64(0)) { $0 + $1.rebuildCopiedBytes }))
        rebuildTotal.set(Double(s.volumes.reduce(UInt64(0)) { $0 + $1.rebuildTotalBytes }))
        updateNodes(s.nodes, now: now)
        updateVolumes(s.volumes)
    }

    private func updateNodes(_ nodes: [NodeRecord], now: Double) {
        let gauges = sync(perNode, keys: nodes.map(\.id)) { id in
            let l = [("node", id)]
            return [
                registry.gauge("manager_node_up", help: "1 while the node heartbeats in time, else 0.", labels: l),
                registry.gauge("manager_node_heartbeat_age", unit: .seconds, help: "Seconds since the node's last heartbeat.", labels: l),
                registry.gauge("manager_node_capacity", unit: .bytes, help: "Capacity a node reported.", labels: l),
                registry.gauge("manager_node_used", unit: .bytes, help: "Bytes used a node reported.", labels: l),
            ]
        }
        for n in nodes {
            guard let g = gauges[n.id] else { continue }
            g[0].set(to: n.state == .down ? 0 : 1)
            g[1].set(max(0, now - n.lastHeartbeat))
            g[2].set(Double(n.capacityBytes))
            g[3].set(Double(n.usedBytes))
        }
    }

    private func updateVolumes(_ volumes: [VolumeStatus]) {
        let gauges = sync(perVolume, keys: volumes.map(\.volume.name)) { name in
            let l = [("volume", name)]
            return [registry.gauge("manager_volume_size", unit: .bytes, help: "Size of a volume.", labels: l)]
                + Self.chunkStates.map {
                    registry.gauge("manager_volume_chunks", help: "A volume's chunks by replica state (see cairn_manager_chunks).",
                                   labels: l + [("state", $0)])
                }
                + [registry.gauge("manager_volume_rebuild_copied", unit: .bytes, help: "Bytes copied by a volume's rebuilds in progress.", labels: l),
                   registry.gauge("manager_volume_rebuild_total", unit: .bytes, help: "Bytes to copy by a volume's rebuilds in progress.", labels: l)]
        }
        for v in volumes {
            guard let g = gauges[v.volume.name] else { continue }
            g[0].set(Double(v.volume.sizeBytes))
            g[1].set(Double(v.chunksAllocated))
            g[2].set(Double(v.chunksDegraded))
            g[3].set(Double(v.chunksRebuilding))
            g[4].set(Double(v.rebuildCopiedBytes))
            g[5].set(Double(v.rebuildTotalBytes))
        }
    }

    /// Makes gauges for new keys and unregisters those of keys that went away.
    private func sync(_ cache: Locked<[String: [Gauge]]>, keys: [String], make: (String) -> [Gauge]) -> [String: [Gauge]] {
        cache.withLock { c in
            let wanted = Set(keys)
            for (key, gauges) in c where !wanted.contains(key) {
                gauges.forEach(registry.remove)
                c[key] = nil
            }
            for key in wanted where c[key] == nil { c[key] = make(key) }
            return c
        }
    }
}
