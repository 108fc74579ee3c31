import CairnCore
@testable import CairnManager
import CairnMeta
import CairnWire
import XCTest

/// The supervisor stepped by hand with a fake clock (heartbeat timeout 5 s, grace 30 s).
final class SupervisorTests: XCTestCase {
    /// Moves the clock, heartbeats the live nodes and runs one supervisor pass.
    private func pass(_ h: Harness, after seconds: Double, alive: [NodeID]) async throws {
        h.clock.advance(seconds)
        try await h.heartbeat(alive)
        try await h.manager.superviseOnce()
    }

    /// Four nodes, a volume of 3 replicas with chunk 0 on n1, n2, n3; then n1 goes silent.
    private func degradedCluster() async throws -> Harness {
        let h = Harness()
        try await h.addNodes(4)
        let chunk = try await h.attachedVolumeWithChunk()
        XCTAssertEqual(chunk.replicas.map(\.node), ["n1", "n2", "n3"])
        try await pass(h, after: 6, alive: ["n2", "n3", "n4"])
        return h
    }

    func testASilentNodeIsDownAfterTheHeartbeatTimeout() async throws {
        let h = Harness()
        try await h.addNodes(2)
        try await pass(h, after: 5, alive: [])
        await assertEq(try await h.node("n1")?.state, .up, "exactly the timeout is not yet down")
        try await pass(h, after: 0.5, alive: ["n2"])
        let n1 = try await h.node("n1")
        XCTAssertEqual(n1?.state, .down)
        XCTAssertEqual(n1?.downSince, h.clock.now())
        await assertEq(try await h.node("n2")?.state, .up)
    }

    func testReplicasStayDuringTheGracePeriod() async throws {
        let h = try await degradedCluster()
        await assertEq(try await h.node("n1")?.state, .down)
        try await pass(h, after: 29, alive: ["n2", "n3", "n4"])
        await assertEq(try await h.chunk()?.replicas.map(\.node), ["n1", "n2", "n3"])
        await assertEq(try await h.epoch(), 2)
        XCTAssertEqual(h.nodes.rebuilds.snapshot, [])
    }

    func testANodeBackWithinTheGracePeriodKeepsItsReplicas() async throws {
        let h = try await degradedCluster()
        try await pass(h, after: 20, alive: ["n1", "n2", "n3", "n4"])
        await assertEq(try await h.node("n1")?.state, .up)
        await assertNil(try await h.node("n1")?.downSince)
        try await pass(h, after: 20, alive: ["n1", "n2", "n3", "n4"])
        await assertEq(try await h.chunk()?.replicas.map(\.node), ["n1", "n2", "n3"])
        await assertEq(try await h.epoch(), 2)
    }

    func testAfterTheGracePeriodTheReplicaIsRemovedThenRebuiltElsewhere() async throws {
        let h = try await degradedCluster()
        try await pass(h, after: 30, alive: ["n2", "n3", "n4"])
        await assertEq(try await h.chunk()?.replicas.map(\.node), ["n2", "n3"])
        await assertEq(try await h.chunk()?.stale, [], "a node gone past the grace period is no resync candidate")
        await assertEq(try await h.epoch(), 3)
        XCTAssertEqual(h.nodes.rebuilds.snapshot, [], "the rebuild waits for the next pass")

        h.nodes.holdRebuilds.withLock { $0 = true }
        try await pass(h, after: 1, alive: ["n2", "n3", "n4"])
        let epoch = try await h.epoch()
        XCTAssertEqual(epoch, 4)
        let planned = try await h.chunk()
        XCTAssertEqual(planned?.replicas, [ReplicaRecord(node: "n2", state: .healthy), ReplicaRecord(node: "n3", state: .healthy),
                                           ReplicaRecord(node: "n4", state: .rebuilding)])
        await assertTrue(try await eventually { h.nodes.rebuilds.snapshot.count == 1 })
        let rebuild = try XCTUnwrap(h.nodes.rebuilds.snapshot.first)
        XCTAssertEqual(rebuild.node, "n4")
        XCTAssertEqual(Set(rebuild.order.sources), [Harness.address("n2"), Harness.address("n3")])
        XCTAssertEqual(rebuild.order.address, ChunkAddress(volume: 1, chunk: 0, epoch: epoch))
        XCTAssertEqual(rebuild.order.sinceEpoch, 0, "a new replica is a full copy")
        XCTAssertEqual(h.nodes.fencedNodes(epoch: epoch), ["n2", "n3", "n4"])

        // Another pass while the copy runs plans nothing more.
        try await pass(h, after: 1, alive: ["n2", "n3", "n4"])
        XCTAssertEqual(h.nodes.rebuilds.snapshot.count, 1)

        h.nodes.holdRebuilds.withLock { $0 = false }
        await assertTrue(try await eventually { try await h.chunk()?.healthyCount == 3 })
        await assertEq(try await h.epoch(), epoch, "a finished rebuild does not bump the epoch")
    }

