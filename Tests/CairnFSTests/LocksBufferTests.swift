@testable import CairnFS
import CairnCore
import CairnMeta
import NIOCore
import XCTest

/// Locks across mounts, mount sessions, write buffering, fallocate and access.
final class LocksBufferTests: XCTestCase {
    let root = FileSystem.rootInode

    func mount(_ store: MetaStore, _ data: SliceStore, _ id: String, buffering: WriteBufferLimits = .none) async throws -> FileSystem {
        try await makeTestMount(store, data, id, buffering: buffering)
    }

    func posix(_ start: UInt64, _ end: UInt64, owner: UInt64) -> FileLock {
        FileLock(kind: .posix, exclusive: false, start: start, end: end, mount: "", owner: owner, pid: 7)
    }

    func errno(_ body: () async throws -> Void) async -> Int32? {
        do { try await body(); return nil } catch let e as FSError { return e.errno } catch { return -1 }
    }

    func testPosixLocksConflictAcrossMountsAndReleaseOnClose() async throws {
        let store = MemoryMetaStore(), data = MemorySliceStore()
        let a = try await mount(store, data, "a"), b = try await mount(store, data, "b")
        let f = try await a.makeNode(root, "f", mode: FileType.regular | 0o644, uid: 0, gid: 0)
        try await a.setLock(f.ino, .exclusive, posix(0, 99, owner: 1), wait: false)
        // Same owner number on another mount is another owner.
        let e1 = await errno { try await b.setLock(f.ino, .shared, self.posix(50, 60, owner: 1), wait: false) }
        XCTAssertEqual(e1, 11)
        try await b.setLock(f.ino, .exclusive, posix(100, 200, owner: 1), wait: false)
        let held = try await b.testLock(f.ino, FileLock(kind: .posix, exclusive: false, start: 10, end: 10, mount: "b", owner: 1, pid: 0))
        XCTAssertEqual(held?.mount, "a")
        XCTAssertEqual(held?.pid, 7)
        // flock and POSIX locks are independent.
        try await b.setLock(f.ino, .exclusive, FileLock(kind: .flock, exclusive: true, mount: "b", owner: 9, pid: 0), wait: false)
        // a's owner unlocks the middle: the rest stays.
        try await a.setLock(f.ino, .unlock, posix(40, 59, owner: 1), wait: false)
        try await b.setLock(f.ino, .shared, posix(45, 55, owner: 2), wait: false)
        let e2 = await errno { try await b.setLock(f.ino, .shared, self.posix(0, 0, owner: 2), wait: false) }
        XCTAssertEqual(e2, 11)
        // Closing (flush) drops all of a's owner's locks.
        try await a.releaseLocks(f.ino, owner: 1, kind: .posix)
        try await b.setLock(f.ino, .exclusive, posix(0, 39, owner: 2), wait: false)
    }

    func testBlockedLockWaitsUntilReleasedOrInterrupted() async throws {
        let store = MemoryMetaStore(), data = MemorySliceStore()
        let a = try await mount(store, data, "a"), b = try await mount(store, data, "b")
        let f = try await a.makeNode(root, "f", mode: FileType.regular | 0o644, uid: 0, gid: 0)
        let flock = FileLock(kind: .flock, exclusive: true, mount: "", owner: 5, pid: 0)
        try await a.setLock(f.ino, .exclusive, flock, wait: false)
        let granted = Locked(false)
        let waiter = Task {
            try await b.setLock(f.ino, .exclusive, flock, wait: true)
            granted.withLock { $0 = true }
        }
        try await Task.sleep(for: .milliseconds(300))
        XCTAssertFalse(granted.withLock { $0 })
        try await a.releaseLocks(f.ino, owner: 5, kind: .flock)
        try await waiter.value
        XCTAssertTrue(granted.withLock { $0 })
        let e = await errno { try await a.setLock(f.ino, .shared, flock, wait: true, interrupted: { true }) }
        XCTAssertEqual(e, 4)
    }

