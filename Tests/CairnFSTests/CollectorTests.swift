@testable import CairnFS
import CairnCore
import CairnMeta
import XCTest

/// Garbage collection of slices and data volumes (Collector.swift, OwnVolume.swift).
final class CollectorTests: XCTestCase {
    let root = FileSystem.rootInode
    let second: UInt64 = 1_000_000_000

    func mount(_ store: MetaStore, _ data: MemorySliceStore, _ id: String) async throws -> FileSystem {
        let clock = Locked<Int64>(1_000_000_000)
        let fs = FileSystem(store: store, prefix: "/fs/t/", data: data, mountID: id,
                            now: { FSTime(nanoseconds: clock.withLock { $0 += 1; return $0 }) })
        try await fs.ensureRoot(uid: 0, gid: 0)
        try await fs.startSession(MountRecord(host: "h", pid: 1, dataVolume: data.volume, started: FSTime(nanoseconds: 0)))
        return fs
    }

    func file(_ fs: FileSystem, _ name: String, _ bytes: [UInt8]) async throws -> Inode {
        let f = try await fs.makeNode(root, name, mode: FileType.regular | 0o644, uid: 0, gid: 0)
        _ = try await fs.write(f.ino, offset: 0, bytes: bytes)
        return f
    }

    func testGarbageIsWholeUnreferencedBlocksInPieces() {
        let g = Collector.garbage(below: 40 << 20, referenced: [100..<5000, 8192..<8193])
        XCTAssertEqual(g.first?.lowerBound, 12288, "blocks touched by a reference stay; [0, 4096) is touched too")
        XCTAssertTrue(g.allSatisfy { $0.count <= 16 << 20 && $0.lowerBound % 4096 == 0 && $0.upperBound % 4096 == 0 })
        XCTAssertEqual(g.reduce(0) { $0 + $1.count }, (40 << 20) - 12288)
        XCTAssertEqual(Collector.garbage(below: 20480, referenced: [], excluding: [0..<8192]), [8192..<20480])
    }

    func testAMountTrimsItsOwnGarbageBelowTheMarkOnly() async throws {
        let store = MemoryMetaStore(), data = MemorySliceStore(volume: "va")
        let a = try await mount(store, data, "a")
        let x = try await file(a, "x", Array(repeating: 1, count: 8192))    // va [0, 8192)
        _ = try await a.write(x.ino, offset: 0, bytes: Array(repeating: 2, count: 4096))  // va [8192, 12288)
        _ = try await file(a, "y", Array(repeating: 3, count: 4096))        // va [12288, 16384)
        try await a.unlink(root, "y")
        // A store in flight: its slice is appended, its map commit not done.
        let storing = a.beginStore()
        _ = try await data.append(Array(repeating: 4, count: 4096))        // va [16384, 20480)
        a.noteAppendMark(monotonicNow: 0)
        var trimmed = try await a.collectOwnVolume(monotonicNow: 10 * second, grace: .seconds(30))
        XCTAssertEqual(trimmed, 0, "no mark is old enough yet")
        trimmed = try await a.collectOwnVolume(monotonicNow: 30 * second, grace: .seconds(30))
        XCTAssertEqual(trimmed, 8192, "x's overwritten half and y; not the store in flight")
        let zeroes = try await data.readBytes(volume: "va", offset: 0, length: 4096)
        XCTAssertEqual(zeroes, Array(repeating: 0, count: 4096))
        let pending = try await data.readBytes(volume: "va", offset: 16384, length: 4096)
        XCTAssertEqual(pending, Array(repeating: 4, count: 4096))
        let xBytes = try await a.read(x.ino, offset: 0, length: 8192)
        XCTAssertEqual(xBytes, Array(repeating: 2, count: 4096) + Array(repeating: 1, count: 4096))
        a.endStore(storing)
        a.noteAppendMark(monotonicNow: 31 * second)
        trimmed = try await a.collectOwnVolume(monotonicNow: 61 * second, grace: .seconds(30))
        XCTAssertEqual(trimmed, 4096, "the abandoned slice, once its store ended; nothing twice")
    }

    func testEndedMountsVolumeIsTrimmedWhileReferencedAndDeletedAfter() async throws {
        let store = MemoryMetaStore(), va = MemorySliceStore(volume: "va")
        let vb = MemorySliceStore(volume: "vb", sharing: va)
        let a = try await mount(store, va, "a"), b = try await mount(store, vb, "b")
        _ = try await file(a, "kept", Array(repeating: 1, count: 4096))
        _ = try await file(a, "gone", Array(repeating: 2, count: 8192))
        try await a.endSession()
        try await b.unlink(root, "gone")
        _ = try await b.collectOrphans()
        let collector = Collector(store: store, prefix: "/fs/t/", admin: va)
        var report = try await collector.collectEnded { _ in 1 << 20 }
        XCTAssertEqual(report.retired, ["va"])
        XCTAssertEqual(report.deleted, [])
        XCTAssertEqual(report.kept, ["va": 4096])
        XCTAssertEqual(report.trimmedBytes, (1 << 20) - 4096)
        let kept = try await b.read(try await b.lookup(root, "kept").ino, offset: 0, length: 4096)
        XCTAssertEqual(kept, Array(repeating: 1, count: 4096))
        try await b.unlink(root, "kept")
        report = try await collector.collectEnded { _ in 1 << 20 }
        XCTAssertEqual(report.retired, [])
        XCTAssertEqual(report.deleted, ["va"])
        XCTAssertFalse(va.volumeNames.contains("va"))
        let records = try await store.rangeAll(prefix: "/fs/t/v/")
        XCTAssertEqual(records.map(\.key), ["/fs/t/v/b"], "the live mount's volume is never retired")
    }

    func testAMountTakenForDeadCannotReferenceItsRetiredVolume() async throws {
        let store = MemoryMetaStore(), va = MemorySliceStore(volume: "va")
        let vb = MemorySliceStore(volume: "vb", sharing: va)
        let a = try await mount(store, va, "a"), b = try await mount(store, vb, "b")
        let f = try await file(a, "f", [1])
        _ = try await b.sweepDeadMounts(monotonicNow: 0)
        let dead = try await b.sweepDeadMounts(monotonicNow: 11 * second)
        XCTAssertEqual(dead, ["a"])
        let report = try await Collector(store: store, prefix: "/fs/t/", admin: va).collectEnded { _ in 4096 }
        XCTAssertEqual(report.retired, ["va"])
        // a was only slow: its next store appends, but the map commit is refused.
        var errno: Int32?
        do { _ = try await a.write(f.ino, offset: 0, bytes: [9]) } catch let e as FSError { errno = e.errno }
        XCTAssertEqual(errno, 5)
        let bytes = try await b.read(f.ino, offset: 0, length: 1)
        XCTAssertEqual(bytes, [1])
    }
}
