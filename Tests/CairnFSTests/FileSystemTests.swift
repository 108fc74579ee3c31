@testable import CairnFS
import CairnCore
import CairnMeta
import XCTest

final class FileSystemTests: XCTestCase {
    let root = FileSystem.rootInode

    func makeFS(_ store: MetaStore = MemoryMetaStore(), _ data: SliceStore = MemorySliceStore()) async throws -> FileSystem {
        let clock = Locked<Int64>(1_000_000_000)
        let fs = FileSystem(store: store, prefix: "/fs/t/", data: data, now: { FSTime(nanoseconds: clock.withLock { $0 += 1; return $0 }) })
        try await fs.ensureRoot(uid: 0, gid: 0)
        return fs
    }

    func file(_ fs: FileSystem, _ name: String, in dir: InodeNumber = FileSystem.rootInode) async throws -> Inode {
        try await fs.makeNode(dir, name, mode: FileType.regular | 0o644, uid: 1, gid: 1)
    }

    func testWriteReadOverwriteAndHoles() async throws {
        let fs = try await makeFS()
        let f = try await file(fs, "a")
        _ = try await fs.write(f.ino, offset: 0, bytes: Array(repeating: 1, count: 10))
        _ = try await fs.write(f.ino, offset: 4, bytes: [9, 9])
        _ = try await fs.write(f.ino, offset: 20, bytes: [7])
        assertEqual(try await fs.getattr(f.ino).size, 21)
        let all = try await fs.read(f.ino, offset: 0, length: 100)
        XCTAssertEqual(all, [1, 1, 1, 1, 9, 9, 1, 1, 1, 1] + Array(repeating: 0, count: 10) + [7])
        assertEqual(try await fs.read(f.ino, offset: 3, length: 3), [1, 9, 9])
        assertEqual(try await fs.read(f.ino, offset: 21, length: 3), [])
    }

    func testTruncateDropsDataAndExtendsWithZeroes() async throws {
        let fs = try await makeFS()
        let f = try await file(fs, "a")
        _ = try await fs.write(f.ino, offset: 0, bytes: [1, 2, 3, 4, 5, 6])
        _ = try await fs.setattr(f.ino, AttributeChanges(size: 2))
        _ = try await fs.setattr(f.ino, AttributeChanges(size: 5))
        assertEqual(try await fs.read(f.ino, offset: 0, length: 10), [1, 2, 0, 0, 0])
    }

    func testSequentialWritesKeepOneSlice() async throws {
        let fs = try await makeFS()
        let f = try await file(fs, "a")
        for i in 0..<50 { _ = try await fs.write(f.ino, offset: UInt64(i * 3), bytes: [1, 2, 3]) }
        assertEqual(try await fs.getattr(f.ino).slices.count, 1)
    }

    func testNamespaceErrors() async throws {
        let fs = try await makeFS()
        let d = try await fs.makeNode(root, "d", mode: FileType.directory | 0o755, uid: 0, gid: 0)
        _ = try await file(fs, "x", in: d.ino)
        await assertErrno(17) { _ = try await self.file(fs, "x", in: d.ino) }
        await assertErrno(39) { try await fs.rmdir(self.root, "d") }
        await assertErrno(21) { try await fs.unlink(self.root, "d") }
        await assertErrno(20) { try await fs.rmdir(d.ino, "x") }
        await assertErrno(2) { _ = try await fs.lookup(self.root, "nope") }
        await assertErrno(22) { try await fs.rename(self.root, "d", d.ino, "inside") }
        assertEqual(try await fs.getattr(root).nlink, 3)
        try await fs.unlink(d.ino, "x")
        try await fs.rmdir(root, "d")
        assertEqual(try await fs.getattr(root).nlink, 2)
        assertEqual(try await fs.readdir(root).map(\.name), [".", ".."])
    }

