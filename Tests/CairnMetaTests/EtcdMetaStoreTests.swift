import CairnCore
import CairnEtcd
import CairnMeta
import Foundation
import NIOPosix
import XCTest

/// The whole MetaStore behaviour suite against a real etcd, each test in its own namespace.
final class EtcdMetaStoreTests: XCTestCase {
    nonisolated(unsafe) static var server: EtcdTestServer?

    override class func setUp() {
        super.setUp()
        server = try? EtcdTestServer.start()
    }

    override class func tearDown() {
        server?.stop()
        server = nil
        super.tearDown()
    }

    private func makeStore() throws -> EtcdMetaStore {
        guard let server = Self.server else {
            throw CairnError.unavailable("no etcd server for the test (is etcd-server installed?)")
        }
        let client = try EtcdClient(endpoints: [server.clientURL], group: MultiThreadedEventLoopGroup.singleton)
        return try EtcdMetaStore(client: client, namespace: "/test-\(UUID().uuidString)")
    }

    private var behaviour: MetaStoreBehaviour {
        MetaStoreBehaviour(makeStore: { try self.makeStore() }, startsAtZero: false)
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
        let store = try makeStore()
        try await MetaStoreBehaviour.watchBeforeCompactionFails(store) { try await store.compact(revision: $0) }
    }

    /// A fenced store writes only while the fence key keeps its revision; a deposed writer
    /// applies neither branch.
    func testFencedWritesStopWhenTheFenceMoves() async throws {
        let store = try makeStore()
        let fenceKey = store.namespace + "/leader"
        let raw = try EtcdMetaStore(client: store.client, namespace: "")
        let won = try await raw.txn(compare: [], success: [.put(key: fenceKey, value: Array("a".utf8))], failure: [])
        store.setFence(key: fenceKey, modRevision: won.revision)
        let ok = try await store.txn(compare: [.modRevision(key: "/x", equals: 0)], success: [.put(key: "/x", value: [1])],
                                     failure: [.put(key: "/y", value: [1])])
        XCTAssertTrue(ok.succeeded)
        let branchFailed = try await store.txn(compare: [.modRevision(key: "/x", equals: 0)], success: [],
                                               failure: [.put(key: "/y", value: [2])])
        XCTAssertFalse(branchFailed.succeeded, "the inner compare still decides the branch")
        let y = try await store.get("/y")
        XCTAssertEqual(y?.value, [2])
        // Another candidate takes the key over: the old writer is fenced off.
        _ = try await raw.txn(compare: [], success: [.put(key: fenceKey, value: Array("b".utf8))], failure: [])
        await assertThrows({ if case .unavailable = $0 { return true } else { return false } }) {
            _ = try await store.txn(compare: [], success: [.put(key: "/x", value: [9])], failure: [.put(key: "/y", value: [9])])
        }
        let x = try await store.get("/x"), y2 = try await store.get("/y")
        XCTAssertEqual(x?.value, [1])
        XCTAssertEqual(y2?.value, [2])
    }

    func testUnreachableEtcdIsUnavailable() async throws {
        let client = try EtcdClient(endpoints: ["http://127.0.0.1:1"], group: MultiThreadedEventLoopGroup.singleton)
        client.retryWindow = .milliseconds(300)
        let store = try EtcdMetaStore(client: client)
        await assertThrows({ if case .unavailable = $0 { return true } else { return false } }) {
            _ = try await store.get("/k")
        }
    }

    func testEndpointParsing() throws {
        XCTAssertEqual(try EtcdClient.parseEndpoints("etcd://a:2379,http://b:2380/"), ["http://a:2379", "http://b:2380"])
        XCTAssertThrowsError(try EtcdClient.parseEndpoints("http://a:2379"))
        XCTAssertThrowsError(try EtcdClient.parseEndpoints("etcd://a"))
        XCTAssertThrowsError(try EtcdClient.parseEndpoints("etcd://"))
    }
}
