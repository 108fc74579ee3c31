// Behaviour every ChunkBackend must show; run against each implementation.
import CairnCore
import XCTest
@testable import CairnChunkStore

/// Deterministic test bytes: different for every (seed, position).
func pattern(_ count: Int, seed: UInt8) -> [UInt8] {
    // Period 256; built by doubling so multi-MiB patterns are cheap in debug builds.
    var bytes = (0..<256).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ Int(seed) &* 7 &+ 1) }
    while bytes.count < count { bytes += bytes }
    return Array(bytes.prefix(count))
}

func v(_ epoch: Epoch, _ seq: UInt64) -> BlockVersion { BlockVersion(epoch: epoch, seq: seq) }

func assertThrowsCairn<T>(_ expected: CairnError, _ body: () async throws -> T,
                          file: StaticString = #filePath, line: UInt = #line) async {
    do {
        _ = try await body()
        XCTFail("expected \(expected)", file: file, line: line)
    } catch {
        XCTAssertEqual(error as? CairnError, expected, file: file, line: line)
    }
}

enum ChunkBackendChecks {
    static let key = ChunkKey(volume: 0xABC, chunk: 3)

    static func roundTrip(_ b: ChunkBackend) async throws {
        let aligned = pattern(3 * blockSize, seed: 1)
        try await b.write(key, offset: blockSize, data: aligned, version: v(1, 1))
        let back = try await b.read(key, offset: blockSize, length: aligned.count)
        XCTAssertEqual(back, aligned)
        // Unaligned write spanning four blocks, partial at both ends.
        let odd = pattern(3 * blockSize + 100, seed: 2)
        try await b.write(key, offset: 2 * blockSize - 50, data: odd, version: v(1, 2))
        var expected = [UInt8](repeating: 0, count: 6 * blockSize)
        expected.replaceSubrange(blockSize ..< 4 * blockSize, with: aligned)
        expected.replaceSubrange(2 * blockSize - 50 ..< 2 * blockSize - 50 + odd.count, with: odd)
        let all = try await b.read(key, offset: 0, length: expected.count)
        XCTAssertEqual(all, expected)
        let middle = try await b.read(key, offset: 123, length: 9000)
        XCTAssertEqual(middle, Array(expected[123 ..< 9123]))
        // Never-written ranges and missing chunks read as zeroes.
        let tail = try await b.read(key, offset: b.chunkSize - 5000, length: 5000)
        XCTAssertEqual(tail, [UInt8](repeating: 0, count: 5000))
        let missing = try await b.read(ChunkKey(volume: 9, chunk: 9), offset: 10, length: 7000)
        XCTAssertEqual(missing, [UInt8](repeating: 0, count: 7000))
        let table = try await b.blockTable(key, first: 0, count: 6)
        XCTAssertEqual(table.map(\.state), [.hole, .data, .data, .data, .data, .data])
        // The unaligned write's first 50 bytes land at the end of block 1.
        XCTAssertEqual(table.map(\.version), [.zero, v(1, 2), v(1, 2), v(1, 2), v(1, 2), v(1, 2)])
        for (i, entry) in table.enumerated() where entry.state == .data {
            XCTAssertEqual(entry.crc, CRC32C.checksum(Array(expected[i * blockSize ..< (i + 1) * blockSize])))
        }
        let missingTable = try await b.blockTable(ChunkKey(volume: 9, chunk: 9), first: 0, count: 2)
        XCTAssertEqual(missingTable, [.hole, .hole])
        await assertThrowsCairn(.invalidArgument("range offset \(b.chunkSize - 1) length 2 is outside a chunk of \(b.chunkSize) bytes")) {
            try await b.write(key, offset: b.chunkSize - 1, data: [1, 2], version: v(1, 3))
        }
    }

    static func trim(_ b: ChunkBackend) async throws {
        let data = pattern(4 * blockSize, seed: 3)
        try await b.write(key, offset: 0, data: data, version: v(1, 1))
        // Covers the end of block 0, all of blocks 1 and 2, the start of block 3.
        try await b.trim(key, offset: blockSize - 10, length: 2 * blockSize + 30, version: v(1, 2))
        let table = try await b.blockTable(key, first: 0, count: 4)
        XCTAssertEqual(table.map(\.state), [.data, .hole, .hole, .data])
        XCTAssertEqual(table.map(\.version), [v(1, 2), v(1, 2), v(1, 2), v(1, 2)])
        var expected = data
        expected.replaceSubrange(blockSize - 10 ..< 3 * blockSize + 20, with: [UInt8](repeating: 0, count: 2 * blockSize + 30))
        let back = try await b.read(key, offset: 0, length: expected.count)
        XCTAssertEqual(back, expected)
    }

