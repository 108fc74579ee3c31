import CairnCore
import CairnManager
import CairnMeta
import XCTest

final class ManagerEpochTests: XCTestCase {
    private func attach(_ h: Harness, _ client: String, force: Bool = false, readOnly: Bool = false) async throws -> VolumeMap {
        try await h.manager.attach("vol", AttachRequest(client: client, force: force, readOnly: readOnly))
    }

    /// Three nodes and a 4 MiB volume "vol" attached by "c1" at epoch 2.
    private func attachedHarness() async throws -> Harness {
        let h = Harness()
        try await h.addNodes(3)
        try await h.createVolume(size: 4 << 20)
        _ = try await attach(h, "c1")
        return h
    }

    // MARK: - Attach and detach

    func testAttachBumpsTheEpochByOneAndFencesEveryUpNode() async throws {
        let h = Harness()
        try await h.addNodes(4)
        try await h.createVolume()
        // n4 goes down.
        h.clock.advance(6)
        try await h.heartbeat(["n1", "n2", "n3"])
        try await h.manager.superviseOnce()
        await assertEq(try await h.node("n4")?.state, .down)

        let map = try await attach(h, "c1")
        XCTAssertEqual(map.volume.epoch, 2)
        XCTAssertEqual(map.volume.writer, "c1")
        XCTAssertEqual(h.nodes.fencedNodes(epoch: 2), ["n1", "n2", "n3"])
    }

    func testAttachSucceedsWhenAFencePushFails() async throws {
        let h = Harness()
        try await h.addNodes(3)
        try await h.createVolume()
        h.nodes.fenceFailures.withLock { $0 = ["n2"] }
        await assertEq(try await attach(h, "c1").volume.epoch, 2)
        XCTAssertEqual(h.nodes.fencedNodes(epoch: 2), ["n1", "n2", "n3"])
    }

    func testSecondWriterConflictsUnlessForced() async throws {
        let h = try await attachedHarness()
        await assertThrowsCairnError({ try await self.attach(h, "c2") }, isConflict)
        await assertEq(try await h.epoch(), 2)
        let forced = try await attach(h, "c2", force: true)
        XCTAssertEqual(forced.volume.epoch, 3)
        XCTAssertEqual(forced.volume.writer, "c2")
        XCTAssertEqual(h.nodes.fencedNodes(epoch: 3), ["n1", "n2", "n3"])
    }

    func testReadOnlyAttachChangesNothing() async throws {
        let h = try await attachedHarness()
        let reader = try await attach(h, "r1", readOnly: true)
        XCTAssertEqual(reader.volume.epoch, 2)
        XCTAssertEqual(reader.volume.writer, "c1")
    }

    func testAttachNeedsAClientID() async throws {
        let h = Harness()
        try await h.addNodes(3)
        try await h.createVolume()
        await assertThrowsCairnError({ try await self.attach(h, "") }, isInvalidArgument)
        await assertThrowsCairnError({
            try await h.manager.attach("nope", AttachRequest(client: "c1", force: false, readOnly: false))
        }, isNotFound)
    }

    func testDetachByAnotherClientDoesNothing() async throws {
        let h = try await attachedHarness()
        let before = try await h.manager.volume("vol")
        try await h.manager.detach("vol", client: "c2")
        await assertEq(try await h.manager.volume("vol"), before)
        try await h.manager.detach("vol", client: "c1")
        await assertNil(try await h.manager.volume("vol").writer)
        // Now anyone may attach without force.
        await assertEq(try await attach(h, "c2").volume.writer, "c2")
    }

