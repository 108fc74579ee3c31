// Snapshots and clones through the real manager, storage service and volume client on
// in-memory chunk stores: the data each layer reads, copy-up on first write, a writer
// that keeps writing across a snapshot, and snapshots surviving their volume.
import CairnChunkStore
import CairnClient
import CairnCore
@testable import CairnManager
@testable import CairnStorage
import CairnWire
import NIOCore
import XCTest

final class SnapshotSimulationTests: XCTestCase {
    static let size = 4 << 20  // 4 chunks of 1 MiB

    private func pattern(_ seed: UInt8, _ count: Int) -> [UInt8] {
        (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ Int(seed) &* 7) ^ seed }
    }

    private func cluster() async throws -> SimCluster {
        let c = try SimCluster(nodeCount: 3)
        try await c.tick()
        _ = try await c.manager.createVolume(CreateVolumeRequest(name: "vol", sizeBytes: UInt64(Self.size), replicas: 2))
        return c
    }

    func testASnapshotKeepsItsDataWhileTheVolumeIsOverwritten() async throws {
        let c = try await cluster()
        let writer = try await c.client("vol", id: "w")
        let old = pattern(1, Self.size - (1 << 20))  // chunk 3 never written
        try await writer.write(offset: 0, bytes: old, fua: false)
        let s = try await c.manager.createSnapshot(CreateSnapshotRequest(volume: "vol", name: "s1"))
        // The writer keeps its open client: its next write meets the fence and moves on.
        let new = pattern(2, 8192)
        try await writer.write(offset: 4096, bytes: new, fua: false)
        var expected = old + [UInt8](repeating: 0, count: 1 << 20)
        expected.replaceSubrange(4096..<4096 + 8192, with: new)
        let volumeNow = try await writer.readBytes(offset: 0, length: Self.size)
        XCTAssertEqual(volumeNow, expected, "the volume has the new data and the rest through the snapshot")
        let reader = try await c.client("vol@s1", id: "r", readOnly: true)
        let snapshotNow = try await reader.readBytes(offset: 0, length: Self.size)
        XCTAssertEqual(snapshotNow, old + [UInt8](repeating: 0, count: 1 << 20), "the snapshot holds the data before")
        await assertThrows({ try await reader.write(offset: 0, bytes: [1], fua: false) }, "read-only")
        // Only chunk 0 was copied up; chunks 1 and 2 are still read from the snapshot.
        let map = try await c.manager.map("vol")
        XCTAssertEqual(map.chunks.map(\.index), [0])
        XCTAssertEqual(map.backing?.first?.id, s.id)
        // Block status sees the snapshot's data as allocated, chunk 3 as a hole.
        let extents = try await writer.blockStatus(offset: 0, length: Self.size)
        XCTAssertEqual(extents.last, Extent(offset: 3 << 20, length: 1 << 20, hole: true))
        XCTAssertFalse(extents.first!.hole)
        // Trimming a chunk the volume does not own copies it up and trims the copy only.
        try await writer.trim(offset: 1 << 20, length: 1 << 20)
        let trimmed = try await writer.readBytes(offset: 1 << 20, length: 1 << 20)
        XCTAssertEqual(trimmed, [UInt8](repeating: 0, count: 1 << 20))
        let snapshotChunk1 = try await reader.readBytes(offset: 1 << 20, length: 1 << 20)
        XCTAssertEqual(snapshotChunk1, Array(old[(1 << 20)..<(2 << 20)]))
        await writer.close()
    }

    func testClonesReadTheirSourceAndWriteOnlyThemselves() async throws {
        let c = try await cluster()
        let writer = try await c.client("vol", id: "w")
        let data = pattern(3, Self.size)
        try await writer.write(offset: 0, bytes: data, fua: false)
        _ = try await c.manager.createSnapshot(CreateSnapshotRequest(volume: "vol", name: "s1"))
        let fromSnapshot = try await c.manager.cloneVolume(
            CloneVolumeRequest(name: "c1", source: .snapshot("s1"), replicas: 3, sizeBytes: UInt64(Self.size * 2)))
        XCTAssertEqual(fromSnapshot.sizeBytes, UInt64(Self.size * 2))
        _ = try await c.manager.cloneVolume(CloneVolumeRequest(name: "c2", source: .volume("vol")))
        let c1 = try await c.client("c1", id: "w1")
        let c2 = try await c.client("c2", id: "w2")
        let c1Data = try await c1.readBytes(offset: 0, length: Self.size * 2)
        XCTAssertEqual(c1Data, data + [UInt8](repeating: 0, count: Self.size), "a larger clone reads zeroes past its source")
        let c2Data = try await c2.readBytes(offset: 0, length: Self.size)
        XCTAssertEqual(c2Data, data)
        try await c1.write(offset: 100, bytes: pattern(4, 5000), fua: false)
        try await c2.write(offset: 2 << 20, bytes: pattern(5, 4096), fua: false)
        try await writer.write(offset: 3 << 20, bytes: pattern(6, 4096), fua: false)
        let snapshot = try await c.client("vol@s1", id: "r", readOnly: true)
        let snapshotData = try await snapshot.readBytes(offset: 0, length: Self.size)
        XCTAssertEqual(snapshotData, data, "no write to a clone or the volume reaches the snapshot")
        let c1Head = try await c1.readBytes(offset: 100, length: 5000)
        XCTAssertEqual(c1Head, pattern(4, 5000))
        let c2Head = try await c2.readBytes(offset: 100, length: 5000)
        XCTAssertEqual(c2Head, Array(data[100..<5100]))
        // The clone with 3 replicas got 2 copies (the source's nodes); the supervisor adds the third.
        for _ in 0..<3 { try await c.tick() }
        let chunk = try await c.manager.map("c1").chunks.first { $0.index == 0 }
        XCTAssertEqual(chunk?.healthyCount, 3)
        let afterRebuild = try await c1.readBytes(offset: 0, length: 1 << 20)
        var expected = Array(data[0..<(1 << 20)])
        expected.replaceSubrange(100..<5100, with: pattern(4, 5000))
        XCTAssertEqual(afterRebuild, expected)
        for client in [writer, c1, c2] { await client.close() }
    }

    func testSnapshotsOutliveTheirVolumeAndDeletedSnapshotsAreCollected() async throws {
        let c = try await cluster()
        let writer = try await c.client("vol", id: "w")
        let data = pattern(7, 2 << 20)
        try await writer.write(offset: 0, bytes: data, fua: false)
        let s = try await c.manager.createSnapshot(CreateSnapshotRequest(volume: "vol", name: "s1"))
        await writer.close()
        try await c.manager.deleteVolume("vol", force: false)
        let reader = try await c.client("vol@s1", id: "r", readOnly: true)
        let kept = try await reader.readBytes(offset: 0, length: 2 << 20)
        XCTAssertEqual(kept, data)
        try await c.manager.deleteSnapshot("s1")
        try await c.tick()  // the supervisor drops the unused layer
        try await c.tick()  // the heartbeats collect its files
        for n in c.nodes {
            XCTAssertFalse(n.service.inventory().contains { $0.volume == s.id }, "\(n.id) still holds the snapshot's chunks")
        }
    }

    func testAWriteCutByASnapshotLeavesTheSnapshotsReplicasAgreeing() async throws {
        let c = try await cluster()
        let writer = try await c.client("vol", id: "w")
        try await writer.write(offset: 0, bytes: pattern(8, 3 * blockSize), fua: false)
        let before = try await c.manager.map("vol")
        let replicas = try XCTUnwrap(before.chunks.first).replicas.map(\.node)
        let late = try XCTUnwrap(c.nodes.first { $0.id == replicas[1] })
        // The fence does not reach one replica: it still takes the writer's old-map write,
        // the other refuses it.
        c.net.cut("manager", late.address, true)
        let s = try await c.manager.createSnapshot(CreateSnapshotRequest(volume: "vol", name: "s1"))
        try await writer.write(offset: UInt64(blockSize), bytes: pattern(9, blockSize), fua: false)
        c.net.healAll()
        var images: [[UInt8]] = []
        for id in replicas {
            let node = try XCTUnwrap(c.nodes.first { $0.id == id })
            images.append(try await node.backend.read(ChunkKey(volume: s.id, chunk: 0), offset: 0, length: 3 * blockSize))
        }
        XCTAssertTrue(images[0] == images[1], "the snapshot's replicas differ")
        let volumeNow = try await writer.readBytes(offset: UInt64(blockSize), length: blockSize)
        XCTAssertEqual(volumeNow, pattern(9, blockSize))
        await writer.close()
    }

    private func assertThrows(_ body: () async throws -> Void, _ text: String, file: StaticString = #filePath, line: UInt = #line) async {
        do {
            try await body()
            XCTFail("expected an error", file: file, line: line)
        } catch {
            XCTAssertTrue("\(error)".contains(text), "\(error)", file: file, line: line)
        }
    }
}
