// A mount's cache of inodes (i/<ino>) and directory entries (d/<parent>/<name>), kept
// coherent with the metadata store by one watch of the filesystem's prefix
// (`FileSystem.runCacheWatcher`) and by this mount's own commits. No negative entries:
// a name the cache does not hold is asked of the store.
//
// Invariants:
// - Every record carries the store modRevision it had; a record is only ever replaced
//   by one of a higher revision, so a slow read cannot overwrite a newer value.
// - A deletion leaves a tombstone (nil record at the delete's revision) so a read that
//   started before the delete cannot put the old value back when it lands after it.
// - Values read from the store enter ("fill") only with a ticket taken before the read
//   and only if the cache was not cleared since (`generation`): after a clear (watch
//   failed or compacted, or the cache was full) nothing read before it comes back.
// - While the watch is broken (`valid` false) the cache is empty and nothing enters:
//   every operation goes to the store, as with caching off, until the watcher has
//   re-read the store's revision and watches again from it.
// Fault model: a failed, compacted or lagging watch costs a clear and a resync, never a
// stale answer beyond what the watch had not delivered yet. Changes made by other
// mounts while the watch is broken may stay in the kernel's caches for up to the
// attribute/entry timeouts (the cache itself is empty then).
import CairnCore
import CairnMeta
import Foundation

/// What the kernel must forget after another mount changed something.
public enum CacheInvalidation: Sendable, Equatable {
    /// An inode's attributes; `data` when its contents (size, mtime or map) changed too.
    case inode(InodeNumber, data: Bool)
    /// The name `name` in directory `parent`.
    case entry(parent: InodeNumber, name: String)
    /// Everything: the watch broke, so what changed meanwhile is unknown.
    case all
}

final class MetaCache: @unchecked Sendable {
    /// Records (tombstones included) kept at most; a full cache is emptied.
    static let recordsMax = 262_144
    /// Revisions of this mount's own commits remembered (to tell the kernel nothing about them).
    static let ownRevisionsMax = 65_536

    enum Record {
        case inode(Inode)
        case entry(DirEntry)
    }

    struct Slot {
        var record: Record?  // nil: deleted at `revision`
        var revision: Int64
    }

    /// A permission to fill: the generation it was taken in.
    struct Ticket { let generation: UInt64 }

    private struct State {
        var slots: [String: Slot] = [:]
        var generation: UInt64 = 0
        var valid = false
        var ownRevisions: Set<Int64> = []
        /// Counters for tests and the metrics of the mount.
        var hits = 0, misses = 0, clears = 0
        /// This mount's commits between sending their transaction and noting its
        /// revision, by sequence number: the watch can bring a commit's changes before
        /// its answer does.
        var commitsActive: Set<UInt64> = []
        var commitNext: UInt64 = 0
    }

    let keys: FSKeys
    private let state = Locked(State())

    init(keys: FSKeys) { self.keys = keys }

    // MARK: - Reads

    func inode(_ ino: InodeNumber) -> (node: Inode, revision: Int64)? {
        state.withLock { s in
            guard case .inode(let n)? = s.slots[keys.inode(ino)]?.record else { s.misses += 1; return nil }
            s.hits += 1
            return (n, s.slots[keys.inode(ino)]!.revision)
        }
    }

    func entry(_ key: String) -> (entry: DirEntry, revision: Int64)? {
        state.withLock { s in
            guard let slot = s.slots[key], case .entry(let e)? = slot.record else { s.misses += 1; return nil }
            s.hits += 1
            return (e, slot.revision)
        }
    }

    /// The cached record of `key` with its revision, if any (for transactions).
    func record(_ key: String) -> (record: Record, revision: Int64)? {
        state.withLock { s in
            guard let slot = s.slots[key], let r = slot.record else { return nil }
            return (r, slot.revision)
        }
    }

    var isValid: Bool { state.withLock { $0.valid } }
    var counters: (hits: Int, misses: Int, clears: Int) { state.withLock { ($0.hits, $0.misses, $0.clears) } }

    // MARK: - Filling from reads

    /// Taken before a store read whose result may enter the cache; nil while invalid.
    func ticket() -> Ticket? { state.withLock { $0.valid ? Ticket(generation: $0.generation) : nil } }

    /// A value read from the store (absent keys are not cached: no negative entries).
    func fill(_ kv: KeyValue, ticket: Ticket?) {
        guard let ticket, let record = decode(kv.key, kv.value) else { return }
        state.withLock { s in
            guard s.valid, s.generation == ticket.generation else { return }
            Self.store(&s, kv.key, Slot(record: record, revision: kv.modRevision))
        }
    }

    /// This mount's own commit at `revision`: what it put (typed where known) and deleted.
    func committed(revision: Int64, puts: [(key: String, record: Record)], deletes: [String], ticket: Ticket?) {
        state.withLock { s in
            Self.noteOwn(&s, revision)
            guard s.valid else { return }  // empty, and nothing enters until the resync
            guard let ticket, s.generation == ticket.generation else {
                // Cleared during the transaction (or values unknown): a value read since
                // may predate this commit, and a resync may lie past changes made after
                // it, so nothing of the keys can be trusted. Clears are rare: clear again.
                Self.clear(&s)
                return
            }
            for p in puts { Self.store(&s, p.key, Slot(record: p.record, revision: revision)) }
            for d in deletes where isCached(d) { Self.store(&s, d, Slot(record: nil, revision: revision)) }
        }
    }

