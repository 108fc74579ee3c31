@testable import CairnFS
import CairnCore
import CairnMeta
import XCTest

/// A store whose watches can be held back (so changes pile up behind a watcher) and
/// whose calls are counted.
final class GatedWatchStore: MetaStore, @unchecked Sendable {
    let inner: MetaStore
    let watchesHeld = Locked<Bool>(false)
    let counting: CountingMetaStore
    init(_ inner: MetaStore) { self.inner = inner; counting = CountingMetaStore(inner) }

    func get(_ key: String) async throws -> KeyValue? { try await counting.get(key) }
    func getMany(_ keys: [String]) async throws -> [KeyValue?] { try await counting.getMany(keys) }
    func range(prefix: String, after: String?, limit: Int) async throws -> RangePage {
        try await counting.range(prefix: prefix, after: after, limit: limit)
    }
    func txn(compare: [TxnCompare], success: [TxnOp], failure: [TxnOp]) async throws -> TxnResult {
        try await counting.txn(compare: compare, success: success, failure: failure)
    }
    func currentRevision() async throws -> Int64 { try await inner.currentRevision() }
    func watch(prefix: String, afterRevision: Int64, timeout: Duration) async throws -> [WatchEvent] {
        while watchesHeld.snapshot { try await Task.sleep(for: .milliseconds(5)) }
        return try await inner.watch(prefix: prefix, afterRevision: afterRevision, timeout: min(timeout, .milliseconds(200)))
    }
    func close() async throws { try await inner.close() }
}

/// One mount with a metadata cache and its watcher, recording what it would tell the kernel.
final class CachedMount: @unchecked Sendable {
    let fs: FileSystem
    let store: GatedWatchStore
    let told = Locked<[CacheInvalidation]>([])
    var watcher: Task<Void, Never>?

    init(_ shared: MetaStore, _ data: MemorySliceStore, id: String) async throws {
        store = GatedWatchStore(shared)
        let clock = Locked<Int64>(1_000_000_000)
        fs = FileSystem(store: store, prefix: "/fs/t/", data: MemorySliceStore(volume: "v-\(id)", sharing: data), mountID: id,
                        caching: true, now: { FSTime(nanoseconds: clock.withLock { $0 += 1; return $0 }) })
        try await fs.ensureRoot(uid: 0, gid: 0)
        let told = self.told
        fs.setInvalidationHandler { items in told.withLock { $0 += items } }
        let fs = self.fs
        watcher = Task { await fs.runCacheWatcher() }
        // The watcher's first pass makes the cache valid.
        try await eventually("the cache to start") { fs.cache!.isValid }
    }

    deinit { watcher?.cancel() }

    /// Store calls `body` makes.
    func calls(_ body: () async throws -> Void) async rethrows -> Int { try await store.counting.count(body) }
}

/// Polls `condition` for up to 10 s (a correctness bound for a watch, not a speed check).
func eventually(_ what: String, _ condition: () async throws -> Bool) async throws {
    for _ in 0..<1000 {
        if try await condition() { return }
        try await Task.sleep(for: .milliseconds(10))
    }
    XCTFail("timed out waiting for \(what)")
}

final class MetaCacheTests: XCTestCase {
    let root = FileSystem.rootInode

    func file(_ fs: FileSystem, _ name: String) async throws -> Inode {
        try await fs.makeNode(root, name, mode: FileType.regular | 0o644, uid: 1, gid: 1)
    }

    /// A mount's own commits go into its cache: after them, stat, lookup and read of
    /// what it wrote ask the store nothing, and read-after-write holds.
    func testOwnCommitsUpdateTheCache() async throws {
        let m = try await CachedMount(MemoryMetaStore(), MemorySliceStore(), id: "m1")
        let f = try await file(m.fs, "a")
        _ = try await m.fs.write(f.ino, offset: 0, bytes: [1, 2, 3])
        try await m.fs.flush(f.ino)
        _ = try await m.fs.setattr(f.ino, AttributeChanges(mode: 0o600))
        var seen: Inode?
        var bytes: [UInt8] = []
        let calls = try await m.calls {
            seen = try await m.fs.lookup(self.root, "a")
            _ = try await m.fs.getattr(f.ino)
            bytes = try await m.fs.read(f.ino, offset: 0, length: 10)
        }
        XCTAssertEqual(calls, 0)
        XCTAssertEqual(seen?.mode, FileType.regular | 0o600)
        XCTAssertEqual(seen?.size, 3)
        XCTAssertEqual(bytes, [1, 2, 3])
        // A create reads nothing first (the directory is cached, the new name assumed
        // absent): one transaction.
        let create = try await m.calls { _ = try await self.file(m.fs, "b") }
        XCTAssertEqual(create, 1)
        try await m.fs.rename(root, "b", root, "c")
        await assertErrnoAsync(2) { _ = try await m.fs.lookup(self.root, "b") }
        let c = try await m.calls { _ = try await m.fs.lookup(self.root, "c") }
        XCTAssertEqual(c, 0)
        // Nothing of its own is told to the kernel.
        try await Task.sleep(for: .milliseconds(300))
        XCTAssertEqual(m.told.snapshot, [])
    }

