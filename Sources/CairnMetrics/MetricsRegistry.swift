// CairnMetrics: the one place every daemon gets its metrics, health checks and the
// HTTP endpoint serving /metrics, /healthz and /readyz.
//
// Invariants:
//  - One registry per process (`MetricsRegistry.shared`); every name starts with
//    `cairn_` and ends in its unit (`_bytes`, `_seconds`), counters in `_total`.
//  - Hot paths hold metric objects created once (per volume, per opcode) and only touch
//    them: counters and gauges are atomics; a histogram sample takes swift-prometheus's
//    short per-histogram lock (no allocation, no registry lock).
//  - Values that are cheaper to read than to track (capacity, node states) are set by
//    scrape hooks, which run before each /metrics answer.
import CairnCore
import Prometheus

/// The unit a metric name ends in.
public enum MetricUnit: String, Sendable {
    case none = ""
    case bytes
    case seconds
}

public final class MetricsRegistry: @unchecked Sendable {
    /// The registry of this process.
    public static let shared = MetricsRegistry()
    public static let namespace = "cairn"

    /// Latency buckets from 50 µs (a page-cache read) to 10 s (a request timeout).
    public static let latencyBuckets: [Duration] = [
        .microseconds(50), .microseconds(100), .microseconds(250), .microseconds(500),
        .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(25),
        .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500),
        .seconds(1), .seconds(2), .seconds(5), .seconds(10),
    ]

    public let prometheus = PrometheusCollectorRegistry()
    private let hooks = Locked<[(key: String?, hook: @Sendable () async -> Void)]>([])

    public init() {}

    /// `cairn_<name>[_<unit>]<suffix>`; `name` is snake_case without the prefix.
    public static func fullName(_ name: String, unit: MetricUnit, suffix: String = "") -> String {
        precondition(!name.isEmpty && !name.hasPrefix(namespace + "_"), "metric name '\(name)' must come without the cairn_ prefix")
        precondition(name.utf8.allSatisfy { ($0 >= 0x61 && $0 <= 0x7a) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x5f },
                     "metric name '\(name)' must be snake_case")
        let base = namespace + "_" + name
        return (unit == .none ? base : base + "_" + unit.rawValue) + suffix
    }

    private static func descriptor(_ name: String, unit: MetricUnit, suffix: String, help: String) -> MetricNameDescriptor {
        precondition(!help.isEmpty, "metric \(name) needs a help text")
        // The whole name goes into metricName: the descriptor joins its parts with "_".
        return MetricNameDescriptor(metricName: fullName(name, unit: unit, suffix: suffix), unitName: "", helpText: help)
    }

    /// A monotonically increasing count: `cairn_<name>[_<unit>]_total`.
    public func counter(_ name: String, unit: MetricUnit = .none, help: String, labels: [(String, String)] = []) -> Counter {
        prometheus.makeCounter(descriptor: Self.descriptor(name, unit: unit, suffix: "_total", help: help), labels: labels)
    }

    /// A value that goes up and down: `cairn_<name>[_<unit>]`.
    public func gauge(_ name: String, unit: MetricUnit = .none, help: String, labels: [(String, String)] = []) -> Gauge {
        prometheus.makeGauge(descriptor: Self.descriptor(name, unit: unit, suffix: "", help: help), labels: labels)
    }

    /// A latency histogram: `cairn_<name>_seconds`.
    public func latency(_ name: String, help: String, labels: [(String, String)] = [],
                        buckets: [Duration] = MetricsRegistry.latencyBuckets) -> DurationHistogram {
        prometheus.makeDurationHistogram(descriptor: Self.descriptor(name, unit: .seconds, suffix: "", help: help),
                                         labels: labels, buckets: buckets)
    }

    public func remove(_ gauge: Gauge) { prometheus.unregisterGauge(gauge) }

    /// Runs before every scrape, to set gauges read from the process's state. A hook with
    /// a key replaces the earlier one with that key (a manager that leads again).
    public func onScrape(key: String? = nil, _ hook: @escaping @Sendable () async -> Void) {
        hooks.withLock { hooks in
            if let key { hooks.removeAll { $0.key == key } }
            hooks.append((key, hook))
        }
    }

    /// The Prometheus text exposition of every metric, after running the scrape hooks.
    public func scrape() async -> [UInt8] {
        for entry in hooks.snapshot { await entry.hook() }
        var out: [UInt8] = []
        prometheus.emit(into: &out)
        return out
    }
}

extension DurationHistogram {
    /// Records the time since `start` (from `ContinuousClock.now`).
    public func record(since start: ContinuousClock.Instant) {
        record(ContinuousClock.now - start)
    }
}
