// The MetaStore on etcd v3 (`cairn manager --meta etcd://...`), for managers that must
// survive the loss of a machine. Every key lives under `namespace` (default "/cairn"), so
// one etcd cluster can hold several Cairn clusters or share Kubernetes' etcd.
//
// How the interface maps onto etcd (see MetaStore.swift for the contract):
// - revisions are etcd's own, cluster-wide: they grow by one per changing transaction of
//   any etcd client, so this store's revision starts where etcd is, not at 0;
// - `txn` is one etcd Txn: compares on MOD (0 = absent) or VALUE, puts and delete ranges;
// - `range` is one Range read at one revision, `after` expressed as the key after it;
// - `watch` is one etcd watch stream from `afterRevision + 1`, closed after the first
//   answer that carries events or after the timeout. etcd delivers history from its
//   watcher sync (every 100 ms), so a watch over past revisions waits up to
//   `historyWait` for it even with a zero timeout. A compacted start revision is
//   `conflict`, as the contract says.
// - Leadership fencing: when `fence` is set (a key and the mod revision it must still
//   have), every transaction runs inside an outer etcd Txn that compares it, so a manager
//   that lost its leadership cannot change anything; such a write throws `unavailable`
//   ("not the leader") and applies neither branch.
// - etcd's own limits apply besides MetaLimits: a request up to 1.5 MiB (--max-request-bytes),
//   128 ops per transaction (--max-txn-ops), and the database quota (2 GiB by default).
import CairnCore
import CairnMeta
import Foundation
import NIOCore

public final class EtcdMetaStore: MetaStore, @unchecked Sendable {
    public let client: EtcdClient
    public let namespace: String
    /// Longest wait for history on a watch over past revisions (see the header).
    public var historyWait: Duration = .seconds(1)
    private let fenceState = Locked<(key: String, modRevision: Int64)?>(nil)
    private let closed = Locked(false)

    public init(client: EtcdClient, namespace: String = "/cairn") throws {
        if !namespace.isEmpty { try MetaValidation.key(namespace) }
        self.client = client
        self.namespace = namespace
    }

    /// Fences every later transaction on `key` still having `modRevision` (nil: unfenced).
    /// `key` is a raw etcd key, outside the namespace rules.
    public func setFence(key: String, modRevision: Int64) { fenceState.withLock { $0 = (key, modRevision) } }
    public func clearFence() { fenceState.withLock { $0 = nil } }

    private func etcdKey(_ key: String) -> String { EtcdJSON.b64(namespace + key) }

    private func storeKey(_ b64: String?) -> String {
        let full = String(decoding: EtcdJSON.bytes(b64), as: UTF8.self)
        return String(full.dropFirst(namespace.count))
    }

    private func prefixRange(_ prefix: String) -> (key: String, end: String) {
        let full = Array((namespace + prefix).utf8)
        return (EtcdJSON.b64(full), EtcdJSON.b64(EtcdJSON.prefixEnd(full)))
    }

    private func checkOpen() throws {
        if closed.snapshot { throw CairnError.io("the etcd metadata store is closed") }
    }

    private func keyValue(_ kv: EtcdJSON.KeyValue) -> KeyValue {
        KeyValue(key: storeKey(kv.key), value: EtcdJSON.bytes(kv.value),
                 createRevision: EtcdJSON.int(kv.create_revision), modRevision: EtcdJSON.int(kv.mod_revision),
                 version: EtcdJSON.int(kv.version))
    }

    public func get(_ key: String) async throws -> KeyValue? {
        try MetaValidation.key(key)
        try checkOpen()
        let answer = try await client.call("/v3/kv/range", EtcdJSON.RangeRequest(key: etcdKey(key)),
                                           as: EtcdJSON.RangeResponse.self)
        return answer.kvs?.first.map(keyValue)
    }

    public func range(prefix: String, after: String?, limit: Int) async throws -> RangePage {
        try MetaValidation.range(prefix: prefix, after: after, limit: limit)
        try checkOpen()
        let (start, end) = prefixRange(prefix)
        var from = start
        if let after {
            // The smallest key after `after`; earlier than the prefix start means the start.
            let next = Array((namespace + after).utf8) + [0]
            if !next.lexicographicallyPrecedes(EtcdJSON.bytes(start)) { from = EtcdJSON.b64(next) }
        }
        let answer = try await client.call("/v3/kv/range",
                                           EtcdJSON.RangeRequest(key: from, range_end: end, limit: String(limit)),
                                           as: EtcdJSON.RangeResponse.self)
        return RangePage(items: (answer.kvs ?? []).map(keyValue), more: answer.more ?? false,
                         revision: EtcdJSON.int(answer.header?.revision))
    }

    public func txn(compare: [TxnCompare], success: [TxnOp], failure: [TxnOp]) async throws -> TxnResult {
        try MetaValidation.txn(compare: compare, success: success, failure: failure)
        try checkOpen()
        let inner = EtcdJSON.TxnRequest(compare: compare.map(etcdCompare), success: success.map(etcdOp),
                                        failure: failure.map(etcdOp))
        guard let fence = fenceState.snapshot else {
            let answer = try await client.call("/v3/kv/txn", inner, as: EtcdJSON.TxnResponse.self)
            return TxnResult(succeeded: answer.succeeded ?? false, revision: EtcdJSON.int(answer.header?.revision))
        }
        let outer = EtcdJSON.TxnRequest(
            compare: [EtcdJSON.Compare(target: "MOD", key: EtcdJSON.b64(fence.key), mod_revision: String(fence.modRevision))],
            success: [EtcdJSON.RequestOp(txn: inner)], failure: [])
        let answer = try await client.call("/v3/kv/txn", outer, as: EtcdJSON.TxnResponse.self)
        guard answer.succeeded == true else {
            throw CairnError.unavailable("this manager is not the leader any more; its write was refused")
        }
        let nested = answer.responses?.first?.response_txn
        return TxnResult(succeeded: nested?.succeeded ?? false, revision: EtcdJSON.int(answer.header?.revision))
    }