    func testAFailedRebuildRemovesTheTargetAndBacksOff() async throws {
        let h = try await degradedCluster()
        try await pass(h, after: 30, alive: ["n2", "n3", "n4"])
        h.nodes.rebuildError.withLock { $0 = CairnError.io("disk failed") }
        try await pass(h, after: 1, alive: ["n2", "n3", "n4"])
        await assertTrue(try await eventually { try await h.chunk()?.replicas.map(\.node) == ["n2", "n3"] })
        await assertTrue(try await eventually { h.manager.rebuilding.snapshot.isEmpty })
        let epochAfterFailure = try await h.epoch()
        XCTAssertEqual(epochAfterFailure, 5, "adding and removing the target each bump the epoch")

        try await pass(h, after: 1, alive: ["n2", "n3", "n4"])
        XCTAssertEqual(h.nodes.rebuilds.snapshot.count, 1, "no retry within the back-off")
        h.nodes.rebuildError.withLock { $0 = nil }
        try await pass(h, after: 2, alive: ["n2", "n3", "n4"])
        await assertTrue(try await eventually { try await h.chunk()?.healthyCount == 3 })
        XCTAssertEqual(h.nodes.rebuilds.snapshot.count, 2)
    }

    func testAReturningStaleNodeIsResyncedFromTheEpochItLeftAt() async throws {
        let h = Harness()
        try await h.addNodes(4)
        _ = try await h.attachedVolumeWithChunk()
        _ = try await h.manager.reportFailure("vol", index: 0, ReplicaFailureReport(node: "n1", epoch: 2, reason: "timeout"))
        await assertEq(try await h.chunk()?.stale, [StaleReplica(node: "n1", leftAtEpoch: 2)])

        h.nodes.holdRebuilds.withLock { $0 = true }
        try await pass(h, after: 2, alive: ["n1", "n2", "n3", "n4"])
        await assertTrue(try await eventually { h.nodes.rebuilds.snapshot.count == 1 })
        let rebuild = try XCTUnwrap(h.nodes.rebuilds.snapshot.first)
        XCTAssertEqual(rebuild.node, "n1", "the returning node is preferred over the empty n4")
        XCTAssertEqual(rebuild.order.sinceEpoch, 2)
        await assertEq(rebuild.order.address.epoch, try await h.epoch())
        let planned = try await h.chunk()
        XCTAssertEqual(planned?.stale, [])
        XCTAssertEqual(planned?.replicas.last, ReplicaRecord(node: "n1", state: .rebuilding, sinceEpoch: 2))

        h.nodes.holdRebuilds.withLock { $0 = false }
        await assertTrue(try await eventually { try await h.chunk()?.healthyCount == 3 })
        await assertEq(try await h.chunk()?.replicas.last, ReplicaRecord(node: "n1", state: .healthy, sinceEpoch: 0))
    }

    func testASuspectedStaleNodeIsPassedOver() async throws {
        let h = Harness()
        try await h.addNodes(4)
        _ = try await h.attachedVolumeWithChunk()
        _ = try await h.manager.reportFailure("vol", index: 0, ReplicaFailureReport(node: "n1", epoch: 2, reason: "timeout"))
        // n1 has not heartbeated since the report: it stays suspected.
        try await h.manager.superviseOnce()
        await assertTrue(try await eventually { h.nodes.rebuilds.snapshot.count == 1 })
        XCTAssertEqual(h.nodes.rebuilds.snapshot.first?.node, "n4")
        XCTAssertEqual(h.nodes.rebuilds.snapshot.first?.order.sinceEpoch, 0)
    }

    func testADrainingNodeIsCopiedElsewhereThenRemoved() async throws {
        let h = Harness()
        try await h.addNodes(4)
        _ = try await h.attachedVolumeWithChunk()
        try await h.manager.drain("n1")
        try await h.manager.superviseOnce()
        await assertTrue(try await eventually { try await h.chunk()?.replicas.map(\.node) == ["n1", "n2", "n3", "n4"] })
        await assertTrue(try await eventually { h.nodes.rebuilds.snapshot.count == 1 })
        XCTAssertEqual(h.nodes.rebuilds.snapshot.first?.node, "n4")
        await assertTrue(try await eventually { try await h.chunk()?.healthyCount == 4 })
        try await h.manager.superviseOnce()
        await assertEq(try await h.chunk()?.replicas.map(\.node), ["n2", "n3", "n4"])
    }
}
