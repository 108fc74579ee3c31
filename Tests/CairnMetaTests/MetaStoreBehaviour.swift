// The behaviour every MetaStore backend must have, written once. Each backend's test
// class calls these with its own factory (an etcd backend will do the same), one test
// method per behaviour. The methods are listed in each class rather than inherited from
// a base class because XCTest's test discovery on Linux does not run inherited tests.
import CairnCore
import CairnMeta
import XCTest

struct MetaStoreBehaviour {
    /// Returns a fresh, empty store.
    let makeStore: () async throws -> any MetaStore
    /// Whether a fresh store is at revision 0 (the embedded backends). etcd's revision is
    /// cluster-wide, so there every revision is checked relative to the store's first one.
    var startsAtZero = true

    private func withStore(_ body: (any MetaStore) async throws -> Void) async throws {
        let store = try await makeStore()
        do {
            try await body(store)
        } catch {
            try? await store.close()
            throw error
        }
        try await store.close()
    }

    func putAndGet() async throws {
        try await withStore { store in
            let base = try await store.currentRevision()
            let nothing = try await store.get("/k")
            XCTAssertNil(nothing)
            try await put(store, "/k", [1, 2, 3])
            try await put(store, "/empty", [])
            let kv = try await store.get("/k")
            XCTAssertEqual(kv, KeyValue(key: "/k", value: [1, 2, 3], createRevision: base + 1, modRevision: base + 1, version: 1))
            try await put(store, "/k", [4])
            let again = try await store.get("/k")
            XCTAssertEqual(again, KeyValue(key: "/k", value: [4], createRevision: base + 1, modRevision: base + 3, version: 2))
            let empty = try await store.get("/empty")
            XCTAssertEqual(empty?.value, [])
        }
    }

    /// getMany answers in the order asked, nil for absent keys, with the same records as get.
    func getManyAnswersInOrder() async throws {
        try await withStore { store in
            try await put(store, "/gm/a", [1])
            try await put(store, "/gm/b", [2, 2])
            let kvs = try await store.getMany(["/gm/b", "/gm/none", "/gm/a", "/gm/b"])
            let a = try await store.get("/gm/a"), b = try await store.get("/gm/b")
            XCTAssertEqual(kvs, [b, nil, a, b])
            let none = try await store.getMany([])
            XCTAssertEqual(none, [])
            let invalid: (CairnError) -> Bool = { if case .invalidArgument = $0 { return true } else { return false } }
            await assertThrows(invalid) { _ = try await store.getMany(["/gm/a", ""]) }
            let tooMany = (0...MetaLimits.getManyKeysMax).map { "/gm/\($0)" }
            await assertThrows(invalid) { _ = try await store.getMany(tooMany) }
        }
    }

    func revisionGrowsByOnePerChangingTxn() async throws {
        try await withStore { store in
            let base = try await store.currentRevision()
            if startsAtZero { XCTAssertEqual(base, 0) }
            for i in 1...5 {
                let result = try await store.txn(compare: [], success: [.put(key: "/a\(i)", value: [1]), .put(key: "/b\(i)", value: [2])], failure: [])
                XCTAssertEqual(result, TxnResult(succeeded: true, revision: base + Int64(i)))
                let revision = try await store.currentRevision()
                XCTAssertEqual(revision, base + Int64(i))
            }
            let a1 = try await store.get("/a1"), b1 = try await store.get("/b1")
            XCTAssertEqual(a1?.modRevision, b1?.modRevision, "one revision for the whole txn")
            // A txn that changes nothing keeps the revision, like etcd.
            let noop = try await store.txn(compare: [], success: [.delete(key: "/missing")], failure: [])
            XCTAssertEqual(noop, TxnResult(succeeded: true, revision: base + 5))
        }
    }

