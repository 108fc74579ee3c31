// A MetaStore over the manager's metadata proxy (/v1/fs/{name}/meta/*): how a mount on
// any host reads and changes its filesystem's metadata. The manager confines every key
// to /fs/{name}/. With several managers the call moves on from one that stands by or
// cannot be reached, as ManagerClient does.
import CairnCore
import CairnMeta
import CairnNet
import Foundation
import NIOCore

public final class RemoteMetaStore: MetaStore, @unchecked Sendable {
    let endpoints: [String]
    let secret: String
    /// The proxy's path before the operation, e.g. /v1/fs/NAME/meta.
    var route: String
    let group: EventLoopGroup
    /// Kept-alive connections to the managers: a metadata call costs no TCP connect.
    let connections: HTTPConnectionPool
    /// How long a call keeps looking for a leading manager.
    let leaderSearch = Duration.seconds(30)

    public init(managers: String, secret: String, filesystem: String, group: EventLoopGroup) {
        endpoints = managers.split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        self.secret = secret; self.route = "/v1/fs/\(filesystem)/meta"; self.group = group
        connections = HTTPConnectionPool(group: group)
    }

    /// The CSI plugin's records under /csi/ (POST /v1/csi/meta/*).
    public convenience init(csiRecordsAt managers: String, secret: String, group: EventLoopGroup) {
        self.init(managers: managers, secret: secret, filesystem: "", group: group)
        self.route = "/v1/csi/meta"
    }

    public func get(_ key: String) async throws -> KeyValue? {
        let a = try await call("get", MetaWire.GetRequest(key: key), as: MetaWire.GetAnswer.self)
        return try a.kv?.decoded()
    }

    public func getMany(_ keys: [String]) async throws -> [KeyValue?] {
        try MetaValidation.getMany(keys)
        let a = try await call("getmany", MetaWire.GetManyRequest(keys: keys), as: MetaWire.GetManyAnswer.self)
        guard a.kvs.count == keys.count else {
            throw CairnError.protocolError("the manager answered \(a.kvs.count) values for \(keys.count) keys")
        }
        return try a.kvs.map { try $0?.decoded() }
    }

    public func range(prefix: String, after: String?, limit: Int) async throws -> RangePage {
        try await call("range", MetaWire.RangeRequest(prefix: prefix, after: after, limit: limit), as: MetaWire.RangeAnswer.self).decoded()
    }

    public func txn(compare: [TxnCompare], success: [TxnOp], failure: [TxnOp]) async throws -> TxnResult {
        let a = try await call("txn", MetaWire.TxnRequest(compare: compare, success: success, failure: failure), as: MetaWire.TxnAnswer.self)
        return TxnResult(succeeded: a.succeeded, revision: a.revision)
    }

    public func currentRevision() async throws -> Int64 {
        try await call("revision", MetaWire.GetRequest(key: ""), as: MetaWire.RevisionAnswer.self).revision
    }

    public func watch(prefix: String, afterRevision: Int64, timeout: Duration) async throws -> [WatchEvent] {
        let ms = timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000
        let events = try await call("watch", MetaWire.WatchRequest(prefix: prefix, afterRevision: afterRevision, timeoutMilliseconds: ms),
                                    as: [MetaWire.Event].self)
        return try events.map { try $0.decoded() }
    }

    public func close() async throws { connections.close() }

    func call<Q: Encodable, A: Decodable>(_ op: String, _ request: Q, as: A.Type) async throws -> A {
        let body = [UInt8](try JSONEncoder().encode(request))
        let path = "\(route)/\(op)"
        let clock = ContinuousClock()
        let deadline = clock.now + leaderSearch
        while true {
            var lastError = CairnError.unavailable("no manager answered")
            for base in endpoints {
                do {
                    return try await callOne(base, path, body, as: A.self)
                } catch let e as CairnError {
                    guard case .unavailable = e else { throw e }
                    lastError = e
                }
            }
            guard endpoints.count > 1, clock.now < deadline else { throw lastError }
            try await Task.sleep(for: .milliseconds(250))
        }
    }

    func callOne<A: Decodable>(_ base: String, _ path: String, _ body: [UInt8], as: A.Type) async throws -> A {
        let response: HTTPClient.Response
        do {
            response = try await connections.request(
                "POST", baseURL: base, path: path,
                headers: [("Authorization", "Bearer \(secret)"), ("Content-Type", "application/json")], body: body)
        } catch let e as CairnError {
            throw e
        } catch {
            throw CairnError.unavailable("the manager at \(base) cannot be reached: \(error)")
        }
        guard (200..<300).contains(response.status) else {
            if let e = try? JSONDecoder().decode(APIErrorBody.self, from: Data(response.body)) {
                throw CairnError.from(code: e.error, message: e.message, epoch: e.epoch ?? 0)
            }
            throw CairnError.unavailable("the manager at \(base) answered HTTP \(response.status)")
        }
        do {
            return try JSONDecoder().decode(A.self, from: Data(response.body))
        } catch {
            throw CairnError.protocolError("unexpected answer from the manager: \(error)")
        }
    }
}
