import CairnMetrics
import XCTest

final class MetricsRegistryTests: XCTestCase {
    func text(_ r: MetricsRegistry) async -> String { String(decoding: await r.scrape(), as: UTF8.self) }

    func testNamesCarryThePrefixTheUnitAndTotal() {
        XCTAssertEqual(MetricsRegistry.fullName("storage_read", unit: .bytes, suffix: "_total"), "cairn_storage_read_bytes_total")
        XCTAssertEqual(MetricsRegistry.fullName("volume_io_duration", unit: .seconds), "cairn_volume_io_duration_seconds")
        XCTAssertEqual(MetricsRegistry.fullName("manager_nodes", unit: .none), "cairn_manager_nodes")
    }

    func testCounterGaugeAndHistogramAreEmittedWithTypeAndHelp() async {
        let r = MetricsRegistry()
        r.counter("requests", help: "Requests.", labels: [("op", "read")]).increment(by: Int64(3))
        r.gauge("capacity", unit: .bytes, help: "Capacity.").set(to: 4096)
        r.latency("request_duration", help: "Latency.").record(.milliseconds(3))
        let out = await text(r)
        XCTAssertTrue(out.contains("# TYPE cairn_requests_total counter"), out)
        XCTAssertTrue(out.contains("# HELP cairn_requests_total Requests."), out)
        XCTAssertTrue(out.contains(#"cairn_requests_total{op="read"} 3"#), out)
        XCTAssertTrue(out.contains("# TYPE cairn_capacity_bytes gauge"), out)
        XCTAssertTrue(out.contains("cairn_capacity_bytes 4096.0"), out)
        XCTAssertTrue(out.contains("# TYPE cairn_request_duration_seconds histogram"), out)
        // 3 ms falls in the 5 ms bucket and every larger one, not in the 2 ms one.
        XCTAssertTrue(out.contains(#"cairn_request_duration_seconds_bucket{le="0.002"} 0"#), out)
        XCTAssertTrue(out.contains(#"cairn_request_duration_seconds_bucket{le="0.005"} 1"#), out)
        XCTAssertTrue(out.contains(#"cairn_request_duration_seconds_bucket{le="+Inf"} 1"#), out)
        XCTAssertTrue(out.contains("cairn_request_duration_seconds_count 1"), out)
    }

    func testTheSameNameAndLabelsGiveTheSameMetric() {
        let r = MetricsRegistry()
        let a = r.counter("x", help: "X.", labels: [("v", "1")])
        let b = r.counter("x", help: "X.", labels: [("v", "1")])
        XCTAssertTrue(a === b)
        XCTAssertFalse(a === r.counter("x", help: "X.", labels: [("v", "2")]))
    }

    func testScrapeHooksRunBeforeEachScrape() async {
        let r = MetricsRegistry()
        let g = r.gauge("scrapes", help: "Scrapes.")
        let n = Counted()
        r.onScrape { g.set(to: Double(n.next())) }
        _ = await r.scrape()
        let out = await text(r)
        XCTAssertTrue(out.contains("cairn_scrapes 2.0"), out)
    }

    func testAKeyedHookReplacesTheEarlierOne() async {
        let r = MetricsRegistry()
        let g = r.gauge("leader_term", help: "Term.")
        r.onScrape(key: "manager") { g.set(to: 1) }
        r.onScrape(key: "manager") { g.set(to: 2) }
        let out = await text(r)
        XCTAssertTrue(out.contains("cairn_leader_term 2.0"), out)
        g.set(to: 0)
        r.onScrape(key: "other") { g.increment(by: 10.0) }
        let again = await text(r)
        XCTAssertTrue(again.contains("cairn_leader_term 12.0"), again)
    }

    func testRemovedGaugesDisappear() async {
        let r = MetricsRegistry()
        let g = r.gauge("node_up", help: "Up.", labels: [("node", "n1")])
        g.set(to: 1)
        r.remove(g)
        let out = await text(r)
        XCTAssertFalse(out.contains(#"node="n1""#), out)
    }
}

final class Counted: @unchecked Sendable {
    private let lock = NSLock()
    private var n = 0
    func next() -> Int { lock.lock(); defer { lock.unlock() }; n += 1; return n }
}