    func modRevisionCompareChoosesBranch() async throws {
        try await withStore { store in
            let base = try await store.currentRevision()
            try await put(store, "/k", [1])
            let stale = try await store.txn(compare: [.modRevision(key: "/k", equals: base + 7)],
                                            success: [.put(key: "/k", value: [2])],
                                            failure: [.put(key: "/lost", value: [9])])
            XCTAssertEqual(stale, TxnResult(succeeded: false, revision: base + 2), "failure ops applied")
            let k = try await store.get("/k"), lost = try await store.get("/lost")
            XCTAssertEqual(k?.value, [1])
            XCTAssertEqual(lost?.value, [9])
            let fresh = try await store.txn(compare: [.modRevision(key: "/k", equals: base + 1), .valueEquals(key: "/k", value: [1])],
                                            success: [.put(key: "/k", value: [2])], failure: [])
            XCTAssertEqual(fresh, TxnResult(succeeded: true, revision: base + 3))
            let wrongValue = try await store.txn(compare: [.valueEquals(key: "/k", value: [1])],
                                                 success: [.put(key: "/k", value: [3])], failure: [])
            XCTAssertEqual(wrongValue, TxnResult(succeeded: false, revision: base + 3))
            let absentValue = try await store.txn(compare: [.valueEquals(key: "/none", value: [])],
                                                  success: [.put(key: "/k", value: [3])], failure: [])
            XCTAssertFalse(absentValue.succeeded)
        }
    }

    func createOnlyWithModRevisionZero() async throws {
        try await withStore { store in
            let create: [TxnCompare] = [.modRevision(key: "/lock", equals: 0)]
            let first = try await store.txn(compare: create, success: [.put(key: "/lock", value: [1])], failure: [])
            let second = try await store.txn(compare: create, success: [.put(key: "/lock", value: [2])], failure: [])
            XCTAssertTrue(first.succeeded)
            XCTAssertFalse(second.succeeded)
            let lock = try await store.get("/lock")
            XCTAssertEqual(lock?.value, [1])
        }
    }

    func deleteAndDeletePrefix() async throws {
        try await withStore { store in
            let base = try await store.currentRevision()
            for key in ["/a/1", "/a/2", "/a/x/3", "/ab", "/b"] { try await put(store, key, [0]) }
            let deleted = try await store.txn(compare: [], success: [.delete(key: "/b")], failure: [])
            XCTAssertEqual(deleted.revision, base + 6)
            let b = try await store.get("/b")
            XCTAssertNil(b)
            _ = try await store.txn(compare: [], success: [.deletePrefix("/a/")], failure: [])
            let left = try await store.rangeAll(prefix: "").map(\.key)
            XCTAssertEqual(left, ["/ab"])
            // Recreated after a delete: version and createRevision start over.
            try await put(store, "/b", [1])
            let recreated = try await store.get("/b")
            XCTAssertEqual(recreated?.version, 1)
            XCTAssertEqual(recreated?.createRevision, base + 8)
        }
    }

    func rangePagesWithoutLeakingNeighbours() async throws {
        try await withStore { store in
            let keys = (0..<2500).map { String(format: "/a/%05d", $0) }
            try await putKeys(store, keys)
            for key in ["/a", "/ab", "/a0", "/b/1", "/"] { try await put(store, key, [2]) }
            var seen: [String] = []
            var after: String?
            var pages = 0
            while true {
                let page = try await store.range(prefix: "/a/", after: after, limit: 700)
                pages += 1
                seen += page.items.map(\.key)
                XCTAssertLessThanOrEqual(page.items.count, 700)
                guard page.more else { break }
                after = page.items.last?.key
            }
            XCTAssertEqual(pages, 4)
            XCTAssertEqual(seen, keys)
            let all = try await store.rangeAll(prefix: "/a/")
            XCTAssertEqual(all.count, 2500)
            let exact = try await store.range(prefix: "/a/", after: nil, limit: 2500)
            XCTAssertFalse(exact.more)
            let tail = try await store.range(prefix: "/a/", after: "/a/02498", limit: 10)
            XCTAssertEqual(tail.items.map(\.key), ["/a/02499"])
            XCTAssertFalse(tail.more)
            let ab = try await store.range(prefix: "/ab", after: nil, limit: 10)
            XCTAssertEqual(ab.items.map(\.key), ["/ab"])
            let revision = try await store.currentRevision()
            XCTAssertEqual(ab.revision, revision)
        }
    }

