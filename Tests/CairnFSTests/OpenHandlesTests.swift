@testable import CairnFS
import CairnCore
import CairnMeta
import XCTest

/// Open-but-unlinked inodes across mounts (OpenHandles.swift).
final class OpenHandlesTests: XCTestCase {
    let root = FileSystem.rootInode

    func mount(_ store: MetaStore, _ data: SliceStore, _ id: String) async throws -> FileSystem {
        let clock = Locked<Int64>(1_000_000_000)
        let fs = FileSystem(store: store, prefix: "/fs/t/", data: data, mountID: id,
                            now: { FSTime(nanoseconds: clock.withLock { $0 += 1; return $0 }) })
        try await fs.ensureRoot(uid: 0, gid: 0)
        try await fs.startSession(MountRecord(host: "h", pid: 1, dataVolume: "memory", started: FSTime(nanoseconds: 0)))
        return fs
    }

    func exists(_ store: MetaStore, _ ino: InodeNumber) async throws -> Bool {
        try await store.get("/fs/t/i/" + FSKeys.hex(ino)) != nil
    }

    func testAFileOpenOnOneMountOutlivesAnUnlinkOnAnother() async throws {
        let store = MemoryMetaStore(), data = MemorySliceStore()
        let a = try await mount(store, data, "a"), b = try await mount(store, data, "b")
        let f = try await a.makeNode(root, "f", mode: FileType.regular | 0o644, uid: 0, gid: 0)
        a.opened(f.ino)
        _ = try await a.write(f.ino, offset: 0, bytes: [1, 2, 3])
        try await b.unlink(root, "f")
        // Nobody may remove it before a has looked at the orphans.
        var gone = try await b.collectOrphans()
        XCTAssertEqual(gone, 0)
        try await a.heartbeat()
        try await b.heartbeat()
        gone = try await b.collectOrphans()
        XCTAssertEqual(gone, 0, "a holds the orphan")
        let sessions = try await b.sessions()
        XCTAssertEqual(sessions["a"]?.holding, [f.ino])
        // Still readable and writable on a.
        _ = try await a.write(f.ino, offset: 3, bytes: [4])
        let bytes = try await a.read(f.ino, offset: 0, length: 10)
        XCTAssertEqual(bytes, [1, 2, 3, 4])
        let node = try await a.getattr(f.ino)
        XCTAssertEqual(node.nlink, 0)
        // a's last release removes it (a saw it as an orphan at its heartbeat).
        try await a.released(f.ino)
        let still = try await exists(store, f.ino)
        XCTAssertFalse(still)
        let orphans = try await store.range(prefix: "/fs/t/o/", after: nil, limit: 10)
        XCTAssertTrue(orphans.items.isEmpty)
    }

    func testAnOrphanGoesAtTheNextPassAfterEveryMountLooked() async throws {
        let store = MemoryMetaStore(), data = MemorySliceStore()
        let a = try await mount(store, data, "a"), b = try await mount(store, data, "b")
        let f = try await a.makeNode(root, "f", mode: FileType.regular | 0o644, uid: 0, gid: 0)
        a.opened(f.ino)
        try await b.unlink(root, "f")
        // a closes before its heartbeat saw the orphan: it does not know, a later pass does.
        try await a.released(f.ino)
        var present = try await exists(store, f.ino)
        XCTAssertTrue(present)
        try await a.heartbeat()
        let gone = try await b.collectOrphans()
        XCTAssertEqual(gone, 1)
        present = try await exists(store, f.ino)
        XCTAssertFalse(present)
    }

    func testTheOnlyMountDeletesAtOnceAndAMountStartMakesItCareful() async throws {
        let store = MemoryMetaStore(), data = MemorySliceStore()
        let a = try await mount(store, data, "a")
        let f = try await a.makeNode(root, "f", mode: FileType.regular | 0o644, uid: 0, gid: 0)
        try await a.unlink(root, "f")
        var present = try await exists(store, f.ino)
        XCTAssertFalse(present, "alone and not open: deleted at once")
        // b starts after a last looked: a's next unlink compares the counter, loses,
        // and keeps the inode as an orphan.
        let g = try await a.makeNode(root, "g", mode: FileType.regular | 0o644, uid: 0, gid: 0)
        let b = try await mount(store, data, "b")
        b.opened(g.ino)
        try await a.unlink(root, "g")
        present = try await exists(store, g.ino)
        XCTAssertTrue(present, "another mount exists: the inode stays an orphan")
        let empty = try await b.read(g.ino, offset: 0, length: 1)
        XCTAssertEqual(empty, [])
        // A link to an orphan is refused, as Linux refuses linkat of an unlinked file.
        let e: Int32?
        do { _ = try await b.link(g.ino, root, "back"); e = nil } catch let x as FSError { e = x.errno }
        XCTAssertEqual(e, 2)
    }

    func testADeadMountsHoldEndsWithItsSession() async throws {
        let store = MemoryMetaStore(), data = MemorySliceStore()
        let a = try await mount(store, data, "a"), b = try await mount(store, data, "b")
        let f = try await a.makeNode(root, "f", mode: FileType.regular | 0o644, uid: 0, gid: 0)
        a.opened(f.ino)
        try await b.unlink(root, "f")
        try await a.heartbeat()
        try await b.heartbeat()
        var gone = try await b.collectOrphans()
        XCTAssertEqual(gone, 0)
        // a stops beating (killed): the sweep ends its session, and its hold with it.
        _ = try await b.sweepDeadMounts(monotonicNow: 0)
        let removed = try await b.sweepDeadMounts(monotonicNow: 11_000_000_000)
        XCTAssertEqual(removed, ["a"])
        let present = try await exists(store, f.ino)
        XCTAssertFalse(present)
        gone = try await b.collectOrphans()
        XCTAssertEqual(gone, 0)
    }
}
