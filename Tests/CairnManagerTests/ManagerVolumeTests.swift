import CairnCore
@testable import CairnManager
import CairnMeta
import XCTest

final class ManagerVolumeTests: XCTestCase {
    func testInvalidNamesAreRefused() async throws {
        let h = Harness()
        try await h.addNodes(3)
        for name in ["Upper", "", String(repeating: "a", count: 64), "-lead", ".lead", "under_score", "sp ace", "ü"] {
            await assertThrowsCairnError({ try await h.createVolume(name) }, isInvalidArgument)
        }
        for name in [String(repeating: "a", count: 63), "a", "0vol", "my-vol.1"] {
            _ = try await h.createVolume(name)
        }
    }

    func testInvalidSizesAndReplicationAreRefused() async throws {
        let h = Harness()
        try await h.addNodes(5)
        for size: UInt64 in [0, 4095, 4097, (1 << 20) + 1] {
            await assertThrowsCairnError({ try await h.createVolume(size: size) }, isInvalidArgument)
        }
        for (replicas, replicasMin) in [(0, nil), (6, nil), (3, 4), (3, 0), (1, 2)] as [(Int, Int?)] {
            await assertThrowsCairnError({ try await h.createVolume(replicas: replicas, replicasMin: replicasMin) },
                                         isInvalidArgument)
        }
        for chunkSize: UInt64 in [512 << 10, 2 << 30, (1 << 20) + 1] {
            await assertThrowsCairnError({
                try await h.manager.createVolume(CreateVolumeRequest(name: "c", sizeBytes: 1 << 20, chunkSizeBytes: chunkSize))
            }, isInvalidArgument)
        }
        await assertEq(try await h.manager.listVolumes(), [])
    }

    func testTooFewUpNodesIsInsufficientNodes() async throws {
        let h = Harness()
        try await h.addNodes(2)
        await assertThrowsCairnError({ try await h.createVolume(replicas: 3) }, isInsufficientNodes)
        try await h.manager.drain("n2")
        await assertThrowsCairnError({ try await h.createVolume(replicas: 2) }, isInsufficientNodes)
        _ = try await h.createVolume(replicas: 1)
    }

    func testDuplicateNameIsAlreadyExists() async throws {
        let h = Harness()
        try await h.addNodes(3)
        try await h.createVolume("a")
        await assertThrowsCairnError({ try await h.createVolume("a") }) {
            if case .alreadyExists = $0 { return true }; return false
        }
    }

    func testNewVolumeDefaults() async throws {
        let h = Harness()
        try await h.addNodes(3)
        let v = try await h.manager.createVolume(CreateVolumeRequest(name: "v", sizeBytes: 8 << 20))
        XCTAssertEqual(v.replicas, 3)
        XCTAssertEqual(v.replicasMin, 2)
        XCTAssertEqual(v.epoch, 1)
        XCTAssertNil(v.writer)
        XCTAssertEqual(v.kind, .block)
        XCTAssertEqual(v.chunkSizeBytes, 1 << 20)
        XCTAssertEqual(v.chunkCount, 8)
        await assertEq(try await h.createVolume("one", replicas: 1).replicasMin, 1)
        await assertEq(try await h.createVolume("two", replicas: 2).replicasMin, 1)
        await assertEq(try await h.manager.volume("v"), v)
    }

    func testIDsIncreaseAndAreNeverReused() async throws {
        let h = Harness()
        try await h.addNodes(3)
        await assertEq(try await h.createVolume("a").id, 1)
        await assertEq(try await h.createVolume("b").id, 2)
        try await h.manager.deleteVolume("a", force: false)
        await assertEq(try await h.createVolume("a").id, 3)
    }

