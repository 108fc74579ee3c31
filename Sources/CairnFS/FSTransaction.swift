// One optimistic metadata transaction: reads are recorded with their modRevision (0 for
// a key that does not exist), writes are staged, and commit applies the writes only if
// every key read is unchanged. `FSKeys.transact` retries a body that lost a race.
import CairnCore
import CairnMeta
import Foundation

final class FSTransaction {
    let store: MetaStore
    private var revisions: [String: Int64] = [:]
    private var values: [String: [UInt8]?] = [:]
    private var writes: [String: TxnOp] = [:]
    private var order: [String] = []
    /// The body relied on FileSystem.sessionView (see FileSystem.transact).
    var usedSessionView = false
    /// Keys that must hold exactly these bytes at commit (never read by the body).
    private var valueChecks: [String: [UInt8]] = [:]

    /// The mount's metadata cache (MetaCache.swift): what this transaction reads from the
    /// store fills it, and a successful commit puts what it wrote.
    let cache: MetaCache?
    /// Whether reads may be answered from the cache (first attempts only: the commit's
    /// compares catch a stale value, and the retry reads the store).
    let cachedReads: Bool
    /// Some read was answered from the cache or assumed absent.
    private(set) var usedCache = false
    /// Records read from the cache, by key (their revisions are in `revisions`).
    private var typed: [String: MetaCache.Record] = [:]
    /// Typed values of staged puts, for the cache.
    private var stagedRecords: [String: MetaCache.Record] = [:]
    private let ticket: MetaCache.Ticket?

    init(store: MetaStore, cache: MetaCache? = nil, cachedReads: Bool = false) {
        self.store = store; self.cache = cache; self.cachedReads = cachedReads && cache != nil
        ticket = cache?.ticket()
    }

    /// The key's value as this transaction sees it (its own staged writes included).
    func get(_ key: String) async throws -> [UInt8]? {
        if let staged = writes[key] {
            if case .put(_, let v) = staged { return v }
            return nil
        }
        if let cached = values[key] { return cached }
        if let record = cachedRecord(key) {
            switch record {
            case .inode(let n): return [UInt8](try JSONEncoder().encode(n))
            case .entry(let e): return [UInt8](try JSONEncoder().encode(e))
            }
        }
        let kv = try await store.get(key)
        noteRead(key, kv)
        return kv?.value
    }

    /// The cached record of `key` when this transaction may use it (recorded as read at
    /// its revision).
    private func cachedRecord(_ key: String) -> MetaCache.Record? {
        if let r = typed[key] { return r }
        guard cachedReads, let hit = cache?.record(key) else { return nil }
        typed[key] = hit.record
        revisions[key] = hit.revision
        usedCache = true
        return hit.record
    }

    private func noteRead(_ key: String, _ kv: KeyValue?) {
        revisions[key] = kv?.modRevision ?? 0
        values.updateValue(kv?.value, forKey: key)  // kept for an absent key too (nil value)
        if let kv { cache?.fill(kv, ticket: ticket) }
    }

    /// With cached reads, takes `key` as absent without asking the store (a create's new
    /// name: the kernel looked it up just before). The commit compares revision 0, so a
    /// name that exists fails the commit and the retry reads the store.
    func assumeAbsent(_ key: String) {
        guard cachedReads, writes[key] == nil, values.index(forKey: key) == nil, typed[key] == nil else { return }
        revisions[key] = 0
        values.updateValue(nil, forKey: key)
        usedCache = true
    }

    /// Reads, in one store call (`MetaStore.getMany`), the keys this transaction has not
    /// read or written yet, recording their revisions as `get` does; the `get`s that follow
    /// answer from them. An operation that needs several records pays one round trip.
    func prefetch(_ keys: [String]) async throws {
        var wanted: [String] = []
        for k in keys where writes[k] == nil && values.index(forKey: k) == nil && cachedRecord(k) == nil && !wanted.contains(k) {
            wanted.append(k)
        }
        guard wanted.count > 1 else { return }
        let kvs = try await store.getMany(wanted)
        precondition(kvs.count == wanted.count, "getMany answered \(kvs.count) values for \(wanted.count) keys")
        for (k, kv) in zip(wanted, kvs) { noteRead(k, kv) }
    }

    func getJSON<T: Decodable>(_ key: String, as: T.Type) async throws -> T? {
        if writes[key] == nil && values.index(forKey: key) == nil, let record = cachedRecord(key) {
            switch record {
            case .inode(let n): if let v = n as? T { return v }
            case .entry(let e): if let v = e as? T { return v }
            }
        }
        guard let bytes = try await get(key) else { return nil }
        do {
            return try JSONDecoder().decode(T.self, from: Data(bytes))
        } catch {
            throw FSError.io("metadata record \(key) is unreadable: \(error)")
        }
    }

