// Open-but-unlinked files across mounts, without a metadata write per open.
//
// A mount counts its open handles per inode in memory only. When an unlink (or a
// rename over a name) removes an inode's last name, the inode is deleted at once only
// if no mount can have it open: this mount does not, and this mount was the only one.
// "The only one" comes from the last look at the session records (`SessionView`),
// taken after reading the mount-starts counter, and the unlink's transaction compares
// that counter's revision: a mount that started since bumped it, so the transaction
// fails and its retry takes the slow path. Otherwise the inode stays with nlink 0 and
// an orphan record o/<ino> (revision R).
//
// Every mount's heartbeat reads the store's revision X, then every o/* key, and writes
// into its session record `orphansCheckedAt = X` and `holding` = the orphans it has
// open. An orphan written at R ≤ X was in that range read, so a record with
// orphansCheckedAt ≥ R that does not list the inode comes from a mount that did not
// have it open at that heartbeat — and cannot open it later: its names are gone, and
// an open through a name the kernel still holds finds nlink 0 and is refused
// (`FileSystem.revalidate`). The inode goes
// (`collectOrphans`) in one transaction that compares o/<ino> and every other mount's
// session record as read: all of them checked at or after R and none holding it, and
// not open on the collecting mount itself. A mount that starts after that read
// started after the unlink, so it cannot hold the inode either. A dead mount's record
// is removed by the sweep (MountSessions.swift), which ends its holds.
//
// Costs: nothing per open or close; an unlink of the last name with other mounts
// alive writes the orphan record, and each heartbeat (every 2 s) reads the revision
// and the (normally empty) o/ prefix. A mount holding an orphan tries to remove it at
// its last release; otherwise any mount's next session pass does.
//
// Not covered: an open whose lookup happened before the unlink but whose FUSE open
// reaches the mount only after another mount's heartbeat and collection (both a full
// round trip later) finds the inode gone; a mount the sweep took for dead loses its
// holds as it loses its locks.
import CairnCore
import CairnMeta
import Foundation

/// What a mount last saw of the session records: whether it was alone, and the
/// modRevision of the mount-starts counter read before them.
struct SessionView: Equatable {
    var startsRevision: Int64
    var alone: Bool
}

extension FileSystem {
    /// Remembers whether this mount is the only one (records read after the counter).
    func noteSessions(_ records: [KeyValue], startsRevision: Int64) {
        let own = keys.mount(mountID)
        let alone = records.allSatisfy { $0.key == own }
        sessionView.withLock { $0 = SessionView(startsRevision: startsRevision, alone: alone) }
    }

    /// Reads the session records unless a view is at hand (first unlink, or after a
    /// transaction that relied on the view lost).
    func ensureSessionView() async throws {
        guard sessionView.withLock({ $0 == nil }) else { return }
        let starts = try await store.get(keys.mountStarts)
        noteSessions(try await store.rangeAll(prefix: keys.mounts), startsRevision: starts?.modRevision ?? 0)
    }

    /// Whether the last name of `ino` may take the inode with it at once: not open
    /// here, and no other mount exists (the transaction then compares the counter).
    func mayDeleteAtOnce(_ t: FSTransaction, _ ino: InodeNumber) -> Bool {
        guard openHandles.withLock({ $0[ino, default: 0] == 0 }),
              let view = sessionView.withLock({ $0 }), view.alone else { return false }
        t.depend(on: keys.mountStarts, modRevision: view.startsRevision)
        t.usedSessionView = true
        return true
    }

    /// A mount (re)starts: bumps the counter an unlink that thinks it is alone compares.
    func countMountStart(_ t: FSTransaction) async throws {
        let n = try await t.getJSON(keys.mountStarts, as: UInt64.self) ?? 0
        try t.put(keys.mountStarts, n &+ 1)
    }

    /// Fills the record's orphan fields: the revision first, then the orphans, so every
    /// orphan written at or before that revision is seen.
    func noteOrphans(_ record: inout MountRecord) async throws {
        let revision = try await store.currentRevision()
        let orphans = try await orphanInodes()
        let open = openHandles.withLock { Set($0.keys) }
        let held = orphans.map(\.ino).filter { open.contains($0) }
        heldOrphans.withLock { $0.formUnion(held) }
        record.orphansCheckedAt = revision
        record.holding = held.sorted()
    }

    func orphanInodes() async throws -> [(ino: InodeNumber, revision: Int64)] {
        try await store.rangeAll(prefix: keys.orphans).compactMap { kv in
            UInt64(kv.key.dropFirst(keys.orphans.count), radix: 16).map { ($0, kv.modRevision) }
        }
    }

    /// Removes the orphans no mount holds (all of them, or only `only`). A transaction
    /// that loses a race leaves its orphan to a later pass. Returns how many went.
    @discardableResult
    public func collectOrphans(only: InodeNumber? = nil) async throws -> Int {
        let orphans: [(ino: InodeNumber, revision: Int64)]
        if let only {
            guard let kv = try await store.get(keys.orphan(only)) else {
                heldOrphans.withLock { _ = $0.remove(only) }
                return 0
            }
            orphans = [(only, kv.modRevision)]
        } else {
            orphans = try await orphanInodes()
        }
        guard !orphans.isEmpty else { return 0 }
        let own = keys.mount(mountID)
        var others: [(key: String, revision: Int64, record: MountRecord)] = []
        for kv in try await store.rangeAll(prefix: keys.mounts) where kv.key != own {
            others.append((kv.key, kv.modRevision, try Self.decode(kv.value, as: MountRecord.self)))
        }
        guard others.count + 2 <= MetaLimits.txnComparesMax else {
            throw FSError.io("\(others.count) mounts are more than an orphan's removal can compare")
        }
        var removed = 0
        for o in orphans where openHandles.withLock({ $0[o.ino, default: 0] == 0 }) {
            let free = others.allSatisfy { ($0.record.orphansCheckedAt ?? 0) >= o.revision && !($0.record.holding ?? []).contains(o.ino) }
            guard free else { continue }
            let t = FSTransaction(store: store)
            t.depend(on: keys.orphan(o.ino), modRevision: o.revision)
            for s in others { t.depend(on: s.key, modRevision: s.revision) }
            if let node = try await t.getJSON(keys.inode(o.ino), as: Inode.self), node.nlink == 0 {
                t.delete(keys.inode(o.ino))
            }
            t.delete(keys.orphan(o.ino))
            if try await t.commit() {
                removed += 1
                heldOrphans.withLock { _ = $0.remove(o.ino) }
            }
        }
        return removed
    }
}
