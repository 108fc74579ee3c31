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

    init(store: MetaStore) { self.store = store }

    /// The key's value as this transaction sees it (its own staged writes included).
    func get(_ key: String) async throws -> [UInt8]? {
        if let staged = writes[key] {
            if case .put(_, let v) = staged { return v }
            return nil
        }
        if let cached = values[key] { return cached }
        let kv = try await store.get(key)
        revisions[key] = kv?.modRevision ?? 0
        values.updateValue(kv?.value, forKey: key)  // kept for an absent key too (nil value)
        return kv?.value
    }

    /// Reads, in one store call (`MetaStore.getMany`), the keys this transaction has not
    /// read or written yet, recording their revisions as `get` does; the `get`s that follow
    /// answer from them. An operation that needs several records pays one round trip.
    func prefetch(_ keys: [String]) async throws {
        var wanted: [String] = []
        for k in keys where writes[k] == nil && values.index(forKey: k) == nil && !wanted.contains(k) { wanted.append(k) }
        guard wanted.count > 1 else { return }
        let kvs = try await store.getMany(wanted)
        precondition(kvs.count == wanted.count, "getMany answered \(kvs.count) values for \(wanted.count) keys")
        for (k, kv) in zip(wanted, kvs) {
            revisions[k] = kv?.modRevision ?? 0
            values.updateValue(kv?.value, forKey: k)  // kept for an absent key too (nil value)
        }
    }

    func getJSON<T: Decodable>(_ key: String, as: T.Type) async throws -> T? {
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

    func putBytes(_ key: String, _ bytes: [UInt8]) { stage(key, .put(key: key, value: bytes)) }

    func put<T: Encodable>(_ key: String, _ value: T) throws {
        stage(key, .put(key: key, value: [UInt8](try JSONEncoder().encode(value))))
    }

    func delete(_ key: String) { stage(key, .delete(key: key)) }

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
        let result = try await store.txn(compare: compares, success: order.map { writes[$0]! }, failure: [])
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