    /// The modRevision at which `key` was read (0: absent or not read).
    func revision(of key: String) -> Int64 { revisions[key] ?? 0 }

    /// Records that the transaction depends on `key` having exactly this revision.
    func depend(on key: String, modRevision: Int64) {
        if revisions[key] == nil { revisions[key] = modRevision }
    }

    /// Records that the transaction depends on `key` holding exactly `bytes`.
    func require(_ key: String, equals bytes: [UInt8]) { valueChecks[key] = bytes }

    func putBytes(_ key: String, _ bytes: [UInt8]) {
        stage(key, .put(key: key, value: bytes))
        stagedRecords.removeValue(forKey: key)
    }

    func put<T: Encodable>(_ key: String, _ value: T) throws {
        stage(key, .put(key: key, value: [UInt8](try JSONEncoder().encode(value))))
        if let n = value as? Inode { stagedRecords[key] = .inode(n) } else if let e = value as? DirEntry { stagedRecords[key] = .entry(e) }
    }

    func delete(_ key: String) {
        stage(key, .delete(key: key))
        stagedRecords.removeValue(forKey: key)
    }

    private func stage(_ key: String, _ op: TxnOp) {
        if writes[key] == nil { order.append(key) }
        writes[key] = op
    }

    /// Applies the staged writes if nothing read has changed; false if it lost a race.
    func commit() async throws -> Bool {
        guard !writes.isEmpty else { return true }
        precondition(writes.count <= MetaLimits.txnOpsMax, "a filesystem transaction writes at most \(MetaLimits.txnOpsMax) keys")
        let compares = revisions.sorted { $0.key < $1.key }.map { TxnCompare.modRevision(key: $0.key, equals: $0.value) }
            + valueChecks.sorted { $0.key < $1.key }.map { TxnCompare.valueEquals(key: $0.key, value: $0.value) }
        let commit = cache?.beginCommit()
        defer { if let commit { cache?.endCommit(commit) } }
        let result = try await store.txn(compare: compares, success: order.map { writes[$0]! }, failure: [])
        if result.succeeded, let cache {
            var puts: [(key: String, record: MetaCache.Record)] = []
            var deletes: [String] = []
            var untyped = false
            for k in order {
                switch writes[k]! {
                case .put: if let r = stagedRecords[k] { puts.append((k, r)) } else if cache.isCached(k) { untyped = true }
                case .delete: deletes.append(k)
                case .deletePrefix: untyped = true
                }
            }
            // Every write of this mount is typed; anything else is left to the watch.
            cache.committed(revision: result.revision, puts: puts, deletes: deletes, ticket: untyped ? nil : ticket)
        }
        return result.succeeded
    }
}

/// The key layout of one filesystem.
struct FSKeys: Sendable {
    let prefix: String
    func inode(_ ino: InodeNumber) -> String { prefix + "i/" + Self.hex(ino) }
    func entries(_ dir: InodeNumber) -> String { prefix + "d/" + Self.hex(dir) + "/" }
    func entry(_ dir: InodeNumber, _ name: String) -> String { entries(dir) + name }
    var inodeCounter: String { prefix + "next-ino" }
    /// Inodes without names kept for open handles (a crashed mount leaves them for a collector).
    func orphan(_ ino: InodeNumber) -> String { orphans + Self.hex(ino) }
    var orphans: String { prefix + "o/" }
    /// Every lock of one inode (Locks.swift).
    func lock(_ ino: InodeNumber) -> String { locks + Self.hex(ino) }
    var locks: String { prefix + "l/" }
    /// One mount's session record (MountSessions.swift).
    func mount(_ id: String) -> String { mounts + id }
    var mounts: String { prefix + "m/" }
    /// Counts mount starts: an unlink that found itself the only mount compares it.
    var mountStarts: String { prefix + "mount-starts" }
    /// The data volume of one mount (Collector.swift).
    func dataVolume(_ mount: String) -> String { dataVolumes + mount }
    var dataVolumes: String { prefix + "v/" }
    /// A counter `cairn fs gc` bumps to ask every mount to collect its own volume.
    var collectRequest: String { prefix + "gc-request" }
    /// Which mount last ran the timed collection of ended mounts' volumes, and when.
    var endedCollection: String { prefix + "gc-ended" }

    static func hex(_ v: UInt64) -> String {
        let s = String(v, radix: 16)
        return String(repeating: "0", count: 16 - s.count) + s
    }
}