    func testConcurrentForcedAttachesNeverLoseAnEpochBump() async throws {
        let h = Harness()
        try await h.addNodes(3)
        let initial = try await h.createVolume().epoch
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<20 {
                group.addTask { _ = try await h.manager.attach("vol", AttachRequest(client: "c\(i)", force: true, readOnly: false)) }
            }
            try await group.waitForAll()
        }
        await assertEq(try await h.epoch(), initial + 20)
        // Every epoch from initial+1 to initial+20 was handed out exactly once, and fenced.
        XCTAssertEqual(Set(h.nodes.fences.snapshot.map(\.epoch)), Set((initial + 1)...(initial + 20)))
    }

    // MARK: - Allocation

    func testAllocatePlacesDistinctHealthyReplicasWithoutAnEpochBump() async throws {
        let h = Harness()
        try await h.addNodes(5)
        let chunk = try await h.attachedVolumeWithChunk()
        XCTAssertEqual(chunk.replicas.count, 3)
        XCTAssertEqual(Set(chunk.replicas.map(\.node)).count, 3)
        XCTAssertTrue(chunk.replicas.allSatisfy { $0.state == .healthy })
        XCTAssertEqual(chunk.stale, [])
        await assertEq(try await h.epoch(), 2)
    }

    func testAllocatingAnExistingChunkReturnsTheSameReplicas() async throws {
        let h = Harness()
        try await h.addNodes(3)
        let first = try await h.attachedVolumeWithChunk()
        // Emptier nodes appear; the chunk stays where it is.
        for id in ["n4", "n5", "n6"] { try await h.heartbeat(id, capacity: 1 << 50) }
        let again = try await h.manager.allocateChunk("vol", index: 0, AllocateChunkRequest(client: "c1", epoch: 2))
        XCTAssertEqual(again.chunks, [first])
    }

    func testConcurrentAllocationsOfOneChunkAgree() async throws {
        let h = Harness()
        try await h.addNodes(6)
        try await h.createVolume()
        let epoch = try await h.manager.attach("vol", AttachRequest(client: "c1", force: false, readOnly: false)).volume.epoch
        let maps = try await withThrowingTaskGroup(of: VolumeMap.self) { group in
            for _ in 0..<10 {
                group.addTask { try await h.manager.allocateChunk("vol", index: 1, AllocateChunkRequest(client: "c1", epoch: epoch)) }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        let sets = Set(maps.map { $0.chunks.first { $0.index == 1 }!.replicas.map(\.node) })
        XCTAssertEqual(sets.count, 1)
    }

    func testAllocateWithAStaleEpochIsRefused() async throws {
        let h = try await attachedHarness()
        await assertThrowsCairnError({
            try await h.manager.allocateChunk("vol", index: 0, AllocateChunkRequest(client: "c1", epoch: 1))
        }) { $0 == .staleEpoch(current: 2) }
        await assertNil(try await h.chunk())
    }

    func testAllocateByANonWriterIsAConflict() async throws {
        let h = try await attachedHarness()
        await assertThrowsCairnError({
            try await h.manager.allocateChunk("vol", index: 0, AllocateChunkRequest(client: "c2", epoch: 2))
        }, isConflict)
        await assertNil(try await h.chunk())
    }

    func testAllocatePastTheEndIsInvalid() async throws {
        let h = try await attachedHarness()
        await assertThrowsCairnError({
            try await h.manager.allocateChunk("vol", index: 4, AllocateChunkRequest(client: "c1", epoch: 2))
        }, isInvalidArgument)
    }

    func testAllocatePlacesAtLeastTheMinimumWhenNodesAreShort() async throws {
        let h = try await attachedHarness()
        try await h.manager.drain("n3")
        let map = try await h.manager.allocateChunk("vol", index: 0, AllocateChunkRequest(client: "c1", epoch: 2))
        XCTAssertEqual(map.chunks.first?.replicas.map(\.node), ["n1", "n2"])
        try await h.manager.drain("n2")
        await assertThrowsCairnError({
            try await h.manager.allocateChunk("vol", index: 1, AllocateChunkRequest(client: "c1", epoch: 2))
        }, isInsufficientNodes)
    }

    // MARK: - Failure reports

    func testReportFailureRemovesTheReplicaAndBumpsTheEpoch() async throws {
        let h = Harness()
        try await h.addNodes(4)
        let chunk = try await h.attachedVolumeWithChunk()
        let failed = chunk.replicas[0].node
        let map = try await h.manager.reportFailure("vol", index: 0, ReplicaFailureReport(node: failed, epoch: 2, reason: "timeout"))
        XCTAssertEqual(map.volume.epoch, 3)
        let after = try XCTUnwrap(map.chunks.first)
        XCTAssertEqual(after.replicas, Array(chunk.replicas.dropFirst()))
        XCTAssertEqual(after.stale, [StaleReplica(node: failed, leftAtEpoch: 2)])
        XCTAssertFalse(h.nodes.fencedNodes(epoch: 3).contains(failed))
        XCTAssertEqual(h.nodes.fencedNodes(epoch: 3), ["n1", "n2", "n3", "n4"].filter { $0 != failed })
    }

    func testReportBelowTheMinimumChangesNothing() async throws {
        let h = Harness()
        try await h.addNodes(3)
        let chunk = try await h.attachedVolumeWithChunk()
        _ = try await h.manager.reportFailure("vol", index: 0, ReplicaFailureReport(node: chunk.replicas[0].node, epoch: 2, reason: "x"))
        let before = try await h.manager.map("vol")
        await assertThrowsCairnError({
            try await h.manager.reportFailure("vol", index: 0, ReplicaFailureReport(node: chunk.replicas[1].node, epoch: 3, reason: "x"))
        }, isInsufficientNodes)
        let after = try await h.manager.map("vol")
        XCTAssertEqual(after.volume, before.volume)
        XCTAssertEqual(after.chunks, before.chunks)
    }

    func testReportForANodeNotInTheSetChangesNothing() async throws {
        let h = Harness()
        try await h.addNodes(4)
        let chunk = try await h.attachedVolumeWithChunk()
        let failed = chunk.replicas[0].node
        _ = try await h.manager.reportFailure("vol", index: 0, ReplicaFailureReport(node: failed, epoch: 2, reason: "x"))
        let before = try await h.manager.map("vol")
        for node in [failed, "n9"] {
            let map = try await h.manager.reportFailure("vol", index: 0, ReplicaFailureReport(node: node, epoch: 3, reason: "again"))
            XCTAssertEqual(map.volume, before.volume)
            XCTAssertEqual(map.chunks, before.chunks)
        }
        // A chunk never allocated: nothing to do either.
        await assertEq(try await h.manager.reportFailure("vol", index: 2, ReplicaFailureReport(node: "n1", epoch: 3, reason: "x")).chunks,
                       before.chunks)
    }

    func testAReportedNodeGetsNoNewReplicasUntilItHeartbeatsAgain() async throws {
        let h = Harness()
        try await h.addNodes(4)
        _ = try await h.attachedVolumeWithChunk()
        _ = try await h.manager.reportFailure("vol", index: 0, ReplicaFailureReport(node: "n1", epoch: 2, reason: "x"))
        let next = try await h.manager.allocateChunk("vol", index: 1, AllocateChunkRequest(client: "c1", epoch: 3))
        XCTAssertEqual(next.chunks.first { $0.index == 1 }?.replicas.map(\.node), ["n2", "n3", "n4"])
        h.clock.advance(2)
        try await h.heartbeat("n1", capacity: 1 << 50)
        let later = try await h.manager.allocateChunk("vol", index: 2, AllocateChunkRequest(client: "c1", epoch: 3))
        XCTAssertEqual(later.chunks.first { $0.index == 2 }?.replicas.first?.node, "n1")
    }
}
