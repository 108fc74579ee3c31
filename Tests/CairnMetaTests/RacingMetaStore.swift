import CairnMeta

/// A fault wrapper: before every transaction another writer bumps each key the
/// transaction compares, so every compare on a modRevision read earlier fails.
struct RacingMetaStore: MetaStore {
    let base: any MetaStore

    func txn(compare: [TxnCompare], success: [TxnOp], failure: [TxnOp]) async throws -> TxnResult {
        for case .modRevision(let key, _) in compare {
            let current = try await base.getJSON(key, as: Int.self)?.0 ?? 0
            _ = try await base.txn(compare: [], success: [try base.putJSON(key, current + 1)], failure: [])
        }
        return try await base.txn(compare: compare, success: success, failure: failure)
    }

    func get(_ key: String) async throws -> KeyValue? { try await base.get(key) }
    func range(prefix: String, after: String?, limit: Int) async throws -> RangePage {
        try await base.range(prefix: prefix, after: after, limit: limit)
    }
    func currentRevision() async throws -> Int64 { try await base.currentRevision() }
    func watch(prefix: String, afterRevision: Int64, timeout: Duration) async throws -> [WatchEvent] {
        try await base.watch(prefix: prefix, afterRevision: afterRevision, timeout: timeout)
    }
    func close() async throws { try await base.close() }
}
