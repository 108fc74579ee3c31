// /metrics, /healthz and /readyz over HTTP, the same on every daemon. The manager mounts
// `handle` in its API; the storage node and the gateway run `serve` on their own port.
import CairnNet
import NIOCore

public struct MetricsEndpoint: Sendable {
    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"
    public let registry: MetricsRegistry
    public let health: Health

    public init(registry: MetricsRegistry = .shared, health: Health) {
        self.registry = registry; self.health = health
    }

    /// The answer for one of the three paths; nil for any other request.
    public func handle(_ req: HTTPRequest) async -> HTTPResponse? {
        guard req.method == "GET" else { return nil }
        switch req.path {
        case "/metrics":
            return HTTPResponse(status: 200, contentType: Self.contentType, body: await registry.scrape())
        case "/healthz":
            return Self.report(await health.failures(includeReadiness: false), okText: "ok\n")
        case "/readyz":
            return Self.report(await health.failures(includeReadiness: true), okText: "ready\n")
        default:
            return nil
        }
    }

    static func report(_ failures: [String], okText: String) -> HTTPResponse {
        failures.isEmpty ? .text(okText) : .text(failures.joined(separator: "\n") + "\n", status: 503)
    }

    /// Serves the three paths (404 for anything else) on host:port; returns the server
    /// and the bound port.
    public func serve(host: String, port: Int, group: EventLoopGroup) async throws -> (HTTPServer, Int) {
        let endpoint = self
        let server = HTTPServer(host: host, port: port, group: group) { req in
            await endpoint.handle(req) ?? .text("no such endpoint \(req.path); try /metrics, /healthz or /readyz\n", status: 404)
        }
        let bound = try await server.start()
        return (server, bound)
    }
}