    func testDeadMountsLocksAndOrphansGoAfterTheSweep() async throws {
        let store = MemoryMetaStore(), data = MemorySliceStore()
        let a = try await mount(store, data, "a"), b = try await mount(store, data, "b")
        try await a.startSession(MountRecord(host: "h", pid: 1, dataVolume: "memory", started: FSTime(nanoseconds: 0)))
        try await b.startSession(MountRecord(host: "h", pid: 2, dataVolume: "memory", started: FSTime(nanoseconds: 0)))
        let f = try await a.makeNode(root, "f", mode: FileType.regular | 0o644, uid: 0, gid: 0)
        try await a.setLock(f.ino, .exclusive, posix(0, .max, owner: 1), wait: false)
        a.opened(f.ino)
        try await a.unlink(root, "f")
        let second: UInt64 = 1_000_000_000
        let first = try await b.sweepDeadMounts(monotonicNow: 0)
        XCTAssertEqual(first, [])
        let later = try await b.sweepDeadMounts(monotonicNow: 11 * second)
        XCTAssertEqual(later, ["a"])
        try await b.setLock(f.ino, .exclusive, posix(0, .max, owner: 1), wait: false)
        let orphan = try await store.get("/fs/t/i/" + FSKeys.hex(f.ino))
        XCTAssertNil(orphan, "the dead mount's orphan is removed")
        // a was only slow: its heartbeat finds its record gone and writes it again.
        let found = try await a.heartbeat()
        XCTAssertFalse(found)
        let again = try await a.heartbeat()
        XCTAssertTrue(again)
        // A beating mount is not dead.
        let s1 = try await b.sweepDeadMounts(monotonicNow: 12 * second)
        XCTAssertEqual(s1, [])
        try await a.heartbeat()
        let s2 = try await b.sweepDeadMounts(monotonicNow: 30 * second)
        XCTAssertEqual(s2, [])
        try await a.endSession()
        let left = try await b.sessions()
        XCTAssertEqual(Array(left.keys), ["b"])
    }

    func testBufferedWritesAreReadBackAndStoredAtFlush() async throws {
        let store = MemoryMetaStore(), data = MemorySliceStore()
        let a = try await mount(store, data, "a", buffering: WriteBufferLimits(perFileBytes: 1 << 20, totalBytes: 4 << 20))
        let b = try await mount(store, data, "b")
        let f = try await a.makeNode(root, "f", mode: FileType.regular | 0o644, uid: 0, gid: 0)
        var reference = [UInt8]()
        var rng = SplitMix64(seed: 3)
        for _ in 0..<300 {
            let offset = Int(rng.next() % 20_000), count = Int(rng.next() % 3000) + 1
            let bytes = (0..<count).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            _ = try await a.write(f.ino, offset: UInt64(offset), bytes: bytes)
            if reference.count < offset + count { reference += [UInt8](repeating: 0, count: offset + count - reference.count) }
            reference.replaceSubrange(offset..<offset + count, with: bytes)
        }
        let v1 = try await a.getattr(f.ino).size
        XCTAssertEqual(v1, UInt64(reference.count))
        let v2 = try await a.read(f.ino, offset: 0, length: 100_000)
        XCTAssertEqual(v2, reference)
        let v3 = try await b.getattr(f.ino).size
        XCTAssertEqual(v3, 0, "nothing is stored before the flush")
        XCTAssertGreaterThan(a.bufferedByteCount, 0)
        try await a.flush(f.ino)
        XCTAssertEqual(a.bufferedByteCount, 0)
        let v4 = try await b.read(f.ino, offset: 0, length: 100_000)
        XCTAssertEqual(v4, reference)
        // Sequential writes become one slice; a truncate stores the buffer first.
        let g = try await a.makeNode(root, "g", mode: FileType.regular | 0o644, uid: 0, gid: 0)
        for i in 0..<100 { _ = try await a.write(g.ino, offset: UInt64(i * 1000), bytes: [UInt8](repeating: UInt8(i), count: 1000)) }
        _ = try await a.setattr(g.ino, AttributeChanges(size: 50_500))
        let stored = try await b.getattr(g.ino)
        XCTAssertEqual(stored.size, 50_500)
        XCTAssertEqual(stored.slices.count, 1)
        let v5 = try await b.read(g.ino, offset: 49_999, length: 2)
        XCTAssertEqual(v5, [49, 50])
        // The per-file limit stores without a flush (in the background: WriteBuffer.swift).
        _ = try await a.write(g.ino, offset: 0, bytes: [UInt8](repeating: 1, count: 1 << 20))
        for _ in 0..<2000 where a.bufferedByteCount > 0 { try await Task.sleep(nanoseconds: 1_000_000) }
        XCTAssertEqual(a.bufferedByteCount, 0)
        let v6 = try await b.read(g.ino, offset: 0, length: 2)
        XCTAssertEqual(v6, [1, 1])
    }

