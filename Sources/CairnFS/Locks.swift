// POSIX record locks (fcntl F_GETLK/F_SETLK/F_SETLKW) and BSD flock locks that hold
// across mounts: every lock of an inode lives in one store record, l/<ino>, a list of
// FileLock changed by one transaction (modRevision compare), so two mounts asking for
// conflicting locks serialise at the store and exactly one wins.
//
// A lock's owner is (mount id, the kernel's lock owner): for POSIX locks the kernel
// passes the process's files table, for flock the open file. POSIX locks and flock
// locks never conflict with each other (as on Linux). A lock goes:
// - when its owner unlocks, or closes the file (POSIX: the kernel's flush carries the
//   owner; flock: the last release of the open file);
// - when its mount ends (endSession), or is found dead by another mount's sweep
//   (MountSessions.swift): a killed mount's locks do not block the others for ever.
// A blocked F_SETLKW / flock waits on a store watch of the record (woken by any
// change, bounded so a dead holder's sweep and the caller's interrupt are noticed).
import CairnCore
import CairnMeta
import Foundation

public enum LockKind: String, Codable, Sendable { case posix, flock }

public struct FileLock: Codable, Sendable, Equatable {
    public var kind: LockKind
    public var exclusive: Bool
    /// First and last byte (inclusive); `end` UInt64.max reaches past any file size.
    public var start: UInt64
    public var end: UInt64
    public var mount: String
    public var owner: UInt64
    /// The holder's pid, for F_GETLK's answer (valid only on the holder's host).
    public var pid: UInt32

    public init(kind: LockKind, exclusive: Bool, start: UInt64 = 0, end: UInt64 = .max, mount: String, owner: UInt64, pid: UInt32) {
        self.kind = kind; self.exclusive = exclusive; self.start = start; self.end = end
        self.mount = mount; self.owner = owner; self.pid = pid
    }

    func sameOwner(_ o: FileLock) -> Bool { kind == o.kind && mount == o.mount && owner == o.owner }
    func overlaps(_ o: FileLock) -> Bool { start <= o.end && o.start <= end }
    func conflicts(with o: FileLock) -> Bool { kind == o.kind && !sameOwner(o) && overlaps(o) && (exclusive || o.exclusive) }
}

/// What a lock call asks for.
public enum LockAction: Sendable { case shared, exclusive, unlock }

extension FileSystem {
    /// Locks held on one inode at once, by all mounts (bounds the record's size).
    public static let locksPerInodeMax = 4096
    /// Longest single wait on the lock record before the waiter looks again.
    static let lockWaitSlice = Duration.milliseconds(500)

    /// F_GETLK: the first lock that would conflict with `want`, or nil.
    public func testLock(_ ino: InodeNumber, _ want: FileLock) async throws -> FileLock? {
        let locks = try await store.getJSON(keys.lock(ino), as: [FileLock].self)?.0 ?? []
        return locks.first { $0.conflicts(with: want) }
    }

    /// F_SETLK / F_SETLKW / flock: takes, converts or releases this owner's lock on
    /// [start, end]. Without `wait` a conflict is EAGAIN (11); with it the call waits
    /// until the conflict goes, or `interrupted()` (then EINTR, 4).
    public func setLock(_ ino: InodeNumber, _ action: LockAction, _ template: FileLock, wait: Bool,
                        interrupted: @Sendable () -> Bool = { false }) async throws {
        var want = template
        want.mount = mountID
        want.exclusive = action == .exclusive
        while true {
            let (conflict, revision) = try await transact { t -> (FileLock?, Int64) in
                let key = keys.lock(ino)
                var locks = try await t.getJSON(key, as: [FileLock].self) ?? []
                let revision = t.revision(of: key)
                if action != .unlock, let c = locks.first(where: { $0.conflicts(with: want) }) { return (c, revision) }
                locks = Self.applying(locks, want, unlock: action == .unlock)
                guard locks.count <= Self.locksPerInodeMax else { throw FSError(37, "over \(Self.locksPerInodeMax) locks on inode \(ino)") }
                if locks.isEmpty { t.delete(key) } else { try t.put(key, locks) }
                return (nil, revision)
            }
            if conflict == nil {
                heldLocks.withLock { h in
                    if action == .unlock { return }
                    h.insert(HeldLock(ino: ino, kind: want.kind, owner: want.owner))
                }
                return
            }
            guard wait else { throw FSError(11, "inode \(ino) is locked by mount \(conflict!.mount)") }
            if interrupted() { throw FSError(4, "lock wait interrupted") }
            _ = try? await store.watch(prefix: keys.lock(ino), afterRevision: revision, timeout: Self.lockWaitSlice)
            if interrupted() { throw FSError(4, "lock wait interrupted") }
        }
    }

    /// Drops every lock of `kind` this mount's `owner` holds on the inode (a POSIX
    /// owner closing the file, the last release of a flock'ed open file).
    public func releaseLocks(_ ino: InodeNumber, owner: UInt64, kind: LockKind) async throws {
        let held = HeldLock(ino: ino, kind: kind, owner: owner)
        guard heldLocks.withLock({ $0.contains(held) }) else { return }
        try await removeLocks(ino) { $0.kind == kind && $0.mount == self.mountID && $0.owner == owner }
        heldLocks.withLock { _ = $0.remove(held) }
    }

    /// Removes the inode's locks matching `drop` in one transaction.
    func removeLocks(_ ino: InodeNumber, _ drop: @escaping (FileLock) -> Bool) async throws {
        try await transact { t in
            let key = keys.lock(ino)
            guard let locks = try await t.getJSON(key, as: [FileLock].self) else { return }
            let kept = locks.filter { !drop($0) }
            if kept.count == locks.count { return }
            if kept.isEmpty { t.delete(key) } else { try t.put(key, kept) }
        }
    }

    /// Drops every lock record of `mount` (its end, or its death).
    func removeAllLocks(of mount: String) async throws {
        for kv in try await store.rangeAll(prefix: keys.locks) {
            guard let ino = UInt64(kv.key.dropFirst(keys.locks.count), radix: 16) else { continue }
            try await removeLocks(ino) { $0.mount == mount }
        }
    }

    /// The owner's locks after `want` (POSIX: its range is cut out of the owner's
    /// locks of that kind, then added unless unlocking, merged with touching ranges of
    /// the same type; flock: the owner's one lock replaced).
    static func applying(_ locks: [FileLock], _ want: FileLock, unlock: Bool) -> [FileLock] {
        var out: [FileLock] = []
        for l in locks {
            guard l.sameOwner(want), l.overlaps(want) else { out.append(l); continue }
            if l.start < want.start { var left = l; left.end = want.start - 1; out.append(left) }
            if l.end > want.end { var right = l; right.start = want.end + 1; out.append(right) }
        }
        guard !unlock else { return out }
        var add = want
        // Merge with the owner's touching or overlapping locks of the same type.
        out.removeAll { l in
            guard l.sameOwner(add), l.exclusive == add.exclusive else { return false }
            let touches = (add.start == 0 || l.end >= add.start - 1) && (add.end == .max || l.start <= add.end + 1)
            guard touches else { return false }
            add.start = min(add.start, l.start)
            add.end = max(add.end, l.end)
            return true
        }
        out.append(add)
        return out.sorted { ($0.start, $0.mount, $0.owner) < ($1.start, $1.mount, $1.owner) }
    }
}

/// A lock this mount may hold: flush and release only go to the store for these.
struct HeldLock: Hashable {
    let ino: InodeNumber
    let kind: LockKind
    let owner: UInt64
}