    func testResizeGrowsWithAnEpochBumpAndRefusesToShrink() async throws {
        let h = Harness()
        try await h.addNodes(3)
        try await h.createVolume(size: 4 << 20)
        let grown = try await h.manager.resizeVolume("vol", sizeBytes: 8 << 20)
        XCTAssertEqual(grown.sizeBytes, 8 << 20)
        XCTAssertEqual(grown.epoch, 2)
        XCTAssertEqual(h.nodes.fencedNodes(epoch: 2), ["n1", "n2", "n3"])
        await assertThrowsCairnError({ try await h.manager.resizeVolume("vol", sizeBytes: 4 << 20) }, isInvalidArgument)
        await assertThrowsCairnError({ try await h.manager.resizeVolume("vol", sizeBytes: (8 << 20) + 1) }, isInvalidArgument)
        await assertThrowsCairnError({ try await h.manager.resizeVolume("nope", sizeBytes: 8 << 20) }, isNotFound)
        await assertEq(try await h.manager.volume("vol"), grown)
    }

    func testARetriedCreateReturnsTheSameVolume() async throws {
        let h = Harness()
        try await h.addNodes(3)
        let request = CreateVolumeRequest(name: "r", sizeBytes: 4 << 20, requestID: "req-1")
        let first = try await h.manager.createVolume(request)
        await assertEq(try await h.manager.createVolume(request), first)
        await assertThrowsCairnError({
            try await h.manager.createVolume(CreateVolumeRequest(name: "r", sizeBytes: 4 << 20, requestID: "req-2"))
        }) { if case .alreadyExists = $0 { return true }; return false }
        await assertEq(try await h.manager.listVolumes().count, 1)
    }

    func testReadOnlyRefusesWritersAndNeedsForceAgainstOne() async throws {
        let h = Harness()
        try await h.addNodes(3)
        _ = try await h.attachedVolumeWithChunk()
        let before = try await h.manager.volume("vol")
        await assertThrowsCairnError({ try await h.manager.setReadOnly("vol", readOnly: true, force: false) }, isConflict)
        let ro = try await h.manager.setReadOnly("vol", readOnly: true, force: true)
        XCTAssertTrue(ro.readOnly)
        XCTAssertNil(ro.writer, "the writer was fenced out")
        XCTAssertEqual(ro.epoch, before.epoch + 1)
        XCTAssertEqual(h.nodes.fencedNodes(epoch: ro.epoch), ["n1", "n2", "n3"])
        await assertThrowsCairnError({
            try await h.manager.attach("vol", AttachRequest(client: "w", force: true, readOnly: false))
        }, isInvalidArgument)
        _ = try await h.manager.attach("vol", AttachRequest(client: "r", force: false, readOnly: true))
        let rw = try await h.manager.setReadOnly("vol", readOnly: false, force: false)
        XCTAssertFalse(rw.readOnly)
        _ = try await h.manager.attach("vol", AttachRequest(client: "w", force: false, readOnly: false))
        await assertEq(try await h.manager.volume("vol").writer, "w")
    }

    func testDeleteOfAnAttachedVolumeNeedsForce() async throws {
        let h = Harness()
        try await h.addNodes(3)
        _ = try await h.attachedVolumeWithChunk()
        await assertThrowsCairnError({ try await h.manager.deleteVolume("vol", force: false) }, isConflict)
        await assertNotNil(try await h.chunk())
        try await h.manager.deleteVolume("vol", force: true)
        await assertThrowsCairnError({ try await h.manager.volume("vol") }, isNotFound)
    }

    func testDeleteRemovesChunksAndTellsTheNodes() async throws {
        let h = Harness()
        try await h.addNodes(3)
        _ = try await h.attachedVolumeWithChunk()
        try await h.manager.detach("vol", client: "c1")
        let v = try await h.manager.volume("vol")
        try await h.manager.deleteVolume("vol", force: false)
        await assertEq(try await h.store.rangeAll(prefix: Keys.chunkPrefix(v.id)), [])
        await assertNil(try await h.store.get(Keys.volumeID(v.id)))
        XCTAssertEqual(h.nodes.deletes.snapshot.map(\.node).sorted(), ["n1", "n2", "n3"])
        XCTAssertTrue(h.nodes.deletes.snapshot.allSatisfy { $0.volume == v.id && $0.epoch > v.epoch })
        await assertThrowsCairnError({ try await h.manager.deleteVolume("vol", force: true) }, isNotFound)
    }
}