    private func etcdCompare(_ c: TxnCompare) -> EtcdJSON.Compare {
        switch c {
        case .modRevision(let key, let rev):
            return EtcdJSON.Compare(target: "MOD", key: etcdKey(key), mod_revision: String(rev))
        case .valueEquals(let key, let value):
            return EtcdJSON.Compare(target: "VALUE", key: etcdKey(key), value: EtcdJSON.b64(value))
        }
    }

    private func etcdOp(_ op: TxnOp) -> EtcdJSON.RequestOp {
        switch op {
        case .put(let key, let value):
            return EtcdJSON.RequestOp(put: EtcdJSON.PutRequest(key: etcdKey(key), value: EtcdJSON.b64(value)))
        case .delete(let key):
            return EtcdJSON.RequestOp(delete: EtcdJSON.DeleteRangeRequest(key: etcdKey(key)))
        case .deletePrefix(let prefix):
            let (start, end) = prefixRange(prefix)
            return EtcdJSON.RequestOp(delete: EtcdJSON.DeleteRangeRequest(key: start, range_end: end))
        }
    }

    public func currentRevision() async throws -> Int64 {
        try checkOpen()
        let answer = try await client.call("/v3/kv/range",
                                           EtcdJSON.RangeRequest(key: etcdKey("/"), count_only: true),
                                           as: EtcdJSON.RangeResponse.self)
        return EtcdJSON.int(answer.header?.revision)
    }

    public func watch(prefix: String, afterRevision: Int64, timeout: Duration) async throws -> [WatchEvent] {
        try MetaValidation.watch(prefix: prefix, afterRevision: afterRevision, timeout: timeout)
        try checkOpen()
        let (start, end) = prefixRange(prefix)
        let state = WatchCollector(afterRevision: afterRevision, namespace: namespace)
        let request = EtcdJSON.WatchCreate(create_request: .init(key: start, range_end: end,
                                                                  start_revision: String(afterRevision + 1)))
        // History may exist when etcd is past the revision: give its sync time to deliver it.
        let current = try await currentRevision()
        let wait = current > afterRevision ? max(timeout, historyWait) : timeout
        _ = try await client.watchStream(request, timeout: max(wait, .milliseconds(1))) { state.take($0) }
        if let error = state.error { throw error }
        return Self.wholeRevisions(state.events, max: MetaLimits.watchEventsMax)
    }

    /// At most about `max` events without splitting a revision (a larger first revision whole).
    static func wholeRevisions(_ events: [WatchEvent], max: Int) -> [WatchEvent] {
        guard events.count > max else { return events }
        var cut = 0
        var i = 0
        while i < events.count {
            var j = i
            while j < events.count && events[j].modRevision == events[i].modRevision { j += 1 }
            if cut > 0 && j > max { break }
            cut = j
            i = j
        }
        return Array(events[..<cut])
    }

    /// Compacts etcd's history up to `revision` (watches from before it then get `conflict`).
    public func compact(revision: Int64) async throws {
        _ = try await client.call("/v3/kv/compaction", EtcdJSON.CompactionRequest(revision: String(revision)),
                                  as: EtcdJSON.RangeResponse.self)
    }

    public func close() async throws { closed.withLock { $0 = true } }
}

/// Gathers the events of one watch stream. Fed on an event loop, read after the stream ends.
final class WatchCollector: @unchecked Sendable {
    private let lock = NSLock()
    private var _events: [WatchEvent] = []
    private var _error: CairnError?
    let afterRevision: Int64
    let namespace: String

    init(afterRevision: Int64, namespace: String) { self.afterRevision = afterRevision; self.namespace = namespace }

    var events: [WatchEvent] { lock.withLock { _events } }
    var error: CairnError? { lock.withLock { _error } }

    /// Takes one line; true when the watch has its answer (events or an error).
    func take(_ line: [UInt8]) -> Bool {
        lock.withLock {
            guard let parsed = try? JSONDecoder().decode(EtcdJSON.StreamLine<EtcdJSON.WatchResponse>.self, from: Data(line)) else {
                _error = .protocolError("unexpected watch answer from etcd: \(String(decoding: line.prefix(200), as: UTF8.self))")
                return true
            }
            if let e = parsed.error {
                _error = .unavailable("etcd refused the watch: \(e.message ?? e.error ?? "unknown error")")
                return true
            }
            guard let r = parsed.result else { return false }
            if EtcdJSON.int(r.compact_revision) > 0 {
                _error = .conflict("the changes after revision \(afterRevision) were compacted away "
                                   + "(etcd kept from \(EtcdJSON.int(r.compact_revision))); re-read and watch again")
                return true
            }
            if r.canceled == true {
                _error = .unavailable("etcd cancelled the watch: \(r.cancel_reason ?? "no reason given")")
                return true
            }
            let events = (r.events ?? []).map { e -> WatchEvent in
                let full = String(decoding: EtcdJSON.bytes(e.kv?.key), as: UTF8.self)
                let key = String(full.dropFirst(namespace.count))
                let rev = EtcdJSON.int(e.kv?.mod_revision)
                if e.type == "DELETE" { return WatchEvent(kind: .delete, key: key, value: nil, modRevision: rev) }
                return WatchEvent(kind: .put, key: key, value: EtcdJSON.bytes(e.kv?.value), modRevision: rev)
            }
            _events += events
            return !_events.isEmpty
        }
    }
}