    static func putBlocksVersionRule(_ b: ChunkBackend) async throws {
        try await b.write(key, offset: 0, data: pattern(2 * blockSize, seed: 4), version: v(2, 5))
        let newer = pattern(blockSize, seed: 5)
        let older = pattern(blockSize, seed: 6)
        let copies: [BlockCopy] = [
            (0, BlockEntry(state: .data, crc: CRC32C.checksum(older), version: v(2, 4)), older),  // older: skipped
            (1, BlockEntry(state: .data, crc: CRC32C.checksum(newer), version: v(2, 5)), newer),  // equal: applied
            (2, BlockEntry(state: .data, crc: CRC32C.checksum(newer), version: v(3, 0)), newer),  // newer: applied
        ]
        let applied = try await b.putBlocks(key, blocks: copies)
        XCTAssertEqual(applied, 2)
        let back = try await b.read(key, offset: 0, length: 3 * blockSize)
        XCTAssertEqual(back, pattern(blockSize, seed: 4) + newer + newer)
        let table = try await b.blockTable(key, first: 0, count: 3)
        XCTAssertEqual(table.map(\.version), [v(2, 5), v(2, 5), v(3, 0)])
        // A hole copy with a newer version replaces data.
        let hole = try await b.putBlocks(key, blocks: [(1, BlockEntry(state: .hole, crc: CRC32C.zeroBlock, version: v(3, 1)), nil)])
        XCTAssertEqual(hole, 1)
        let holeRead = try await b.read(key, offset: blockSize, length: blockSize)
        XCTAssertEqual(holeRead, [UInt8](repeating: 0, count: blockSize))
        // Data that does not match its CRC is refused before anything is applied.
        await assertThrowsCairn(.checksumMismatch(block: 2)) {
            try await b.putBlocks(key, blocks: [(2, BlockEntry(state: .data, crc: 1234, version: v(9, 9)), newer)])
        }
        let unchanged = try await b.blockTable(key, first: 2, count: 1)
        XCTAssertEqual(unchanged[0].version, v(3, 0))
        // A rebuild at epoch 4 replaces anything older than epoch 4, even a newer-seq block.
        let rebuilt = pattern(blockSize, seed: 8)
        let entry = BlockEntry(state: .data, crc: CRC32C.checksum(rebuilt), version: v(2, 1))
        let forced = try await b.putBlocks(key, blocks: [(2, entry, rebuilt), (0, entry, rebuilt)], overwriteBelow: 4)
        XCTAssertEqual(forced, 2)
        let kept = try await b.putBlocks(key, blocks: [(2, BlockEntry(state: .data, crc: CRC32C.checksum(newer), version: v(1, 0)), newer)],
                                         overwriteBelow: 2)
        XCTAssertEqual(kept, 0, "a block at epoch 2 is not older than overwriteBelow 2 and is newer than the copy")
        let rebuiltBack = try await b.read(key, offset: 2 * blockSize, length: blockSize)
        XCTAssertEqual(rebuiltBack, rebuilt)
    }

    /// `corrupt` flips a byte of block 1's stored data without touching its CRC.
    static func corruption(_ b: ChunkBackend, corrupt: () throws -> Void) async throws {
        let data = pattern(3 * blockSize, seed: 7)
        try await b.write(key, offset: 0, data: data, version: v(1, 1))
        try corrupt()
        await assertThrowsCairn(.checksumMismatch(block: 1)) { try await b.read(key, offset: 100, length: 2 * blockSize) }
        let block0 = try await b.read(key, offset: 0, length: blockSize)
        XCTAssertEqual(block0, Array(data[0 ..< blockSize]))
        let (entry, raw) = try await b.readBlockRaw(key, index: 1)
        XCTAssertEqual(entry.state, .data)
        XCTAssertEqual(entry.crc, CRC32C.checksum(Array(data[blockSize ..< 2 * blockSize])))
        XCTAssertNotEqual(CRC32C.checksum(raw), entry.crc)
        // A partial write merged into the bad block must not make it look good.
        try await b.write(key, offset: blockSize + 10, data: [1, 2, 3], version: v(1, 2))
        await assertThrowsCairn(.checksumMismatch(block: 1)) { try await b.read(key, offset: blockSize, length: 10) }
        // Repair with the good copy at the current version.
        var good = Array(data[blockSize ..< 2 * blockSize])
        good.replaceSubrange(10 ..< 13, with: [1, 2, 3])
        let applied = try await b.putBlocks(key, blocks: [(1, BlockEntry(state: .data, crc: CRC32C.checksum(good), version: v(1, 2)), good)])
        XCTAssertEqual(applied, 1)
        let repaired = try await b.read(key, offset: blockSize, length: blockSize)
        XCTAssertEqual(repaired, good)
    }

    static func epochs(_ b: ChunkBackend) throws {
        XCTAssertEqual(b.epoch(of: 7), 0)
        XCTAssertEqual(try b.raiseEpoch(of: 7, to: 5), 5)
        XCTAssertEqual(try b.raiseEpoch(of: 7, to: 3), 5)
        XCTAssertEqual(b.epoch(of: 7), 5)
        XCTAssertEqual(b.epoch(of: 8), 0)
    }

