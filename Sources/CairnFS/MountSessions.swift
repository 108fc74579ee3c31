// Mount sessions: every mount of a filesystem keeps a record m/<mount id> that its
// heartbeat rewrites (every `MountSessions.heartbeatInterval`). Each mount's sweep reads
// all session records and remembers, by its own monotonic clock, since when each
// record's modRevision has not moved; a record unchanged for `deadAfter` belongs to a
// dead mount (killed, or cut off from the store). No clocks are compared across hosts.
//
// Ending a mount, cleanly (endSession) or by another mount's sweep (a dead one), drops
// its locks and then its session record, which ends its holds on orphans (the inodes
// kept open after their last name: OpenHandles.swift); the sweep's final delete compares the record's revision, so a
// mount that was only slow and beats again is not removed. Such a mount's heartbeat
// finds its record gone, says so, and writes it again (its locks are lost: logged).
import CairnCore
import CairnMeta
import Foundation

public struct MountRecord: Codable, Sendable, Equatable {
    public var host: String
    public var pid: Int32
    /// The volume this mount appends its data slices to.
    public var dataVolume: String
    public var started: FSTime
    public var beat: UInt64
    /// The store revision up to which this mount has looked at the orphans (o/*), and
    /// those of them it has open (OpenHandles.swift). Optional: older records lack them.
    public var orphansCheckedAt: Int64?
    public var holding: [InodeNumber]?
    /// The last `cairn fs gc` request this mount answered, and the bytes it trimmed then.
    public var collected: UInt64?
    public var collectedBytes: UInt64?
    public init(host: String, pid: Int32, dataVolume: String, started: FSTime, beat: UInt64 = 0) {
        self.host = host; self.pid = pid; self.dataVolume = dataVolume; self.started = started; self.beat = beat
    }
}

/// An inode kept without names because a mount may have it open (o/<ino>); `mount`
/// is the mount that removed its last name (for people reading the store).
struct OrphanRecord: Codable, Equatable {
    var ino: InodeNumber
    var mount: String
}

extension FileSystem {
    public static let heartbeatInterval = Duration.seconds(2)
    /// A session record unchanged this long (seen by another mount) is a dead mount's.
    public static let deadAfter = Duration.seconds(10)

    /// Writes this mount's session record (at mount).
    public func startSession(_ record: MountRecord) async throws {
        var record = record
        try await noteOrphans(&record)
        let claim = try claimBytes(record.dataVolume)
        try await transact { t in
            try await countMountStart(t)
            try t.put(keys.mount(mountID), record)
            // The data volume's record comes with the first session record (Collector.swift).
            if try await t.get(keys.dataVolume(mountID)) == nil { t.putBytes(keys.dataVolume(mountID), claim) }
        }
        ownVolume.withLock { $0.claim = claim }
        session.withLock { $0 = record }
    }

    /// Rewrites the session record. Returns false when the record was gone (another
    /// mount took this one for dead and dropped its locks); it is written again.
    @discardableResult
    public func heartbeat() async throws -> Bool {
        guard var record = session.withLock({ $0 }) else { return true }
        record.beat += 1
        try await noteOrphans(&record)
        ownVolume.withLock { o in
            record.collected = o.answered?.request
            record.collectedBytes = o.answered?.bytes
        }
        let existed = try await transact { t -> Bool in
            let had = try await t.get(keys.mount(mountID)) != nil
            if !had { try await countMountStart(t) }
            try t.put(keys.mount(mountID), record)
            return had
        }
        session.withLock { $0 = record }
        return existed
    }

    /// The clean end of this mount: its locks, its orphans and its record go.
    public func endSession() async throws {
        try await removeMount(mountID, ifRevision: nil)
        session.withLock { $0 = nil }
    }

    /// Looks at every session record; removes the mounts whose record has not changed
    /// for `deadAfter` by `monotonicNow` (nanoseconds of a monotonic clock). Returns the
    /// ids of the mounts it removed.
    @discardableResult
    public func sweepDeadMounts(monotonicNow: UInt64, deadAfter: Duration = FileSystem.deadAfter) async throws -> [String] {
        let limit = UInt64(deadAfter.components.seconds) * 1_000_000_000 + UInt64(deadAfter.components.attoseconds / 1_000_000_000)
        let starts = try await store.get(keys.mountStarts)  // before the records: see noteSessions
        let records = try await store.rangeAll(prefix: keys.mounts)
        noteSessions(records, startsRevision: starts?.modRevision ?? 0)
        var dead: [(String, Int64)] = []
        sessionsSeen.withLock { seen in
            var present: [String: (revision: Int64, since: UInt64)] = [:]
            for kv in records {
                let id = String(kv.key.dropFirst(keys.mounts.count))
                guard id != mountID else { continue }
                if let s = seen[id], s.revision == kv.modRevision {
                    present[id] = s
                    if monotonicNow >= s.since && monotonicNow - s.since >= limit { dead.append((id, kv.modRevision)) }
                } else {
                    present[id] = (kv.modRevision, monotonicNow)
                }
            }
            seen = present
        }
        var removed: [String] = []
        for (id, revision) in dead where try await removeMount(id, ifRevision: revision) {
            removed.append(id)
        }
        // The dead mounts' holds on orphans went with their records.
        if !removed.isEmpty { try await collectOrphans() }
        return removed
    }

    /// Drops a mount's locks, then its record (only if still at `ifRevision`, when
    /// given), which ends its holds on orphans. Returns whether the record went.
    @discardableResult
    func removeMount(_ id: String, ifRevision: Int64?) async throws -> Bool {
        try await removeAllLocks(of: id)
        let key = keys.mount(id)
        let compare = ifRevision.map { [TxnCompare.modRevision(key: key, equals: $0)] } ?? []
        return try await store.txn(compare: compare, success: [.delete(key: key)], failure: []).succeeded
    }

    /// Every live session record (for `cairn` tools and tests).
    public func sessions() async throws -> [String: MountRecord] {
        var out: [String: MountRecord] = [:]
        for kv in try await store.rangeAll(prefix: keys.mounts) {
            out[String(kv.key.dropFirst(keys.mounts.count))] = try Self.decode(kv.value, as: MountRecord.self)
        }
        return out
    }
}
