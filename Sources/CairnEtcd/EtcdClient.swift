// A client of etcd's v3 API through its JSON gateway, over the cluster's members.
//
// Why the JSON gateway and not gRPC: every etcd 3.4+ member serves it on the client port,
// it needs nothing but HTTP/1.1 (which CairnNet already has), and it keeps the gRPC
// HTTP/2 stack (8 to 15 minutes of extra clean build, see TOOLCHAIN.md) out of a binary
// that otherwise does not need it. The cost is JSON and a connection per call, which is
// small next to etcd's own fsync per write.
//
// Member failover: calls go to the member that answered last; when a member cannot be
// reached (nothing was sent) or answers "no leader" (nothing was applied), the call moves
// to the next member and, after a full round, waits a little and tries again until
// `retryWindow` passes. A call whose connection breaks after the request was sent is not
// repeated (a transaction might have been applied): it fails with `unavailable`.
import CairnCore
import CairnNet
import Foundation
import NIOCore

public final class EtcdClient: @unchecked Sendable {
    public var endpoints: [String] { members.endpoints }
    let group: EventLoopGroup
    private let members: EndpointRotation
    public var callTimeout: TimeAmount = .seconds(10)
    public var retryWindow: Duration = .seconds(15)

    /// `endpoints`: `http://host:port` of each member.
    public init(endpoints: [String], group: EventLoopGroup) throws {
        guard !endpoints.isEmpty else { throw CairnError.invalidArgument("give at least one etcd endpoint") }
        self.members = EndpointRotation(endpoints)
        self.group = group
    }

    /// Parses `etcd://host1:2379,host2:2379` (also with `http://` per member) into member URLs.
    public static func parseEndpoints(_ spec: String) throws -> [String] {
        guard spec.hasPrefix("etcd://") else {
            throw CairnError.invalidArgument("etcd address '\(spec)' must look like etcd://host1:2379,host2:2379")
        }
        let list = spec.dropFirst("etcd://".count).split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        guard !list.isEmpty else { throw CairnError.invalidArgument("etcd address '\(spec)' names no member") }
        return try list.map { member in
            var m = member.hasPrefix("http://") ? String(member.dropFirst("http://".count)) : member
            while m.hasSuffix("/") { m.removeLast() }
            guard let colon = m.lastIndex(of: ":"), let port = Int(m[m.index(after: colon)...]), port > 0, port < 65536,
                  colon != m.startIndex else {
                throw CairnError.invalidArgument("etcd member '\(member)' is not host:port")
            }
            return "http://" + m
        }
    }

    /// One unary call (`path` like `/v3/kv/range`).
    func call<Request: Encodable, Answer: Decodable>(_ path: String, _ request: Request, as: Answer.Type) async throws -> Answer {
        let body = [UInt8](try JSONEncoder().encode(request))
        return try await members.call(window: retryWindow, pause: .milliseconds(200),
                                      noAnswer: .unavailable("no etcd member answered"),
                                      moveOn: { Self.isConnectFailure($0) || Self.isNotApplied($0) }) { member in
            let response = try await HTTPClient.request("POST", baseURL: member, path: path,
                                                        headers: [("Content-Type", "application/json")],
                                                        body: body, group: group, timeout: callTimeout,
                                                        peer: "etcd at \(member)")
            guard (200..<300).contains(response.status) else {
                throw Self.error(status: response.status, body: response.body, member: member)
            }
            do {
                return try JSONDecoder().decode(Answer.self, from: Data(response.body))
            } catch {
                throw CairnError.protocolError("unexpected answer from etcd at \(member): \(error)")
            }
        }
    }

    /// Opens a watch stream and feeds its lines (one JSON object each) to `onLine` until it
    /// returns true or `timeout` passes. Returns whether `onLine` was satisfied. One round
    /// over the members: a watch that fails is simply watched again by its caller.
    func watchStream(_ request: EtcdJSON.WatchCreate, timeout: Duration,
                     onLine: @escaping @Sendable ([UInt8]) -> Bool) async throws -> Bool {
        let body = [UInt8](try JSONEncoder().encode(request))
        let nanos = max(Int64(1), timeout.components.seconds * 1_000_000_000 + timeout.components.attoseconds / 1_000_000_000)
        return try await members.call(window: .zero, pause: .zero, noAnswer: .unavailable("no etcd member answered"),
                                      moveOn: { if case .unavailable = $0 { return true } else { return false } }) { member in
            let splitter = LineSplitter(onLine: onLine)
            let end = try await HTTPClient.stream("POST", baseURL: member, path: "/v3/watch",
                                                  headers: [("Content-Type", "application/json")], body: body,
                                                  group: group, timeout: .nanoseconds(nanos), peer: "etcd at \(member)") {
                splitter.feed($0)
            }
            guard end.status == 0 || (200..<300).contains(end.status) else {
                throw CairnError.unavailable("etcd at \(member) refused the watch with HTTP \(end.status)")
            }
            return end.reason == .enough
        }
    }

    /// Only a connection that never opened is safe to repeat elsewhere (nothing was sent).
    static func isConnectFailure(_ e: CairnError) -> Bool {
        guard case .unavailable(let m) = e else { return false }
        return m.hasPrefix("cannot reach")
    }

    /// The CairnError for an etcd error answer (gRPC status codes in `code`).
    static func error(status: Int, body: [UInt8], member: String) -> CairnError {
        let decoded = try? JSONDecoder().decode(EtcdJSON.ErrorBody.self, from: Data(body))
        let message = decoded?.message ?? decoded?.error ?? String(decoding: body.prefix(200), as: UTF8.self)
        let text = "etcd at \(member): \(message)"
        switch decoded?.code {
        case 3: return .invalidArgument(text)          // INVALID_ARGUMENT (too many ops, too large, duplicate key)
        case 5: return .notFound(text)                 // NOT_FOUND (lease)
        case 11: return .conflict(text)                // OUT_OF_RANGE (compacted revision)
        case 16: return .unauthenticated(text)
        case 4, 14: return .unavailable(text)          // DEADLINE_EXCEEDED, UNAVAILABLE
        default: return .unavailable("\(text) (HTTP \(status))")
        }
    }

    /// Errors after which the request certainly changed nothing, so another member may take it.
    static func isNotApplied(_ e: CairnError) -> Bool {
        guard case .unavailable(let m) = e else { return false }
        return m.contains("no leader") || m.contains("not capable") || m.contains("HTTP 503")
    }
}

/// Splits a streamed body into lines and hands each non-empty one on. Called on one
/// event loop.
final class LineSplitter: @unchecked Sendable {
    private var pending: [UInt8] = []
    private let onLine: @Sendable ([UInt8]) -> Bool

    init(onLine: @escaping @Sendable ([UInt8]) -> Bool) { self.onLine = onLine }

    func feed(_ bytes: [UInt8]) -> Bool {
        pending += bytes
        while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
            let line = Array(pending[..<newline])
            pending.removeSubrange(...newline)
            if line.allSatisfy({ $0 == 0x20 || $0 == 0x0d }) { continue }
            if onLine(line) { return true }
        }
        // grpc-gateway may end the last object without a newline; try it whole.
        if !pending.isEmpty, pending.last == UInt8(ascii: "}"),
           (try? JSONSerialization.jsonObject(with: Data(pending))) != nil {
            let line = pending
            pending = []
            return onLine(line)
        }
        return false
    }
}
