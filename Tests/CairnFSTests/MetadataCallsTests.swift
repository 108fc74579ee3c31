@testable import CairnFS
import CairnCore
import CairnMeta
import XCTest

/// A MetaStore that counts the calls made to it, so a test sees an operation's round
/// trips to the store (each one an HTTP call through a real mount's RemoteMetaStore).
final class CountingMetaStore: MetaStore, @unchecked Sendable {
    let inner: MetaStore
    let calls = Locked<Int>(0)
    init(_ inner: MetaStore) { self.inner = inner }

    func get(_ key: String) async throws -> KeyValue? { calls.withLock { $0 += 1 }; return try await inner.get(key) }
    func getMany(_ keys: [String]) async throws -> [KeyValue?] { calls.withLock { $0 += 1 }; return try await inner.getMany(keys) }
    func range(prefix: String, after: String?, limit: Int) async throws -> RangePage {
        calls.withLock { $0 += 1 }; return try await inner.range(prefix: prefix, after: after, limit: limit)
    }
    func txn(compare: [TxnCompare], success: [TxnOp], failure: [TxnOp]) async throws -> TxnResult {
        calls.withLock { $0 += 1 }; return try await inner.txn(compare: compare, success: success, failure: failure)
    }
    func currentRevision() async throws -> Int64 { calls.withLock { $0 += 1 }; return try await inner.currentRevision() }
    func watch(prefix: String, afterRevision: Int64, timeout: Duration) async throws -> [WatchEvent] {
        calls.withLock { $0 += 1 }; return try await inner.watch(prefix: prefix, afterRevision: afterRevision, timeout: timeout)
    }
    func close() async throws { try await inner.close() }

    /// The calls `body` made.
    func count(_ body: () async throws -> Void) async rethrows -> Int {
        let before = calls.snapshot
        try await body()
        return calls.snapshot - before
    }
}

/// How many store calls the operations take, and that fewer calls change no answer.
extension FileSystemTests {
    /// A lookup of a name this mount has seen is one store call (entry and inode
    /// together); a create and an unlink are one read and one transaction.
    func testOperationsTakeOneReadAndOneTransaction() async throws {
        let store = CountingMetaStore(MemoryMetaStore())
        let fs = try await makeFS(store, MemorySliceStore())
        _ = try await file(fs, "first")  // reserves inode numbers
        try await fs.unlink(root, "first")  // reads which mounts exist, once
        var made: Inode?
        let create = try await store.count { made = try await self.file(fs, "a") }
        XCTAssertEqual(create, 2)
        var seen: Inode?
        let lookup = try await store.count { seen = try await fs.lookup(self.root, "a") }
        XCTAssertEqual(lookup, 1)
        XCTAssertEqual(seen?.ino, made?.ino)
        let unlink = try await store.count { try await fs.unlink(self.root, "a") }
        XCTAssertEqual(unlink, 2)
        await assertErrno(2) { _ = try await fs.lookup(self.root, "a") }
    }

    /// The hint only chooses what to read: a name another mount replaced, changed or
    /// removed is seen at once, exactly as without hints.
    func testLookupSeesOtherMountsChangesAtOnce() async throws {
        let shared = MemoryMetaStore(), data = MemorySliceStore()
        let m1 = try await makeFS(shared, data), m2 = try await makeFS(shared, data)
        let a = try await file(m1, "a")
        assertEqual(try await m1.lookup(root, "a").ino, a.ino)
        // Replaced by another inode (rename over it) on the other mount.
        let b = try await file(m2, "b")
        _ = try await m2.write(b.ino, offset: 0, bytes: [7, 7, 7])
        try await m2.rename(root, "b", root, "a")
        let replaced = try await m1.lookup(root, "a")
        XCTAssertEqual(replaced.ino, b.ino)
        XCTAssertEqual(replaced.size, 3)
        // Changed attributes of the same inode.
        _ = try await m2.setattr(b.ino, AttributeChanges(mode: 0o600))
        assertEqual(try await m1.lookup(root, "a").mode & 0o7777, 0o600)
        // Removed, then a directory under the same name.
        try await m2.unlink(root, "a")
        await assertErrno(2) { _ = try await m1.lookup(self.root, "a") }
        let d = try await m2.makeNode(root, "a", mode: FileType.directory | 0o755, uid: 0, gid: 0)
        let dir = try await m1.lookup(root, "a")
        XCTAssertEqual(dir.ino, d.ino)
        XCTAssertTrue(dir.isDirectory)
        // An unlink through a stale hint removes the right inode.
        try await m2.rmdir(root, "a")
        let c = try await file(m2, "a")
        try await m1.unlink(root, "a")
        await assertErrno(2) { _ = try await m2.getattr(c.ino) }
    }

    /// getattrs: many inodes in order, nil for one that is gone, more than one getMany's worth.
    func testGetattrsInBatches() async throws {
        let store = CountingMetaStore(MemoryMetaStore())
        let fs = try await makeFS(store, MemorySliceStore())
        var inos: [InodeNumber] = []
        for i in 0..<(MetaLimits.getManyKeysMax + 6) { inos.append(try await file(fs, "f\(i)").ino) }
        try await fs.unlink(root, "f3")
        var nodes: [Inode?] = []
        let calls = try await store.count { nodes = try await fs.getattrs(inos) }
        XCTAssertEqual(calls, 2)
        XCTAssertEqual(nodes.map { $0?.ino }, inos.enumerated().map { $0.offset == 3 ? nil : $0.element })
    }
}
