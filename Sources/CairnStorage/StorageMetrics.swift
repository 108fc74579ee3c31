// A storage node's metrics: data-path requests (count, errors, latency, bytes, in
// flight) per opcode, heartbeats, capacity, journal queue depth and rebuild copies.
// Per-opcode metric objects are made once; a request touches atomics and one histogram.
import CairnChunkStore
import CairnCore
import CairnMetrics
import CairnNet
import CairnWire
import NIOCore
import Prometheus

final class StorageMetrics: Sendable {
    let requests: [Counter?]
    let errors: [Counter?]
    let latency: [DurationHistogram?]
    let bytesRead: Counter
    let bytesWritten: Counter
    let inFlight: Gauge
    let heartbeatsOK: Counter
    let heartbeatsFailed: Counter
    let rebuildCopied: Counter

    init(registry: MetricsRegistry) {
        requests = Self.perOpcode { registry.counter("storage_requests", help: "Data-path requests a storage node answered.", labels: $0) }
        errors = Self.perOpcode { registry.counter("storage_request_errors", help: "Data-path requests answered with an error.", labels: $0) }
        latency = Self.perOpcode { registry.latency("storage_request_duration", help: "Latency of data-path requests on a storage node.", labels: $0) }
        bytesRead = registry.counter("storage_read", unit: .bytes, help: "Bytes read from chunk replicas by READ requests.")
        bytesWritten = registry.counter("storage_written", unit: .bytes, help: "Bytes written to chunk replicas by WRITE requests.")
        inFlight = registry.gauge("storage_requests_in_flight", help: "Data-path requests in progress on a storage node.")
        heartbeatsOK = registry.counter("storage_heartbeats", help: "Heartbeats sent to the manager, by result.", labels: [("result", "ok")])
        heartbeatsFailed = registry.counter("storage_heartbeats", help: "Heartbeats sent to the manager, by result.", labels: [("result", "failed")])
        rebuildCopied = registry.counter("storage_rebuild_copied", unit: .bytes,
                                         help: "Bytes copied into this node's replicas by rebuilds and resyncs.")
    }

    /// One metric per opcode, indexed by the opcode's raw value (slot 0, which no opcode
    /// has, is left empty).
    static func perOpcode<M>(_ make: ([(String, String)]) -> M) -> [M?] {
        let slots = Int(Opcode.allCases.map(\.rawValue).max()!) + 1
        var out = [M?](repeating: nil, count: slots)
        for op in Opcode.allCases { out[Int(op.rawValue)] = make([("op", "\(op)")]) }
        return out
    }

    /// Gauges read on each scrape: capacity, usage, journal queue depth, rebuilds.
    func addScrapeHook(_ registry: MetricsRegistry, service: StorageService, manager: ContactTracker) {
        let capacity = registry.gauge("storage_capacity", unit: .bytes, help: "Capacity of a storage node's data directories.")
        let used = registry.gauge("storage_used", unit: .bytes, help: "Bytes used in a storage node's data directories.")
        let pending = registry.gauge("storage_journal_queue_depth", help: "Mutations waiting for the journal committer.")
        let rebuilds = registry.gauge("storage_rebuilds_active", help: "Rebuild copies running into this node.")
        let rebuildRemaining = registry.gauge("storage_rebuild_remaining", unit: .bytes,
                                              help: "Bytes the running rebuild copies still have to copy.")
        let contactAge = registry.gauge("storage_manager_contact_age", unit: .seconds,
                                        help: "Seconds since the manager last accepted a heartbeat (-1: never).")
        registry.onScrape {
            let usage = service.usage()
            capacity.set(Double(usage.capacityBytes))
            used.set(Double(usage.usedBytes))
            pending.set(Double(service.backends.reduce(0) { $0 + (($1 as? DiskChunkStore)?.mutationsPending ?? 0) }))
            let active = service.rebuilder.active
            rebuilds.set(Double(active.count))
            rebuildRemaining.set(Double(active.reduce(UInt64(0)) { $0 + ($1.totalBytes &- $1.copiedBytes) }))
            contactAge.set(manager.age?.secondsDouble ?? -1)
        }
    }
}

/// The storage service with every request measured.
struct MeasuredDataService: DataService {
    let service: StorageService
    let metrics: StorageMetrics

    func handle(_ request: DataRequest) async throws -> ByteBuffer {
        let op = Int(request.opcode.rawValue)
        let start = ContinuousClock.now
        metrics.inFlight.increment(by: 1)
        defer { metrics.inFlight.decrement(by: 1) }
        do {
            let reply = try await service.handle(request)
            metrics.latency[op]!.record(since: start)
            metrics.requests[op]!.increment()
            switch request {
            case .read: metrics.bytesRead.increment(by: Int64(reply.readableBytes))
            case .write(_, _, _, let data): metrics.bytesWritten.increment(by: Int64(data.readableBytes))
            default: break
            }
            return reply
        } catch {
            metrics.latency[op]!.record(since: start)
            metrics.errors[op]!.increment()
            throw error
        }
    }
}