    func testRenameReplaceNoReplaceExchange() async throws {
        let fs = try await makeFS()
        let a = try await file(fs, "a"), b = try await file(fs, "b")
        await assertErrno(17) { try await fs.rename(self.root, "a", self.root, "b", flags: .noReplace) }
        try await fs.rename(root, "a", root, "b", flags: .exchange)
        assertEqual(try await fs.lookup(root, "a").ino, b.ino)
        assertEqual(try await fs.lookup(root, "b").ino, a.ino)
        try await fs.rename(root, "a", root, "b")
        assertEqual(try await fs.lookup(root, "b").ino, b.ino)
        await assertErrno(2) { _ = try await fs.getattr(a.ino) }
        await assertErrno(2) { _ = try await fs.lookup(self.root, "a") }
    }

    func testRenameDirectoryMovesLinkCountsAndParent() async throws {
        let fs = try await makeFS()
        let d1 = try await fs.makeNode(root, "d1", mode: FileType.directory | 0o755, uid: 0, gid: 0)
        let d2 = try await fs.makeNode(root, "d2", mode: FileType.directory | 0o755, uid: 0, gid: 0)
        try await fs.rename(root, "d1", d2.ino, "d1")
        assertEqual(try await fs.getattr(d2.ino).nlink, 3)
        assertEqual(try await fs.getattr(root).nlink, 3)
        assertEqual(try await fs.getattr(d1.ino).parent, d2.ino)
        assertEqual(try await fs.readdir(d1.ino)[1].entry.ino, d2.ino)
    }

    func testHardLinksKeepTheInodeUntilTheLastName() async throws {
        let fs = try await makeFS()
        let f = try await file(fs, "a")
        _ = try await fs.write(f.ino, offset: 0, bytes: [5])
        assertEqual(try await fs.link(f.ino, root, "b").nlink, 2)
        try await fs.unlink(root, "a")
        assertEqual(try await fs.read(f.ino, offset: 0, length: 1), [5])
        try await fs.unlink(root, "b")
        await assertErrno(2) { _ = try await fs.getattr(f.ino) }
    }

    func testOpenButUnlinkedStaysUntilTheLastRelease() async throws {
        let fs = try await makeFS()
        let f = try await file(fs, "a")
        fs.opened(f.ino)
        fs.opened(f.ino)
        _ = try await fs.write(f.ino, offset: 0, bytes: [1, 2, 3])
        try await fs.unlink(root, "a")
        await assertErrno(2) { _ = try await fs.lookup(self.root, "a") }
        _ = try await fs.write(f.ino, offset: 3, bytes: [4])
        assertEqual(try await fs.read(f.ino, offset: 0, length: 10), [1, 2, 3, 4])
        assertEqual(try await fs.getattr(f.ino).nlink, 0)
        try await fs.released(f.ino)
        assertEqual(try await fs.getattr(f.ino).size, 4)
        try await fs.released(f.ino)
        await assertErrno(2) { _ = try await fs.getattr(f.ino) }
        let orphans = try await fs.store.range(prefix: "/fs/t/o/", after: nil, limit: 10)
        XCTAssertTrue(orphans.items.isEmpty)
    }

    func testXattrsAndSymlinks() async throws {
        let fs = try await makeFS()
        let f = try await file(fs, "a")
        try await fs.setxattr(f.ino, "user.k", [1, 2], flags: [])
        await assertErrno(17) { try await fs.setxattr(f.ino, "user.k", [3], flags: .create) }
        await assertErrno(61) { try await fs.setxattr(f.ino, "user.z", [3], flags: .replace) }
        assertEqual(try await fs.getxattr(f.ino, "user.k"), [1, 2])
        assertEqual(try await fs.listxattr(f.ino), ["user.k"])
        try await fs.removexattr(f.ino, "user.k")
        await assertErrno(61) { _ = try await fs.getxattr(f.ino, "user.k") }
        let l = try await fs.makeNode(root, "l", mode: FileType.symlink | 0o777, uid: 0, gid: 0, target: "a/b")
        assertEqual(try await fs.readlink(l.ino), "a/b")
        XCTAssertEqual(l.size, 3)
    }

