// The embedded metadata backend: one SQLite database in WAL mode through GRDB.
//
// Durability: `synchronous=FULL`, so every committed transaction fsyncs the WAL before
// `txn` returns. With NORMAL a power loss may roll back the last commits; the manager
// acts on a commit at once (fencing epochs, replica sets), so metadata must never go back
// in time after a crash. The cost is one fsync per write transaction.
//
// Schema: `kv` holds the keys, `meta` the single row with the store revision and the
// compacted revision, `changelog` the changes of the last `changelogRevisionsKept`
// revisions for watchers. All three change in the same SQLite transaction.
import CairnCore
import Foundation
import GRDB

public final class SQLiteMetaStore: MetaStore {
    private let pool: DatabasePool
    private let changelogRevisionsKept: Int64
    private let sleep: WatchSleep.Function

    /// Opens (creating if needed, with its parent directories) the database at `path`.
    public init(path: String,
                changelogRevisionsKept: Int64 = MetaLimits.changelogRevisionsKept,
                sleep: @escaping WatchSleep.Function = WatchSleep.task) throws {
        precondition(changelogRevisionsKept >= 1)
        self.changelogRevisionsKept = changelogRevisionsKept
        self.sleep = sleep
        let directory = URL(fileURLWithPath: path).deletingLastPathComponent()
        do {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            var configuration = Configuration()
            configuration.prepareDatabase { db in try db.execute(sql: "PRAGMA synchronous = FULL") }
            pool = try DatabasePool(path: path, configuration: configuration)
            try Self.migrator.migrate(pool)
        } catch {
            throw Self.mapped(error, doing: "open metadata database \(path)")
        }
    }

    private static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.execute(sql: """
                CREATE TABLE kv (
                    key TEXT PRIMARY KEY NOT NULL, value BLOB NOT NULL,
                    create_rev INTEGER NOT NULL, mod_rev INTEGER NOT NULL, version INTEGER NOT NULL
                ) WITHOUT ROWID;
                CREATE TABLE meta (
                    id INTEGER PRIMARY KEY CHECK (id = 1),
                    revision INTEGER NOT NULL, compacted_rev INTEGER NOT NULL
                );
                INSERT INTO meta (id, revision, compacted_rev) VALUES (1, 0, 0);
                CREATE TABLE changelog (
                    rev INTEGER NOT NULL, idx INTEGER NOT NULL, key TEXT NOT NULL,
                    kind INTEGER NOT NULL, value BLOB,
                    PRIMARY KEY (rev, idx)
                ) WITHOUT ROWID;
                """)
        }
        return migrator
    }

    public func get(_ key: String) async throws -> KeyValue? {
        try MetaValidation.key(key)
        return try read("get \(key)") { db in try SQLiteTxnState(db: db).read(key) }
    }

    /// One read transaction: every key at the same revision.
    public func getMany(_ keys: [String]) async throws -> [KeyValue?] {
        try MetaValidation.getMany(keys)
        return try read("get \(keys.count) keys") { db in
            let state = SQLiteTxnState(db: db)
            return try keys.map { try state.read($0) }
        }
    }

    public func range(prefix: String, after: String?, limit: Int) async throws -> RangePage {
        try MetaValidation.range(prefix: prefix, after: after, limit: limit)
        return try read("range \(prefix)") { db in
            var sql = "SELECT key, value, create_rev, mod_rev, version FROM kv WHERE key >= ?"
            var arguments: StatementArguments = [prefix]
            if let upper = prefix.prefixUpperBound { sql += " AND key < ?"; arguments += [upper] }
            if let after { sql += " AND key > ?"; arguments += [after] }
            sql += " ORDER BY key LIMIT ?"
            arguments += [limit + 1]
            let items = try Row.fetchAll(db, sql: sql, arguments: arguments).map(KeyValue.init(row:))
            return RangePage(items: Array(items.prefix(limit)), more: items.count > limit,
                             revision: try SQLiteTxnState(db: db).revision())
        }
    }

    public func txn(compare: [TxnCompare], success: [TxnOp], failure: [TxnOp]) async throws -> TxnResult {
        try MetaValidation.txn(compare: compare, success: success, failure: failure)
        let kept = changelogRevisionsKept
        do {
            // One SQLite write transaction: compares, ops and the revision commit or roll back together.
            return try await pool.write { db in
                var state = SQLiteTxnState(db: db)
                return try TxnEngine.run(compare: compare, success: success, failure: failure, on: &state,
                                         currentRevision: try state.revision(), changelogRevisionsKept: kept)
            }
        } catch {
            throw Self.mapped(error, doing: "transaction")
        }
    }

    public func currentRevision() async throws -> Int64 {
        try read("read revision") { db in try SQLiteTxnState(db: db).revision() }
    }

    /// Polls the changelog every `MetaLimits.watchPollInterval` (see `WatchPolling`).
    public func watch(prefix: String, afterRevision: Int64, timeout: Duration) async throws -> [WatchEvent] {
        try MetaValidation.watch(prefix: prefix, afterRevision: afterRevision, timeout: timeout)
        return try await WatchPolling.poll(timeout: timeout, interval: MetaLimits.watchPollInterval, sleep: sleep) {
            try self.read("watch \(prefix)") { db in
                try SQLiteTxnState(db: db).changes(prefix: prefix, afterRevision: afterRevision)
            }
        }
    }

    /// Closes the database; later calls fail with `CairnError.io`.
    public func close() async throws {
        do { try pool.close() } catch { throw Self.mapped(error, doing: "close metadata database") }
    }

    /// Reads run on the calling thread (GRDB's blocking `read`): a read takes
    /// microseconds in WAL mode and never waits for a writer, so handing it to GRDB's
    /// queue and back (the async `read`) cost more than the read itself — about a third
    /// of a metadata proxy call. It waits only for a free reader connection (GRDB keeps 5).
    private func read<T: Sendable>(_ what: String, _ body: @escaping @Sendable (Database) throws -> T) throws -> T {
        do {
            return try pool.read(body)
        } catch {
            throw Self.mapped(error, doing: what)
        }
    }

    /// Our own errors pass through; SQLite's become `CairnError.io`.
    private static func mapped(_ error: Error, doing what: String) -> Error {
        if error is CairnError || error is CancellationError { return error }
        return CairnError.io("metadata store: \(what): \(error)")
    }
}