    func concurrentUpdatesAllLand() async throws {
        try await withStore { store in
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<20 {
                    group.addTask {
                        try await store.update(key: "/counter", retries: 100) { (n: Int?) in (n ?? 0) + 1 }
                    }
                }
                try await group.waitForAll()
            }
            let counter = try await store.getJSON("/counter", as: Int.self)
            XCTAssertEqual(counter?.0, 20)
            // A nil result deletes the key.
            try await store.update(key: "/counter", retries: 1) { (_: Int?) in nil }
            let gone = try await store.get("/counter")
            XCTAssertNil(gone)
        }
    }

    func updateGivesUpWithConflict() async throws {
        try await withStore { base in
            let store = RacingMetaStore(base: base)
            await assertThrows({ $0 == .conflict("update of /hot lost the race 3 times") }) {
                try await store.update(key: "/hot", retries: 3) { (n: Int?) in (n ?? 0) + 1 }
            }
            let hot = try await store.getJSON("/hot", as: Int.self)
            XCTAssertEqual(hot?.0, 3, "only the racer's writes landed")
        }
    }

    func watchReturnsWholeRevisions() async throws {
        try await withStore { store in
            let batch = MetaLimits.txnOpsMax
            let base = try await store.currentRevision()
            try await putKeys(store, (0..<2500).map { String(format: "/r/%05d", $0) })
            let first = try await store.watch(prefix: "/r/", afterRevision: base, timeout: .zero)
            let revisions = MetaLimits.watchEventsMax / batch
            XCTAssertEqual(first.count, revisions * batch, "cut at the last whole revision")
            XCTAssertEqual(first.last?.modRevision, base + Int64(revisions))
            let deleted = try await store.txn(compare: [], success: [.deletePrefix("/r/")], failure: [])
            let big = try await store.watch(prefix: "/r/", afterRevision: deleted.revision - 1, timeout: .zero)
            XCTAssertEqual(big.count, 2500, "one revision larger than the maximum comes whole")
            XCTAssertTrue(big.allSatisfy { $0.kind == .delete && $0.modRevision == deleted.revision })
        }
    }

    func watchSeesPutsAndDeletes() async throws {
        try await withStore { store in
            try await put(store, "/w/before", [0])
            let start = try await store.currentRevision()
            try await put(store, "/w/a", [1])
            try await put(store, "/wx", [9])  // Outside the prefix.
            _ = try await store.txn(compare: [], success: [.delete(key: "/w/a"), .put(key: "/w/b", value: [2])], failure: [])
            let events = try await store.watch(prefix: "/w/", afterRevision: start, timeout: .seconds(1))
            XCTAssertEqual(events, [
                WatchEvent(kind: .put, key: "/w/a", value: [1], modRevision: start + 1),
                WatchEvent(kind: .delete, key: "/w/a", value: nil, modRevision: start + 3),
                WatchEvent(kind: .put, key: "/w/b", value: [2], modRevision: start + 3),
            ])
            // A waiting watch returns when a change arrives.
            let now = try await store.currentRevision()
            async let waited = store.watch(prefix: "/w/", afterRevision: now, timeout: .seconds(10))
            try await Task.sleep(for: .milliseconds(50))
            try await put(store, "/w/c", [3])
            let woken = try await waited
            XCTAssertEqual(woken.map(\.key), ["/w/c"])
        }
    }

    func watchTimesOutEmpty() async throws {
        try await withStore { store in
            let base = try await store.currentRevision()
            try await put(store, "/other", [1])
            let clock = ContinuousClock()
            let started = clock.now
            let events = try await store.watch(prefix: "/w/", afterRevision: base, timeout: .milliseconds(100))
            XCTAssertEqual(events, [])
            XCTAssertGreaterThanOrEqual(clock.now - started, .milliseconds(100))
        }
    }

    /// After ten changing transactions `store` must keep the changes of only the last 5:
    /// by itself, or after `compact` (given the revision to keep from) trims its history.
    static func watchBeforeCompactionFails(_ store: any MetaStore,
                                           compact: ((Int64) async throws -> Void)? = nil) async throws {
        let base = try await store.currentRevision()
        for i in 0..<10 { _ = try await store.txn(compare: [], success: [.put(key: "/k\(i)", value: [])], failure: []) }
        try await compact?(base + 6)
        await assertThrows({ if case .conflict = $0 { return true } else { return false } }) {
            _ = try await store.watch(prefix: "/", afterRevision: base + 4, timeout: .zero)
        }
        let kept = try await store.watch(prefix: "/", afterRevision: base + 5, timeout: .zero)
        XCTAssertEqual(kept.map(\.modRevision), (6...10).map { base + Int64($0) })
        try await store.close()
    }

    func invalidInputIsRejected() async throws {
        try await withStore { store in
            let base = try await store.currentRevision()
            let invalid: (CairnError) -> Bool = { if case .invalidArgument = $0 { return true } else { return false } }
            await assertThrows(invalid) { _ = try await store.get("") }
            await assertThrows(invalid) { _ = try await store.txn(compare: [], success: [.put(key: "", value: [1])], failure: []) }
            await assertThrows(invalid) { _ = try await store.txn(compare: [.modRevision(key: "", equals: 0)], success: [], failure: []) }
            await assertThrows(invalid) { _ = try await store.txn(compare: [], success: [.deletePrefix("")], failure: []) }
            await assertThrows(invalid) {
                _ = try await store.txn(compare: [], success: [.put(key: "/d", value: [1]), .put(key: "/d", value: [2])], failure: [])
            }
            await assertThrows(invalid) {
                _ = try await store.txn(compare: [], success: [], failure: [.put(key: "/d/1", value: [1]), .deletePrefix("/d/")])
            }
            let tooMany = (0...MetaLimits.txnOpsMax).map { TxnOp.put(key: "/m\($0)", value: []) }
            await assertThrows(invalid) { _ = try await store.txn(compare: [], success: tooMany, failure: []) }
            await assertThrows(invalid) { _ = try await store.range(prefix: "/", after: nil, limit: 0) }
            await assertThrows(invalid) { _ = try await store.range(prefix: "/", after: nil, limit: MetaLimits.rangeLimitMax + 1) }
            await assertThrows(invalid) { _ = try await store.watch(prefix: "/", afterRevision: -1, timeout: .zero) }
            await assertThrows(invalid) { _ = try await store.update(key: "/u", retries: 0) { (n: Int?) in n } }
            let revision = try await store.currentRevision()
            XCTAssertEqual(revision, base, "nothing was written")
        }
    }

    /// Puts the keys in as few transactions as the op limit allows.
    private func putKeys(_ store: any MetaStore, _ keys: [String]) async throws {
        for start in stride(from: 0, to: keys.count, by: MetaLimits.txnOpsMax) {
            let ops = keys[start..<min(start + MetaLimits.txnOpsMax, keys.count)].map { TxnOp.put(key: $0, value: [1]) }
            _ = try await store.txn(compare: [], success: ops, failure: [])
        }
    }

    private func put(_ store: any MetaStore, _ key: String, _ value: [UInt8]) async throws {
        let result = try await store.txn(compare: [], success: [.put(key: key, value: value)], failure: [])
        XCTAssertTrue(result.succeeded)
    }
}

func assertThrows(_ matches: (CairnError) -> Bool, file: StaticString = #filePath, line: UInt = #line,
                  _ body: () async throws -> Void) async {
    do {
        try await body()
        XCTFail("expected an error", file: file, line: line)
    } catch let error as CairnError {
        XCTAssertTrue(matches(error), "unexpected \(error)", file: file, line: line)
    } catch {
        XCTFail("unexpected \(error)", file: file, line: line)
    }
}
