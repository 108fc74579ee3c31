// The metadata store in memory, for unit tests and the simulation. Same semantics as
// `SQLiteMetaStore` (both run `TxnEngine`); nothing survives the process.
import CairnCore

/// An actor: each call runs alone, so a transaction is atomic without further locking.
/// Inserts into the sorted key array cost O(n); fine for test-sized data.
public actor MemoryMetaStore: MetaStore {
    private var state = MemoryState()
    private var closed = false
    private let changelogRevisionsKept: Int64
    private let sleep: WatchSleep.Function

    /// `sleep` is what a waiting watch calls between polls; a simulation passes its own clock's.
    public init(changelogRevisionsKept: Int64 = MetaLimits.changelogRevisionsKept,
                sleep: @escaping WatchSleep.Function = WatchSleep.task) {
        precondition(changelogRevisionsKept >= 1)
        self.changelogRevisionsKept = changelogRevisionsKept
        self.sleep = sleep
    }

    public func get(_ key: String) throws -> KeyValue? {
        try checkOpen()
        try MetaValidation.key(key)
        return state.read(key)
    }

    public func range(prefix: String, after: String?, limit: Int) throws -> RangePage {
        try checkOpen()
        try MetaValidation.range(prefix: prefix, after: after, limit: limit)
        var index = state.firstIndex(notBelow: prefix)
        if let after, !after.utf8Precedes(prefix) {
            index = max(index, state.firstIndex(above: after))
        }
        var items: [KeyValue] = []
        while index < state.entries.count, state.entries[index].key.utf8HasPrefix(prefix) {
            if items.count == limit { return RangePage(items: items, more: true, revision: state.revision) }
            items.append(state.entries[index])
            index += 1
        }
        return RangePage(items: items, more: false, revision: state.revision)
    }

    public func txn(compare: [TxnCompare], success: [TxnOp], failure: [TxnOp]) throws -> TxnResult {
        try checkOpen()
        try MetaValidation.txn(compare: compare, success: success, failure: failure)
        // MemoryState's methods never throw, so a validated transaction cannot stop halfway.
        return try TxnEngine.run(compare: compare, success: success, failure: failure, on: &state,
                                 currentRevision: state.revision, changelogRevisionsKept: changelogRevisionsKept)
    }

    public func currentRevision() throws -> Int64 {
        try checkOpen()
        return state.revision
    }

    public func watch(prefix: String, afterRevision: Int64, timeout: Duration) async throws -> [WatchEvent] {
        try checkOpen()
        try MetaValidation.watch(prefix: prefix, afterRevision: afterRevision, timeout: timeout)
        return try await WatchPolling.poll(timeout: timeout, interval: MetaLimits.watchPollInterval, sleep: sleep) {
            try self.changes(prefix: prefix, afterRevision: afterRevision)
        }
    }

    public func close() {
        closed = true
    }

    private func changes(prefix: String, afterRevision: Int64) throws -> [WatchEvent] {
        try checkOpen()
        guard afterRevision >= state.compactedRevision else {
            throw WatchPolling.compacted(afterRevision: afterRevision, compactedRevision: state.compactedRevision)
        }
        let matching = state.changelog.lazy.filter { $0.modRevision > afterRevision && $0.key.utf8HasPrefix(prefix) }
        return WatchPolling.cut(Array(matching.prefix(MetaLimits.watchEventsMax + 1))) { revision in
            matching.filter { $0.modRevision == revision }
        }
    }

    private func checkOpen() throws {
        guard !closed else { throw CairnError.unavailable("metadata store is closed") }
    }
}

/// Keys sorted by UTF-8 bytes, plus the changelog in revision order.
struct MemoryState: TxnState {
    var entries: [KeyValue] = []
    var changelog: [WatchEvent] = []
    var revision: Int64 = 0
    var compactedRevision: Int64 = 0

    /// Index of the first key that is not below `key` (byte-wise).
    func firstIndex(notBelow key: String) -> Int {
        var low = 0, high = entries.count
        while low < high {
            let mid = (low + high) / 2
            if entries[mid].key.utf8Precedes(key) { low = mid + 1 } else { high = mid }
        }
        return low
    }

    func firstIndex(above key: String) -> Int {
        let index = firstIndex(notBelow: key)
        return index < entries.count && entries[index].key.utf8Equals(key) ? index + 1 : index
    }

    func read(_ key: String) -> KeyValue? {
        let index = firstIndex(notBelow: key)
        return index < entries.count && entries[index].key.utf8Equals(key) ? entries[index] : nil
    }

    func keys(withPrefix prefix: String) -> [String] {
        entries[firstIndex(notBelow: prefix)...].prefix { $0.key.utf8HasPrefix(prefix) }.map(\.key)
    }

    mutating func write(_ kv: KeyValue) {
        let index = firstIndex(notBelow: kv.key)
        if index < entries.count && entries[index].key.utf8Equals(kv.key) {
            entries[index] = kv
        } else {
            entries.insert(kv, at: index)
        }
    }

    mutating func erase(_ key: String) {
        let index = firstIndex(notBelow: key)
        precondition(index < entries.count && entries[index].key.utf8Equals(key), "erase of a missing key")
        entries.remove(at: index)
    }

    mutating func commit(revision: Int64, changes: [WatchEvent], compactedRevision: Int64) {
        precondition(revision == self.revision + 1 && changes.allSatisfy { $0.modRevision == revision })
        changelog.append(contentsOf: changes)
        let dropped = changelog.prefix { $0.modRevision <= compactedRevision }.count
        changelog.removeFirst(dropped)
        self.revision = revision
        self.compactedRevision = max(self.compactedRevision, compactedRevision)
    }
}