    /// Copy-up: the copy has the source's data, holes and versions; later writes to either
    /// side stay there; an existing target is kept; a missing source copies nothing.
    static func copyChunk(_ b: ChunkBackend) async throws {
        let source = ChunkKey(volume: 7, chunk: 1), target = ChunkKey(volume: 8, chunk: 1)
        try await b.write(source, offset: blockSize, data: pattern(3 * blockSize, seed: 4), version: v(3, 9))
        try await b.trim(source, offset: 2 * blockSize, length: blockSize, version: v(3, 10))
        let copied = try await b.copyChunk(from: source, to: target)
        XCTAssertTrue(copied)
        let sourceBytes = try await b.read(source, offset: 0, length: 5 * blockSize)
        let targetBytes = try await b.read(target, offset: 0, length: 5 * blockSize)
        XCTAssertEqual(targetBytes, sourceBytes)
        let sourceTable = try await b.blockTable(source, first: 0, count: 8)
        let targetTable = try await b.blockTable(target, first: 0, count: 8)
        XCTAssertEqual(targetTable, sourceTable, "versions and holes are copied as they are")
        XCTAssertEqual(targetTable[2].state, .hole)
        // Independent afterwards.
        try await b.write(target, offset: 0, data: pattern(blockSize, seed: 5), version: v(4, 1))
        let sourceHead = try await b.read(source, offset: 0, length: blockSize)
        XCTAssertEqual(sourceHead, [UInt8](repeating: 0, count: blockSize))
        // A repeated order keeps what the target has.
        let again = try await b.copyChunk(from: source, to: target)
        XCTAssertFalse(again)
        let targetHead = try await b.read(target, offset: 0, length: blockSize)
        XCTAssertEqual(targetHead, pattern(blockSize, seed: 5))
        // Nothing to copy from.
        let none = try await b.copyChunk(from: ChunkKey(volume: 7, chunk: 9), to: ChunkKey(volume: 8, chunk: 9))
        XCTAssertFalse(none)
        XCTAssertFalse(b.inventory().contains(ChunkKey(volume: 8, chunk: 9)))
        XCTAssertTrue(b.inventory().contains(target))
    }

    static func inventoryAndDelete(_ b: ChunkBackend) async throws {
        let a = ChunkKey(volume: 1, chunk: 0), c = ChunkKey(volume: 1, chunk: 5), d = ChunkKey(volume: 2, chunk: 1)
        for k in [a, c, d] { try await b.write(k, offset: 0, data: [1], version: v(1, 1)) }
        XCTAssertEqual(b.inventory(), [a, c, d])
        try await b.deleteChunk(c)
        XCTAssertEqual(b.inventory(), [a, d])
        let gone = try await b.read(c, offset: 0, length: 1)
        XCTAssertEqual(gone, [0])
        _ = try b.raiseEpoch(of: 1, to: 4)
        try await b.deleteVolume(1)
        XCTAssertEqual(b.inventory(), [d])
        XCTAssertEqual(b.epoch(of: 1), 0)
        // A deleted chunk can be written again from scratch.
        try await b.write(c, offset: blockSize, data: [9], version: v(1, 2))
        let again = try await b.read(c, offset: 0, length: 1)
        XCTAssertEqual(again, [0])
    }
}

extension ChunkBackendChecks {
    /// Writes of every shape (aligned, partial head, partial tail, both, inside one block,
    /// whole blocks between partial ends), through both write entry points, checked
    /// against a model of the chunk's bytes and the CRC of every block.
    static func writeShapes(_ b: ChunkBackend) async throws {
        let key = ChunkKey(volume: 0x5A, chunk: 1)
        let regionBlocks = 12
        var model = [UInt8](repeating: 0, count: regionBlocks * blockSize)
        let shapes: [(offset: Int, length: Int)] = [
            (0, blockSize), (blockSize, 3 * blockSize),           // aligned
            (2 * blockSize + 100, 300),                           // inside one block
            (3 * blockSize + 4000, 96),                           // ends on a boundary
            (4 * blockSize, 10),                                  // starts on a boundary
            (5 * blockSize - 7, 7 + 2 * blockSize + 9),           // partial head, 2 whole, partial tail
            (8 * blockSize + 1, 3 * blockSize - 1),               // partial head, whole blocks to the end
            (9 * blockSize, 2 * blockSize + 1),                   // whole blocks, partial tail
            (blockSize - 1, 2),                                   // across one boundary, no whole block
        ]
        for (n, shape) in shapes.enumerated() {
            let data = pattern(shape.length, seed: UInt8(n + 10))
            let version = v(2, UInt64(n + 1))
            if n % 2 == 0 {
                try await b.write(key, offset: shape.offset, data: data, version: version)
            } else {
                try await b.write(key, offset: shape.offset, payload: ChunkPayload(copying: data), version: version)
            }
            model.replaceSubrange(shape.offset ..< shape.offset + shape.length, with: data)
            let back = try await b.read(key, offset: 0, length: model.count)
            XCTAssertEqual(back, model, "after write \(n) at \(shape.offset)+\(shape.length)")
        }
        let table = try await b.blockTable(key, first: 0, count: regionBlocks)
        for (i, entry) in table.enumerated() {
            XCTAssertEqual(entry.state, .data, "block \(i)")
            XCTAssertEqual(entry.crc, CRC32C.checksum(Array(model[i * blockSize ..< (i + 1) * blockSize])), "block \(i)")
        }
    }
}