    func testFallocateModes() async throws {
        let fs = try await mount(MemoryMetaStore(), MemorySliceStore(), "a")
        let f = try await fs.makeNode(root, "f", mode: FileType.regular | 0o644, uid: 0, gid: 0)
        _ = try await fs.write(f.ino, offset: 0, bytes: [UInt8](repeating: 7, count: 100))
        try await fs.allocate(f.ino, mode: [], offset: 50, length: 150)
        let v6 = try await fs.getattr(f.ino).size
        XCTAssertEqual(v6, 200)
        try await fs.allocate(f.ino, mode: .keepSize, offset: 0, length: 1000)
        let v7 = try await fs.getattr(f.ino).size
        XCTAssertEqual(v7, 200)
        try await fs.allocate(f.ino, mode: [.punchHole, .keepSize], offset: 10, length: 20)
        let v8 = try await fs.getattr(f.ino).size
        XCTAssertEqual(v8, 200)
        try await fs.allocate(f.ino, mode: .zeroRange, offset: 90, length: 210)
        let bytes = try await fs.read(f.ino, offset: 0, length: 1000)
        XCTAssertEqual(bytes.count, 300)
        XCTAssertEqual(bytes, [UInt8](repeating: 7, count: 10) + [UInt8](repeating: 0, count: 20) + [UInt8](repeating: 7, count: 60) + [UInt8](repeating: 0, count: 210))
        let e1 = await errno { try await fs.allocate(f.ino, mode: .punchHole, offset: 0, length: 1) }
        XCTAssertEqual(e1, 95)
        let e2 = await errno { try await fs.allocate(f.ino, mode: FileSystem.AllocateMode(rawValue: 0x08), offset: 0, length: 1) }
        XCTAssertEqual(e2, 95)
    }

    func testAccess() async throws {
        let fs = try await mount(MemoryMetaStore(), MemorySliceStore(), "a")
        let f = try await fs.makeNode(root, "f", mode: FileType.regular | 0o640, uid: 10, gid: 20)
        try await fs.access(f.ino, mask: 6, uid: 10, groups: [])
        try await fs.access(f.ino, mask: 4, uid: 11, groups: [5, 20])
        let e1 = await errno { try await fs.access(f.ino, mask: 2, uid: 11, groups: [20]) }
        XCTAssertEqual(e1, 13)
        let e2 = await errno { try await fs.access(f.ino, mask: 4, uid: 11, groups: [21]) }
        XCTAssertEqual(e2, 13)
        let e3 = await errno { try await fs.access(f.ino, mask: 1, uid: 0, groups: []) }
        XCTAssertEqual(e3, 13)
        try await fs.access(f.ino, mask: 0, uid: 99, groups: [])
    }

    func testExtentsMergeAndTruncate() {
        var e = Extents()
        e.write(10, [1, 1])
        e.write(0, [2])
        e.write(12, [3])
        XCTAssertEqual(e.items.count, 2)
        e.write(1, [4, 4, 4, 4, 4, 4, 4, 4, 4, 4])  // bridges the gap and overlaps
        XCTAssertEqual(e.items.count, 1)
        XCTAssertEqual(Array(e.items[0].bytes.readableBytesView), [2, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 1, 3])
        XCTAssertEqual(e.byteCount, 13)
        e.truncate(5)
        XCTAssertEqual(Array(e.items[0].bytes.readableBytesView), [2, 4, 4, 4, 4])
    }
}
