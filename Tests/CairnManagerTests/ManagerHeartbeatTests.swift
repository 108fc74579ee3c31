import CairnCore
import CairnManager
import CairnMeta
import XCTest

final class ManagerHeartbeatTests: XCTestCase {
    func testHeartbeatRegistersAndUpdatesTheNode() async throws {
        let h = Harness()
        try await h.heartbeat("n1", zone: "z1", capacity: 1000, used: 10)
        h.clock.advance(3)
        try await h.heartbeat("n1", zone: "z2", capacity: 2000, used: 20)
        let n = try await h.node("n1")
        XCTAssertEqual(n, NodeRecord(id: "n1", address: Harness.address("n1"), zone: "z2", state: .up,
                                     capacityBytes: 2000, usedBytes: 20, lastHeartbeat: h.clock.now()))
    }

    func testHeartbeatRefusesBadIDsAndAddresses() async throws {
        let h = Harness()
        for (id, address) in [("", "h:1"), (String(repeating: "x", count: 129), "h:1"), ("n", "host"), ("n", ":9500"),
                              ("n", "h:0"), ("n", "h:65536"), ("n", "h:port")] {
            await assertThrowsCairnError({
                try await h.manager.heartbeat(HeartbeatRequest(id: id, address: address, zone: nil, capacityBytes: 1,
                                                               usedBytes: 0, inventory: [], rebuilds: []))
            }, isInvalidArgument)
        }
        await assertEq(try await h.manager.listNodes(), [])
    }

    func testHeartbeatRefusesANodeWithAnotherChunkSize() async throws {
        let h = Harness()  // the cluster's chunk size is 1 MiB
        await assertThrowsCairnError({
            try await h.manager.heartbeat(HeartbeatRequest(id: "n1", address: Harness.address("n1"), zone: nil, capacityBytes: 1,
                                                           usedBytes: 0, inventory: [], rebuilds: [], chunkSizeBytes: 64 << 20))
        }, isInvalidArgument)
        await assertEq(try await h.manager.listNodes(), [])
        try await h.manager.heartbeat(HeartbeatRequest(id: "n1", address: Harness.address("n1"), zone: nil, capacityBytes: 1,
                                                       usedBytes: 0, inventory: [], rebuilds: [], chunkSizeBytes: 1 << 20))
        await assertEq(try await h.manager.listNodes().map(\.id), ["n1"])
    }

    func testADrainingNodeStaysDrainingAcrossHeartbeats() async throws {
        let h = Harness()
        try await h.heartbeat("n1")
        try await h.manager.drain("n1")
        try await h.heartbeat("n1")
        await assertEq(try await h.node("n1")?.state, .draining)
        await assertThrowsCairnError({ try await h.manager.drain("n9") }, isNotFound)
    }

    func testGarbageIsWhatNoReplicaSetHolds() async throws {
        let h = Harness()
        try await h.addNodes(4)
        let chunk = try await h.attachedVolumeWithChunk()
        XCTAssertEqual(chunk.replicas.map(\.node), ["n1", "n2", "n3"])
        let id = try await h.manager.volume("vol").id
        let held = ChunkRef(volume: id, chunk: 0)
        let unallocated = ChunkRef(volume: id, chunk: 3)
        let unknownVolume = ChunkRef(volume: 999, chunk: 0)

        let reply = try await h.heartbeat("n1", inventory: [held, unallocated, unknownVolume])
        XCTAssertEqual(reply.deleteChunks, [unallocated, unknownVolume])
        // n4 holds no replica of chunk 0.
        await assertEq(try await h.heartbeat("n4", inventory: [held]).deleteChunks, [held])
    }

    func testAStaleReplicaIsKeptForItsResync() async throws {
        let h = Harness()
        try await h.addNodes(4)
        _ = try await h.attachedVolumeWithChunk()
        _ = try await h.manager.reportFailure("vol", index: 0, ReplicaFailureReport(node: "n1", epoch: 2, reason: "x"))
        let held = ChunkRef(volume: try await h.manager.volume("vol").id, chunk: 0)
        await assertEq(try await h.heartbeat("n1", inventory: [held]).deleteChunks, [])
    }

    func testChunksOfADeletedVolumeAreGarbage() async throws {
        let h = Harness()
        try await h.addNodes(3)
        _ = try await h.attachedVolumeWithChunk()
        let id = try await h.manager.volume("vol").id
        try await h.manager.deleteVolume("vol", force: true)
        // A new volume of the same name gets a new id, so the old replicas stay garbage.
        _ = try await h.attachedVolumeWithChunk()
        let refs = [ChunkRef(volume: id, chunk: 0), ChunkRef(volume: id, chunk: 1)]
        await assertEq(try await h.heartbeat("n1", inventory: refs).deleteChunks, refs)
    }
}
