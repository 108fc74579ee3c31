// Volume I/O as a frontend sees it: operations, bytes, errors, latency and requests in
// flight per volume, frontend (nbd, iscsi, fuse, cli) and operation. One object per
// (volume, frontend), made when a volume is opened and kept in a cache, so a request
// touches only atomics and one histogram: it never builds label strings.
import CairnCore
import Prometheus

public enum VolumeIOOp: Int, CaseIterable, Sendable {
    case read, write, trim, flush

    public var label: String {
        switch self {
        case .read: return "read"
        case .write: return "write"
        case .trim: return "trim"
        case .flush: return "flush"
        }
    }
}

public final class VolumeIOMetrics: Sendable {
    public let volume: String
    public let frontend: String
    let operations: [Counter]
    let errors: [Counter]
    let bytes: [Counter]
    let latency: [DurationHistogram]
    let inFlight: Gauge

    private static let cache = Locked<[String: VolumeIOMetrics]>([:])

    /// The metrics of (volume, frontend) in `registry`, made on first use.
    public static func of(volume: String, frontend: String, registry: MetricsRegistry = .shared) -> VolumeIOMetrics {
        let key = "\(ObjectIdentifier(registry).hashValue)/\(frontend)/\(volume)"
        return cache.withLock { c in
            if let m = c[key] { return m }
            let m = VolumeIOMetrics(volume: volume, frontend: frontend, registry: registry)
            c[key] = m
            return m
        }
    }

    init(volume: String, frontend: String, registry: MetricsRegistry) {
        self.volume = volume; self.frontend = frontend
        let base = [("volume", volume), ("frontend", frontend)]
        func each<M>(_ make: ([(String, String)]) -> M) -> [M] {
            VolumeIOOp.allCases.map { make(base + [("op", $0.label)]) }
        }
        operations = each { registry.counter("volume_io_operations", help: "Volume I/O requests completed.", labels: $0) }
        errors = each { registry.counter("volume_io_errors", help: "Volume I/O requests that failed.", labels: $0) }
        bytes = each { registry.counter("volume_io", unit: .bytes, help: "Bytes read or written by volume I/O.", labels: $0) }
        latency = each { registry.latency("volume_io_duration", help: "Latency of volume I/O requests.", labels: $0) }
        inFlight = registry.gauge("volume_io_in_flight", help: "Volume I/O requests in progress (queue depth).", labels: base)
    }

    /// Runs one request and records it: latency and count (or error), and `bytes` on success.
    public func measure<T>(_ op: VolumeIOOp, bytes n: Int, _ body: () async throws -> T) async rethrows -> T {
        let start = ContinuousClock.now
        inFlight.increment(by: 1)
        defer { inFlight.decrement(by: 1) }
        do {
            let result = try await body()
            completed(op, bytes: n, since: start)
            return result
        } catch {
            failed(op)
            throw error
        }
    }

    func completed(_ op: VolumeIOOp, bytes n: Int, since start: ContinuousClock.Instant) {
        latency[op.rawValue].record(since: start)
        operations[op.rawValue].increment()
        if n > 0 { bytes[op.rawValue].increment(by: Int64(n)) }
    }

    func failed(_ op: VolumeIOOp) { errors[op.rawValue].increment() }
}
