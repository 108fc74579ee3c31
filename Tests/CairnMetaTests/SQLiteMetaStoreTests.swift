import CairnCore
import CairnMeta
import Foundation
import XCTest

final class SQLiteMetaStoreTests: XCTestCase {
    private var directory: URL!

    override func setUp() {
        directory = URL(fileURLWithPath: "/tmp/cairn-meta-tests-\(UUID().uuidString)")
    }

    override func tearDown() {
        try? FileManager.default.removeItem(at: directory)
    }

    /// Each store gets its own database file; the parent directory does not exist yet.
    private var behaviour: MetaStoreBehaviour {
        let directory = self.directory!
        return MetaStoreBehaviour {
            try SQLiteMetaStore(path: directory.appendingPathComponent("\(UUID().uuidString)/meta.db").path)
        }
    }

    func testPutAndGet() async throws { try await behaviour.putAndGet() }
    func testGetManyAnswersInOrder() async throws { try await behaviour.getManyAnswersInOrder() }
    func testRevisionGrowsByOnePerChangingTxn() async throws { try await behaviour.revisionGrowsByOnePerChangingTxn() }
    func testModRevisionCompareChoosesBranch() async throws { try await behaviour.modRevisionCompareChoosesBranch() }
    func testCreateOnlyWithModRevisionZero() async throws { try await behaviour.createOnlyWithModRevisionZero() }
    func testDeleteAndDeletePrefix() async throws { try await behaviour.deleteAndDeletePrefix() }
    func testRangePagesWithoutLeakingNeighbours() async throws { try await behaviour.rangePagesWithoutLeakingNeighbours() }
    func testConcurrentUpdatesAllLand() async throws { try await behaviour.concurrentUpdatesAllLand() }
    func testUpdateGivesUpWithConflict() async throws { try await behaviour.updateGivesUpWithConflict() }
    func testWatchReturnsWholeRevisions() async throws { try await behaviour.watchReturnsWholeRevisions() }
    func testWatchSeesPutsAndDeletes() async throws { try await behaviour.watchSeesPutsAndDeletes() }
    func testWatchTimesOutEmpty() async throws { try await behaviour.watchTimesOutEmpty() }
    func testInvalidInputIsRejected() async throws { try await behaviour.invalidInputIsRejected() }

    func testWatchBeforeCompactionFails() async throws {
        let path = directory.appendingPathComponent("meta.db").path
        try await MetaStoreBehaviour.watchBeforeCompactionFails(SQLiteMetaStore(path: path, changelogRevisionsKept: 5))
    }

    func testDataPersistsAcrossReopen() async throws {
        let path = directory.appendingPathComponent("meta.db").path
        let store = try SQLiteMetaStore(path: path)
        _ = try await store.txn(compare: [], success: [.put(key: "/k", value: [1]), .put(key: "/j", value: [2])], failure: [])
        _ = try await store.txn(compare: [], success: [.put(key: "/k", value: [3])], failure: [])
        try await store.close()
        await assertThrows({ if case .io = $0 { return true } else { return false } }) { _ = try await store.get("/k") }

        let reopened = try SQLiteMetaStore(path: path)
        let k = try await reopened.get("/k")
        XCTAssertEqual(k, KeyValue(key: "/k", value: [3], createRevision: 1, modRevision: 2, version: 2))
        let revision = try await reopened.currentRevision()
        XCTAssertEqual(revision, 2)
        let events = try await reopened.watch(prefix: "/", afterRevision: 0, timeout: .zero)
        XCTAssertEqual(events.count, 3, "the changelog survives too")
        try await reopened.close()
    }
}
