import CairnMeta
import XCTest

final class MemoryMetaStoreTests: XCTestCase {
    private let behaviour = MetaStoreBehaviour { MemoryMetaStore() }

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
        try await MetaStoreBehaviour.watchBeforeCompactionFails(MemoryMetaStore(changelogRevisionsKept: 5))
    }
}
