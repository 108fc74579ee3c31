@testable import CairnFS
import CairnCore
import CairnMeta
import XCTest

/// Fragmented file maps stay under the metadata value limit (MapCompaction.swift).
final class MapCompactionTests: XCTestCase {
    func testPiecesAreRunsWithoutHolesOfSeveralSlices() {
        func s(_ at: UInt64, _ n: UInt64) -> Slice { Slice(fileOffset: at, length: n, volume: "v", volumeOffset: at) }
        let pieces = FileSystem.compactionPieces([s(0, 10), s(10, 5), s(100, 1), s(200, 4), s(204, 4), s(208, 4)])
        XCTAssertEqual(pieces, [0..<15, 200..<212])
        let big = FileSystem.compactionPieces([s(0, 20 << 20), s(20 << 20, 1)])
        XCTAssertEqual(big, [0..<(16 << 20), (16 << 20)..<((20 << 20) + 1)])
    }

    func testTenThousandRandomFourKiBWritesToABigFile() async throws {
        // A data volume name of the longest kind (63 bytes) makes a slice about 130 bytes of JSON.
        let store = MemoryMetaStore(), data = MemorySliceStore(volume: "a-filesystem-name-of-fifty-two-bytes-for-the-test-xx.d.0123abcd")
        let clock = Locked<Int64>(1_000_000_000)
        let fs = FileSystem(store: store, prefix: "/fs/t/", data: data, buffering: .standard,
                            now: { FSTime(nanoseconds: clock.withLock { $0 += 1; return $0 }) })
        try await fs.ensureRoot(uid: 0, gid: 0)
        let f = try await fs.makeNode(FileSystem.rootInode, "f", mode: FileType.regular | 0o644, uid: 0, gid: 0)
        // 10,240 blocks, about 6,600 of them rewritten apart: without compaction the map
        // grows to about 9,000 slices, over 1 MiB of JSON, and the flush fails (EIO).
        let blocks = 10_240, block = 4096
        var reference = [UInt8](repeating: 7, count: blocks * block)
        for at in stride(from: 0, to: reference.count, by: 1 << 20) {
            _ = try await fs.write(f.ino, offset: UInt64(at), bytes: Array(reference[at..<at + (1 << 20)]))
        }
        try await fs.flush(f.ino)
        var seed: UInt64 = 42
        var mapMax = 0
        for i in 0..<10_500 {
            seed = seed &* 6364136223846793005 &+ 1442695040888963407
            let b = Int((seed >> 33) % UInt64(blocks))
            let bytes = [UInt8](repeating: UInt8(truncatingIfNeeded: i), count: block)
            reference.replaceSubrange(b * block..<(b + 1) * block, with: bytes)
            _ = try await fs.write(f.ino, offset: UInt64(b * block), bytes: bytes)
            if i % 500 == 0 { mapMax = max(mapMax, try await fs.storedInode(f.ino).slices.count) }
        }
        try await fs.flush(f.ino)
        let stored = try await fs.storedInode(f.ino)
        mapMax = max(mapMax, stored.slices.count)
        XCTAssertLessThanOrEqual(mapMax, FileSystem.mapSlicesCompactAt + FileSystem.pendingExtentsMax)
        XCTAssertEqual(stored.size, UInt64(blocks * block))
        let back = try await fs.read(f.ino, offset: 0, length: blocks * block)
        XCTAssertTrue(back == reference, "the file reads back as written")
    }
}
