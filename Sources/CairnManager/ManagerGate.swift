// The HTTP port of a manager process that may or may not lead (several managers on one
// etcd, see docs/ARCHITECTURE.md "Highly available managers"). While it leads, requests
// go to its ManagerAPI; while it stands by, /healthz is ok, /metrics serves the process's
// metrics, /readyz is 503 (so a load balancer or Kubernetes Service sends nothing here)
// and every /v1 call is refused with
// 503 `unavailable` naming the leader, which ManagerClient takes as "try the next manager".
import CairnCore
import CairnMetrics
import CairnNet

public final class ManagerGate: @unchecked Sendable {
    private let api = Locked<ManagerAPI?>(nil)
    private let leader = Locked<String?>(nil)

    public init() {}

    public func lead(_ api: ManagerAPI) { self.api.withLock { $0 = api } }

    public func standBy(leader address: String?) {
        api.withLock { $0 = nil }
        leader.withLock { $0 = address }
    }

    public var isLeading: Bool { api.snapshot != nil }

    public func handle(_ req: HTTPRequest) async -> HTTPResponse {
        if let api = api.snapshot { return await api.handle(req) }
        let who = leader.snapshot.map { "the leader is at \($0)" } ?? "no leader is elected yet"
        switch (req.method, req.path) {
        case ("GET", "/healthz"): return .text("ok\n")
        case ("GET", "/readyz"): return .text("standing by: \(who)\n", status: 503)
        case ("GET", "/metrics"):
            return HTTPResponse(status: 200, contentType: MetricsEndpoint.contentType, body: await MetricsRegistry.shared.scrape())
        default:
            return ManagerAPI.error(.unavailable("this manager is standing by (\(who)); ask the leader"), status: 503)
        }
    }
}