    /// Before a commit's transaction is sent.
    func beginCommit() -> UInt64 {
        state.withLock { s in
            defer { s.commitNext += 1 }
            s.commitsActive.insert(s.commitNext)
            return s.commitNext
        }
    }

    /// After the commit's revision was noted (or it failed).
    func endCommit(_ id: UInt64) { state.withLock { _ = $0.commitsActive.remove(id) } }

    /// Sequence number of the next commit: every commit whose changes a watch already
    /// brought is below it.
    var commitMark: UInt64 { state.withLock { $0.commitNext } }

    func commitsActive(below mark: UInt64) -> Bool { state.withLock { $0.commitsActive.contains { $0 < mark } } }

    /// Remembers a revision as this mount's own even when its values cannot enter.
    func noteOwnRevision(_ revision: Int64) { state.withLock { Self.noteOwn(&$0, revision) } }

    // MARK: - The watch

    /// Applies watched changes (in revision order); returns what the kernel must forget
    /// of the changes other mounts made.
    func apply(_ events: [WatchEvent]) -> [CacheInvalidation] {
        let decoded = events.map { e in (e, e.kind == .put ? e.value.flatMap { decode(e.key, $0) } : nil) }
        return state.withLock { s in
            var out: [CacheInvalidation] = []
            for (e, record) in decoded where isCached(e.key) {
                // The previous value, when the cache holds the one this change replaced.
                let old = s.slots[e.key].flatMap { $0.revision < e.modRevision ? $0.record : nil }
                if s.valid { Self.store(&s, e.key, Slot(record: record, revision: e.modRevision)) }
                // The kernel learnt this mount's own changes from the replies; another
                // mount's change is told even when a read here already saw it (the
                // kernel may hold what it replaced).
                guard !s.ownRevisions.contains(e.modRevision) else { continue }
                if let inval = invalidation(e.key, old: old, new: record) { out.append(inval) }
            }
            if let last = events.last?.modRevision { s.ownRevisions = s.ownRevisions.filter { $0 > last } }
            return out
        }
    }

    /// The watch failed: forget everything and take nothing until `resynced`.
    func invalidateAll() {
        state.withLock { s in
            Self.clear(&s)
            s.valid = false
        }
    }

    /// The watcher watches again from a revision read after `invalidateAll`.
    func resynced() { state.withLock { $0.valid = true } }

    // MARK: - Helpers

    private static func store(_ s: inout State, _ key: String, _ slot: Slot) {
        if let old = s.slots[key], old.revision >= slot.revision { return }
        // Emptied, not trimmed: reads in flight were ticketed before, so they stay out.
        if s.slots.count >= recordsMax && s.slots[key] == nil { clear(&s) }
        s.slots[key] = slot
    }

    private static func clear(_ s: inout State) {
        s.slots.removeAll()
        s.generation &+= 1
        s.clears += 1
    }

    private static func noteOwn(_ s: inout State, _ revision: Int64) {
        if s.ownRevisions.count >= ownRevisionsMax { s.ownRevisions.removeAll() }
        s.ownRevisions.insert(revision)
    }

    func isCached(_ key: String) -> Bool { kind(key) != nil }

    private enum Kind { case inode(InodeNumber), entry(parent: InodeNumber, name: String) }

    private func kind(_ key: String) -> Kind? {
        guard key.hasPrefix(keys.prefix) else { return nil }
        let rest = key.utf8.dropFirst(keys.prefix.utf8.count)
        if rest.starts(with: "i/".utf8) {
            let hex = rest.dropFirst(2)
            guard hex.count == 16, let ino = UInt64(String(Substring(hex)), radix: 16) else { return nil }
            return .inode(ino)
        }
        if rest.starts(with: "d/".utf8) {
            let tail = rest.dropFirst(2)
            guard tail.count > 17, let parent = UInt64(String(Substring(tail.prefix(16))), radix: 16),
                  tail.dropFirst(16).first == UInt8(ascii: "/") else { return nil }
            return .entry(parent: parent, name: String(Substring(tail.dropFirst(17))))
        }
        return nil
    }

    private func decode(_ key: String, _ bytes: [UInt8]) -> Record? {
        switch kind(key) {
        case .inode?: return (try? JSONDecoder().decode(Inode.self, from: Data(bytes))).map(Record.inode)
        case .entry?: return (try? JSONDecoder().decode(DirEntry.self, from: Data(bytes))).map(Record.entry)
        case nil: return nil
        }
    }

    private func invalidation(_ key: String, old: Record?, new: Record?) -> CacheInvalidation? {
        switch kind(key) {
        case .inode(let ino)?:
            var data = true
            if case .inode(let a)? = old, case .inode(let b)? = new {
                data = a.size != b.size || a.mtime != b.mtime || a.slices != b.slices
            }
            return .inode(ino, data: data)
        case .entry(let parent, let name)?:
            return .entry(parent: parent, name: name)
        case nil:
            return nil
        }
    }
}