    /// Another mount's changes reach this mount's cache through the watch, and what the
    /// kernel must forget is told: a chmod, a write, a rename and an unlink.
    func testOtherMountsChangesArriveThroughTheWatch() async throws {
        let shared = MemoryMetaStore(), data = MemorySliceStore()
        let m1 = try await CachedMount(shared, data, id: "m1"), m2 = try await CachedMount(shared, data, id: "m2")
        let f = try await file(m1.fs, "a")
        _ = try await file(m1.fs, "gone")
        assertEqual(try await m2.fs.lookup(root, "a").mode, FileType.regular | 0o644)
        _ = try await m2.fs.lookup(root, "gone")
        _ = try await m1.fs.setattr(f.ino, AttributeChanges(mode: 0o600))
        _ = try await m1.fs.write(f.ino, offset: 0, bytes: [7, 7])
        try await m1.fs.flush(f.ino)
        try await m1.fs.rename(root, "a", root, "b")
        try await m1.fs.unlink(root, "gone")
        // The unlink was the last change: once the watch told it, it applied all of them.
        try await eventually("the watch to bring the unlink") { m2.told.snapshot.contains(.entry(parent: self.root, name: "gone")) }
        var found: Inode?
        let lookupCalls = try await m2.calls { found = try await m2.fs.lookup(self.root, "b") }
        XCTAssertEqual(lookupCalls, 0)
        XCTAssertEqual(found?.ino, f.ino)
        var mode: UInt32 = 0
        let node = try await m2.calls { mode = try await m2.fs.getattr(f.ino).mode }
        XCTAssertEqual(node, 0)
        XCTAssertEqual(mode, FileType.regular | 0o600)
        assertEqual(try await m2.fs.read(f.ino, offset: 0, length: 5), [7, 7])
        await assertErrnoAsync(2) { _ = try await m2.fs.lookup(self.root, "a") }
        await assertErrnoAsync(2) { _ = try await m2.fs.lookup(self.root, "gone") }
        let told = m2.told.snapshot
        XCTAssertTrue(told.contains(.inode(f.ino, data: true)), "\(told)")
        XCTAssertTrue(told.contains(.entry(parent: root, name: "a")), "\(told)")
        XCTAssertTrue(told.contains(.entry(parent: root, name: "b")), "\(told)")
        XCTAssertTrue(told.contains(.entry(parent: root, name: "gone")), "\(told)")
        XCTAssertTrue(told.contains(.inode(root, data: true)) || told.contains(.inode(root, data: false)), "\(told)")
        XCTAssertEqual(m1.told.snapshot, [])
    }

    /// A watch whose changes were compacted away empties the cache, the kernel is told
    /// to forget everything, and the cache starts again from the store.
    func testCompactedWatchResyncs() async throws {
        let shared = MemoryMetaStore(changelogRevisionsKept: 5), data = MemorySliceStore()
        let m1 = try await CachedMount(shared, data, id: "m1"), m2 = try await CachedMount(shared, data, id: "m2")
        let f = try await file(m1.fs, "a")
        assertEqual(try await m2.fs.getattr(f.ino).mode, FileType.regular | 0o644)
        m2.store.watchesHeld.withLock { $0 = true }
        try await Task.sleep(for: .milliseconds(300))  // any watch in flight ends (200 ms)
        for mode: UInt32 in [0o600, 0o640, 0o604, 0o660, 0o606, 0o666, 0o700, 0o744] {
            _ = try await m1.fs.setattr(f.ino, AttributeChanges(mode: mode))
        }
        m2.store.watchesHeld.withLock { $0 = false }
        try await eventually("m2's cache to resync") { m2.fs.cacheCounters!.clears >= 1 && m2.fs.cache!.isValid }
        XCTAssertTrue(m2.told.snapshot.contains(.all))
        assertEqual(try await m2.fs.getattr(f.ino).mode, FileType.regular | 0o744)
        // And it follows changes again.
        _ = try await m1.fs.setattr(f.ino, AttributeChanges(mode: 0o755))
        try await eventually("m2 to see the change after the resync") {
            var mode: UInt32 = 0
            let calls = try await m2.calls { mode = try await m2.fs.getattr(f.ino).mode }
            return calls == 0 && mode == FileType.regular | 0o755
        }
    }

    /// Answers never rest on a stale cache: with the watch held back, a name another
    /// mount removed is not unlinked twice, one it created is not created again, and
    /// open (revalidate) reads the store.
    func testStaleCacheNeverGivesAWrongAnswer() async throws {
        let shared = MemoryMetaStore(), data = MemorySliceStore()
        let m1 = try await CachedMount(shared, data, id: "m1"), m2 = try await CachedMount(shared, data, id: "m2")
        let f = try await file(m1.fs, "a")
        _ = try await m2.fs.lookup(root, "a")
        m2.store.watchesHeld.withLock { $0 = true }
        try await Task.sleep(for: .milliseconds(300))
        try await m1.fs.unlink(root, "a")
        _ = try await file(m1.fs, "new")
        let g = try await file(m1.fs, "grown")
        _ = try await m2.fs.getattr(g.ino)
        _ = try await m1.fs.write(g.ino, offset: 0, bytes: [1, 2, 3, 4])
        try await m1.fs.flush(g.ino)
        await assertErrnoAsync(2) { try await m2.fs.unlink(self.root, "a") }
        await assertErrnoAsync(17) { _ = try await self.file(m2.fs, "new") }
        assertEqual(try await m2.fs.revalidate(g.ino).size, 4)
        assertEqual(try await m2.fs.read(g.ino, offset: 0, length: 10), [1, 2, 3, 4])
        await assertErrnoAsync(2) { _ = try await m2.fs.revalidate(f.ino) }
        m2.store.watchesHeld.withLock { $0 = false }
    }

    func assertEqual<T: Equatable>(_ a: T, _ b: T, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a, b, file: file, line: line)
    }

    func assertErrnoAsync(_ expected: Int32, file: StaticString = #filePath, line: UInt = #line,
                          _ body: () async throws -> Void) async {
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