    /// Two mounts (two FileSystem objects on one store) see each other's names and data
    /// and their concurrent writes to different ranges of one file all land.
    func testTwoMountsShareOneNamespace() async throws {
        let store = MemoryMetaStore(), data = MemorySliceStore()
        let m1 = try await makeFS(store, data), m2 = try await makeFS(store, data)
        let f = try await file(m1, "shared")
        try await withThrowingTaskGroup(of: Void.self) { g in
            for i in 0..<16 {
                let m = i % 2 == 0 ? m1 : m2
                g.addTask { _ = try await m.write(f.ino, offset: UInt64(i * 4), bytes: Array(repeating: UInt8(i + 1), count: 4)) }
            }
            try await g.waitForAll()
        }
        let expected = (0..<16).flatMap { Array(repeating: UInt8($0 + 1), count: 4) }
        assertEqual(try await m2.read(try await m2.lookup(root, "shared").ino, offset: 0, length: 64), expected)
        try await m2.rename(root, "shared", root, "moved")
        await assertErrno(2) { _ = try await m1.lookup(self.root, "shared") }
        assertEqual(try await m1.lookup(root, "moved").ino, f.ino)
    }

    /// A create racing an rmdir of its directory: either the create fails or the rmdir
    /// does; never an entry under a removed directory.
    func testCreateRacingRmdirNeverOrphans() async throws {
        let store = MemoryMetaStore()
        let m1 = try await makeFS(store), m2 = try await makeFS(store)
        for round in 0..<20 {
            let d = try await m1.makeNode(root, "d\(round)", mode: FileType.directory | 0o755, uid: 0, gid: 0)
            async let made: Inode? = try? await m2.makeNode(d.ino, "f", mode: FileType.regular | 0o644, uid: 0, gid: 0)
            async let removed: Void? = try? await m1.rmdir(root, "d\(round)")
            let (createdNode, removedDir) = await (made, removed)
            XCTAssertFalse(createdNode != nil && removedDir != nil, "both the create and the rmdir succeeded")
            let leftovers = try await store.range(prefix: FSKeys(prefix: "/fs/t/").entries(d.ino), after: nil, limit: 10)
            if removedDir != nil { XCTAssertTrue(leftovers.items.isEmpty) }
        }
    }

    func testSliceMapCutsAndMerges() {
        let a = Slice(fileOffset: 0, length: 10, volume: "v", volumeOffset: 100)
        let b = Slice(fileOffset: 3, length: 2, volume: "w", volumeOffset: 0)
        let m = SliceMap.write([a], b)
        XCTAssertEqual(m, [Slice(fileOffset: 0, length: 3, volume: "v", volumeOffset: 100), b,
                           Slice(fileOffset: 5, length: 5, volume: "v", volumeOffset: 105)])
        XCTAssertEqual(SliceMap.truncate(m, size: 4), [Slice(fileOffset: 0, length: 3, volume: "v", volumeOffset: 100),
                                                      Slice(fileOffset: 3, length: 1, volume: "w", volumeOffset: 0)])
        let c = Slice(fileOffset: 10, length: 4, volume: "v", volumeOffset: 110)
        XCTAssertEqual(SliceMap.write([a], c), [Slice(fileOffset: 0, length: 14, volume: "v", volumeOffset: 100)])
    }

    /// XCTAssertEqual's autoclosures cannot await: the values are computed first here.
    func assertEqual<T: Equatable>(_ a: T, _ b: T, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a, b, file: file, line: line)
    }

    func assertErrno(_ expected: Int32, file: StaticString = #filePath, line: UInt = #line, _ body: () async throws -> Void) async {
        do {
            try await body()
            XCTFail("expected errno \(expected)", file: file, line: line)
        } catch let e as FSError {
            XCTAssertEqual(e.errno, expected, "\(e)", file: file, line: line)
        } catch {
            XCTFail("unexpected \(error)", file: file, line: line)
        }
    }
}
