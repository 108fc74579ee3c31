// The transaction semantics, written once: each backend exposes its state through
// `TxnState` and runs every transaction through `TxnEngine.run`, so the memory store and
// the SQLite store cannot drift apart.
import CairnCore

/// The state a transaction reads and writes. The SQLite backend implements it on an open
/// write transaction; the memory backend on its sorted arrays.
protocol TxnState {
    func read(_ key: String) throws -> KeyValue?
    /// Keys that start with the prefix (byte-wise).
    func keys(withPrefix prefix: String) throws -> [String]
    mutating func write(_ kv: KeyValue) throws
    mutating func erase(_ key: String) throws
    /// Stores the revision's changes for watchers, moves the store to `revision` and drops
    /// the changes of revisions up to `compactedRevision`.
    mutating func commit(revision: Int64, changes: [WatchEvent], compactedRevision: Int64) throws
}

enum TxnEngine {
    /// Runs an already validated transaction at `currentRevision`.
    static func run<S: TxnState>(
        compare: [TxnCompare], success: [TxnOp], failure: [TxnOp],
        on state: inout S, currentRevision: Int64, changelogRevisionsKept: Int64
    ) throws -> TxnResult {
        precondition(currentRevision >= 0 && changelogRevisionsKept >= 1)
        let succeeded = try compare.allSatisfy { try holds($0, in: state) }
        let revision = currentRevision + 1
        var changes: [WatchEvent] = []
        for op in succeeded ? success : failure {
            try apply(op, at: revision, on: &state, changes: &changes)
        }
        guard !changes.isEmpty else { return TxnResult(succeeded: succeeded, revision: currentRevision) }
        try state.commit(revision: revision, changes: changes,
                         compactedRevision: max(0, revision - changelogRevisionsKept))
        return TxnResult(succeeded: succeeded, revision: revision)
    }

    private static func holds<S: TxnState>(_ compare: TxnCompare, in state: S) throws -> Bool {
        switch compare {
        case .modRevision(let key, let expected):
            return (try state.read(key)?.modRevision ?? 0) == expected
        case .valueEquals(let key, let expected):
            guard let kv = try state.read(key) else { return false }
            return kv.value == expected
        }
    }

    private static func apply<S: TxnState>(
        _ op: TxnOp, at revision: Int64, on state: inout S, changes: inout [WatchEvent]
    ) throws {
        switch op {
        case .put(let key, let value):
            let old = try state.read(key)
            try state.write(KeyValue(key: key, value: value, createRevision: old?.createRevision ?? revision,
                                     modRevision: revision, version: (old?.version ?? 0) + 1))
            changes.append(WatchEvent(kind: .put, key: key, value: value, modRevision: revision))
        case .delete(let key):
            guard try state.read(key) != nil else { return }
            try state.erase(key)
            changes.append(WatchEvent(kind: .delete, key: key, value: nil, modRevision: revision))
        case .deletePrefix(let prefix):
            for key in try state.keys(withPrefix: prefix) {
                try state.erase(key)
                changes.append(WatchEvent(kind: .delete, key: key, value: nil, modRevision: revision))
            }
        }
    }
}

/// Watch by polling, shared by the embedded backends. Polling costs one small read per
/// interval per watcher; acceptable for an embedded store with a handful of watchers
/// (etcd pushes instead).
enum WatchPolling {
    /// Calls `fetch` until it returns events or the summed sleeps reach `timeout`. Time is
    /// counted from the injected sleeps, so a simulated sleep replays exactly.
    static func poll(
        timeout: Duration, interval: Duration, sleep: WatchSleep.Function,
        fetch: () async throws -> [WatchEvent]
    ) async throws -> [WatchEvent] {
        precondition(interval > .zero)
        var waited = Duration.zero
        while true {
            let events = try await fetch()
            if !events.isEmpty || waited >= timeout { return events }
            let step = min(interval, timeout - waited)
            try await sleep(step)
            waited += step
        }
    }

    /// Cuts events read in revision order (at most `watchEventsMax + 1` of them) at a
    /// revision boundary. When the first revision alone is larger, `wholeRevision` reads
    /// all of it: a revision is never split, so a watcher may continue after the last one.
    static func cut(_ events: [WatchEvent], wholeRevision: (Int64) throws -> [WatchEvent]) rethrows -> [WatchEvent] {
        let max = MetaLimits.watchEventsMax
        guard events.count > max else { return events }
        let firstExcluded = events[max].modRevision
        let kept = events.prefix { $0.modRevision < firstExcluded }
        if !kept.isEmpty { return Array(kept) }
        return try wholeRevision(firstExcluded)
    }

    static func compacted(afterRevision: Int64, compactedRevision: Int64) -> CairnError {
        .conflict("watch after revision \(afterRevision): changes up to revision \(compactedRevision) were compacted; re-read with range and watch from its revision")
    }
}