/// `TxnState` over an open GRDB connection (a write transaction when used by `txn`).
struct SQLiteTxnState: TxnState {
    let db: Database

    func revision() throws -> Int64 {
        guard let revision = try Int64.fetchOne(db, sql: "SELECT revision FROM meta WHERE id = 1") else {
            throw CairnError.io("metadata store: the meta row is missing")
        }
        return revision
    }

    func read(_ key: String) throws -> KeyValue? {
        try Row.fetchOne(db, sql: "SELECT key, value, create_rev, mod_rev, version FROM kv WHERE key = ?",
                         arguments: [key]).map(KeyValue.init(row:))
    }

    func keys(withPrefix prefix: String) throws -> [String] {
        guard let upper = prefix.prefixUpperBound else {
            return try String.fetchAll(db, sql: "SELECT key FROM kv WHERE key >= ? ORDER BY key", arguments: [prefix])
        }
        return try String.fetchAll(db, sql: "SELECT key FROM kv WHERE key >= ? AND key < ? ORDER BY key",
                                   arguments: [prefix, upper])
    }

    mutating func write(_ kv: KeyValue) throws {
        // coalesce: GRDB binds an empty Data as NULL; an empty value is an empty blob.
        try db.execute(sql: """
            INSERT INTO kv (key, value, create_rev, mod_rev, version) VALUES (?, coalesce(?, x''), ?, ?, ?)
            ON CONFLICT (key) DO UPDATE SET value = excluded.value, create_rev = excluded.create_rev,
                mod_rev = excluded.mod_rev, version = excluded.version
            """, arguments: [kv.key, Data(kv.value), kv.createRevision, kv.modRevision, kv.version])
    }

    mutating func erase(_ key: String) throws {
        try db.execute(sql: "DELETE FROM kv WHERE key = ?", arguments: [key])
        precondition(db.changesCount == 1, "erase of a missing key")
    }

    mutating func commit(revision: Int64, changes: [WatchEvent], compactedRevision: Int64) throws {
        for (index, change) in changes.enumerated() {
            precondition(change.modRevision == revision)
            try db.execute(
                sql: "INSERT INTO changelog (rev, idx, key, kind, value) VALUES (?, ?, ?, ?, ?)",
                arguments: [revision, index, change.key, change.kind == .put ? 0 : 1,
                            change.value.map { Data($0) }])
        }
        try db.execute(sql: "DELETE FROM changelog WHERE rev <= ?", arguments: [compactedRevision])
        try db.execute(sql: "UPDATE meta SET revision = ?, compacted_rev = max(compacted_rev, ?) WHERE id = 1",
                       arguments: [revision, compactedRevision])
        precondition(db.changesCount == 1, "meta row missing")
    }

    func changes(prefix: String, afterRevision: Int64) throws -> [WatchEvent] {
        let compacted = try Int64.fetchOne(db, sql: "SELECT compacted_rev FROM meta WHERE id = 1") ?? 0
        guard afterRevision >= compacted else {
            throw WatchPolling.compacted(afterRevision: afterRevision, compactedRevision: compacted)
        }
        var filter = "key >= ?"
        var arguments: StatementArguments = [prefix]
        if let upper = prefix.prefixUpperBound { filter += " AND key < ?"; arguments += [upper] }
        let columns = "SELECT rev, key, kind, value FROM changelog"
        let events = try Row.fetchAll(
            db, sql: "\(columns) WHERE rev > ? AND \(filter) ORDER BY rev, idx LIMIT ?",
            arguments: [afterRevision] + arguments + [MetaLimits.watchEventsMax + 1]).map(WatchEvent.init(row:))
        return try WatchPolling.cut(events) { revision in
            try Row.fetchAll(db, sql: "\(columns) WHERE rev = ? AND \(filter) ORDER BY idx",
                             arguments: [revision] + arguments).map(WatchEvent.init(row:))
        }
    }
}

extension KeyValue {
    init(row: Row) {
        let value: Data? = row["value"]
        self.init(key: row["key"], value: value.map { [UInt8]($0) } ?? [], createRevision: row["create_rev"],
                  modRevision: row["mod_rev"], version: row["version"])
    }
}

extension WatchEvent {
    init(row: Row) {
        let kind: Int = row["kind"]
        let value: Data? = row["value"]
        self.init(kind: kind == 0 ? .put : .delete, key: row["key"],
                  value: kind == 0 ? (value.map { [UInt8]($0) } ?? []) : nil, modRevision: row["rev"])
    }
}
