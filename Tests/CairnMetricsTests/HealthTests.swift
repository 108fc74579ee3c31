import CairnMetrics
@testable import CairnNet
import XCTest

final class HealthTests: XCTestCase {
    func request(_ path: String) -> HTTPRequest {
        HTTPRequest(method: "GET", path: path, query: [:], headers: [:], body: [])
    }

    func body(_ r: HTTPResponse?) -> String { String(decoding: r?.body ?? [], as: UTF8.self) }

    func testReadinessFailsOnAReadinessCheckButLivenessHolds() async {
        let health = Health()
        let down = Flag()
        health.addReadinessCheck("manager") { down.value ? "unreachable" : nil }
        let endpoint = MetricsEndpoint(registry: MetricsRegistry(), health: health)
        var ready = await endpoint.handle(request("/readyz"))
        XCTAssertEqual(ready?.status, 200)
        down.value = true
        ready = await endpoint.handle(request("/readyz"))
        XCTAssertEqual(ready?.status, 503)
        XCTAssertEqual(body(ready), "manager: unreachable\n")
        let live = await endpoint.handle(request("/healthz"))
        XCTAssertEqual(live?.status, 200)
    }

    func testLivenessFailureFailsBoth() async {
        let health = Health()
        health.addLivenessCheck("data path") { "not listening" }
        let endpoint = MetricsEndpoint(registry: MetricsRegistry(), health: health)
        let live = await endpoint.handle(request("/healthz"))
        let ready = await endpoint.handle(request("/readyz"))
        XCTAssertEqual(live?.status, 503)
        XCTAssertEqual(ready?.status, 503)
    }

    func testMetricsPathServesTheTextFormatAndOtherPathsAreNotOurs() async {
        let r = MetricsRegistry()
        r.counter("hits", help: "Hits.").increment()
        let endpoint = MetricsEndpoint(registry: r, health: Health())
        let m = await endpoint.handle(request("/metrics"))
        XCTAssertEqual(m?.contentType, MetricsEndpoint.contentType)
        XCTAssertTrue(body(m).contains("cairn_hits_total 1"))
        let other = await endpoint.handle(request("/v1/status"))
        XCTAssertNil(other)
    }

    func testContactTrackerGoesStaleAndRecovers() async {
        let clock = FakeClock()
        let t = ContactTracker("the manager", staleAfter: .seconds(5), clock: { clock.now })
        var reason = await t.check()
        XCTAssertEqual(reason, "the manager has not answered yet")
        t.succeeded()
        reason = await t.check()
        XCTAssertNil(reason)
        clock.advance(.seconds(4))
        t.failed(TestError.refused)
        reason = await t.check()
        XCTAssertNil(reason, "a failure within the window keeps it ready")
        clock.advance(.seconds(2))
        reason = await t.check()
        XCTAssertEqual(reason, "the manager last answered 6.0 s ago (last error: refused)")
        XCTAssertEqual(t.age, .seconds(6))
        t.succeeded()
        reason = await t.check()
        XCTAssertNil(reason)
    }
}

enum TestError: Error { case refused }

final class Flag: @unchecked Sendable {
    private let lock = NSLock()
    private var v = false
    var value: Bool {
        get { lock.lock(); defer { lock.unlock() }; return v }
        set { lock.lock(); v = newValue; lock.unlock() }
    }
}

final class FakeClock: @unchecked Sendable {
    private let lock = NSLock()
    private var t = ContinuousClock.now
    var now: ContinuousClock.Instant { lock.lock(); defer { lock.unlock() }; return t }
    func advance(_ d: Duration) { lock.lock(); t += d; lock.unlock() }
}
