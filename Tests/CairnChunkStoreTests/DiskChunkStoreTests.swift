import CairnCore
import Foundation
import XCTest
@testable import CairnChunkStore

final class DiskChunkStoreTests: XCTestCase {
    var directory = ""
    private var stores: [DiskChunkStore] = []
    let chunkSize = 1 << 20
    let journalBytes = 4 << 20

    override func setUp() {
        directory = "/tmp/cairn-chunkstore-\(UUID().uuidString)"
    }

    override func tearDown() {
        for store in stores { store.simulateCrash() }
        try? FileManager.default.removeItem(atPath: directory)
    }

    func open(chunkSize: Int? = nil) throws -> DiskChunkStore {
        let store = try DiskChunkStore(directory: directory, chunkSize: chunkSize ?? self.chunkSize, journalBytes: journalBytes)
        stores.append(store)
        return store
    }

    func chunkPath(_ key: ChunkKey) -> String {
        "\(directory)/chunks/\(ChunkKey.hex(key.volume))/\(key.chunk).chunk"
    }

    var dataOffset: Int { ChunkFile.tableBytes(try! ChunkGeometry(chunkSize: chunkSize)) }

    /// Overwrites bytes of a file, as a disk or a lost page cache would.
    func overwrite(_ path: String, at offset: Int, with bytes: [UInt8]) throws {
        let handle = try XCTUnwrap(FileHandle(forUpdatingAtPath: path))
        try handle.seek(toOffset: UInt64(offset))
        try handle.write(contentsOf: Data(bytes))
        try handle.close()
    }

    func testRoundTrip() async throws { try await ChunkBackendChecks.roundTrip(try open()) }
    func testTrim() async throws { try await ChunkBackendChecks.trim(try open()) }
    func testWriteShapes() async throws { try await ChunkBackendChecks.writeShapes(try open()) }
    func testPutBlocksVersionRule() async throws { try await ChunkBackendChecks.putBlocksVersionRule(try open()) }
    func testInventoryAndDelete() async throws {
        let store = try open()
        try await ChunkBackendChecks.inventoryAndDelete(store)
        XCTAssertFalse(FileManager.default.fileExists(atPath: chunkPath(ChunkKey(volume: 1, chunk: 0))))
        XCTAssertFalse(FileManager.default.fileExists(atPath: "\(directory)/chunks/\(ChunkKey.hex(1))/5.chunk") &&
                       store.inventory().isEmpty)
        XCTAssertTrue(FileManager.default.fileExists(atPath: chunkPath(ChunkKey(volume: 2, chunk: 1))))
    }

    func testCorruptionOnDisk() async throws {
        let store = try open()
        let path = chunkPath(ChunkBackendChecks.key)
        try await ChunkBackendChecks.corruption(store) {
            try overwrite(path, at: dataOffset + blockSize + 7, with: [0xEE])
        }
    }

    func testEpochsPersistAcrossReopen() async throws {
        let store = try open()
        try ChunkBackendChecks.epochs(store)
        try store.close()
        let reopened = try open()
        XCTAssertEqual(reopened.epoch(of: 7), 5)
        XCTAssertEqual(try reopened.raiseEpoch(of: 7, to: 4), 5)
    }

    func testTrimGivesSpaceBack() async throws {
        let store = try open()
        let key = ChunkKey(volume: 1, chunk: 0)
        try await store.write(key, offset: 0, data: pattern(chunkSize, seed: 1), version: v(1, 1))
        XCTAssertGreaterThanOrEqual(Sys.allocatedBytes(chunkPath(key)), UInt64(chunkSize))
        let used = store.usage().usedBytes
        try await store.trim(key, offset: 0, length: chunkSize, version: v(1, 2))
        XCTAssertLessThan(Sys.allocatedBytes(chunkPath(key)), UInt64(64 << 10))
        XCTAssertLessThan(store.usage().usedBytes, used)
        XCTAssertGreaterThan(store.usage().capacityBytes, 0)
    }

    func testConcurrentWritersCheckpointAndReopen() async throws {
        let store = try open()
        let writers = 200
        let size = 4 * blockSize
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<writers {
                group.addTask {
                    let key = ChunkKey(volume: 5, chunk: UInt32(i % 4))
                    try await store.write(key, offset: (i / 4) * size, data: pattern(size, seed: UInt8(i % 256)),
                                          version: v(1, UInt64(i)))
                }
            }
            try await group.waitForAll()
        }
        XCTAssertGreaterThan(store.journal.generation, 1, "3 MiB through a 4 MiB journal must checkpoint")
        for i in 0..<writers {
            let back = try await store.read(ChunkKey(volume: 5, chunk: UInt32(i % 4)), offset: (i / 4) * size, length: size)
            XCTAssertEqual(back, pattern(size, seed: UInt8(i % 256)))
        }
        try store.close()
        let reopened = try open()
        for i in 0..<writers {
            let back = try await reopened.read(ChunkKey(volume: 5, chunk: UInt32(i % 4)), offset: (i / 4) * size, length: size)
            XCTAssertEqual(back, pattern(size, seed: UInt8(i % 256)))
        }
        XCTAssertEqual(reopened.inventory().count, 4)
    }

    func testLargeWriteThroughSmallJournal() async throws {
        let store = try open(chunkSize: 16 << 20)
        let key = ChunkKey(volume: 3, chunk: 0)
        let data = pattern(16 << 20, seed: 9)
        try await store.write(key, offset: 0, data: data, version: v(1, 1))
        let back = try await store.read(key, offset: 0, length: data.count)
        XCTAssertEqual(back, data)
    }

    func testCrashRecoveryReplaysJournal() async throws {
        let store = try open()
        let key = ChunkKey(volume: 1, chunk: 2)
        let first = pattern(2 * blockSize + 300, seed: 1)
        try await store.write(key, offset: 100, data: first, version: v(1, 1))
        try await store.trim(key, offset: 0, length: 50, version: v(1, 2))
        try await store.putBlocks(key, blocks: [(5, BlockEntry(state: .data, crc: CRC32C.checksum(pattern(blockSize, seed: 2)),
                                                            version: v(1, 3)), pattern(blockSize, seed: 2))])
        let deleted = ChunkKey(volume: 1, chunk: 3)
        try await store.write(deleted, offset: 0, data: [1], version: v(1, 4))
        try await store.deleteChunk(deleted)
        store.simulateCrash()
        // The page cache is lost: the chunk file's table and data are garbage.
        try overwrite(chunkPath(key), at: 0, with: [UInt8](repeating: 0, count: 4 * 24))
        try overwrite(chunkPath(key), at: dataOffset, with: [UInt8](repeating: 0x5A, count: 6 * blockSize))
        let reopened = try open()
        var expected = [UInt8](repeating: 0, count: 6 * blockSize)
        expected.replaceSubrange(100 ..< 100 + first.count, with: first)
        expected.replaceSubrange(5 * blockSize ..< 6 * blockSize, with: pattern(blockSize, seed: 2))
        let back = try await reopened.read(key, offset: 0, length: expected.count)
        XCTAssertEqual(back, expected)
        XCTAssertEqual(reopened.inventory(), [key], "a deleted chunk is not resurrected by replay")
    }

    /// Many concurrent unaligned writes from borrowed payloads (group commits of many
    /// records, pwritev with more iovecs than one call takes), then a crash that loses the
    /// chunk files' page cache: replay alone must give back every acknowledged byte.
    func testBorrowedPayloadBatchesReplayAfterCrash() async throws {
        let store = try open()
        let key = ChunkKey(volume: 4, chunk: 0)
        let writers = 600
        let stride = 1000  // Unaligned offsets and lengths, so records need padding.
        let owners = (0..<writers).map { ChunkPayload(copying: pattern(stride - 3, seed: UInt8($0 % 251))) }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<writers {
                group.addTask {
                    try await store.write(key, offset: i * stride + 1, payload: owners[i], version: v(1, UInt64(i + 1)))
                }
            }
            try await group.waitForAll()
        }
        store.simulateCrash()
        try overwrite(chunkPath(key), at: 0, with: [UInt8](repeating: 0, count: dataOffset + writers * stride + blockSize))
        let reopened = try open()
        var expected = [UInt8](repeating: 0, count: writers * stride)
        for i in 0..<writers { expected.replaceSubrange(i * stride + 1 ..< i * stride + stride - 2, with: [UInt8](owners[i].bytes)) }
        let back = try await reopened.read(key, offset: 0, length: expected.count)
        XCTAssertEqual(back, expected)
    }

    /// Repair copies older than writes in flight never win, whatever the interleaving:
    /// the version rule must judge against the writes even while the applier is still
    /// behind the committer (it drains first).
    func testOlderRepairCopiesNeverOverwriteWritesInFlight() async throws {
        let store = try open()
        let key = ChunkKey(volume: 6, chunk: 0)
        let blocks = 64
        let old = pattern(blockSize, seed: 99)
        let oldEntry = BlockEntry(state: .data, crc: CRC32C.checksum(old), version: v(1, 1))
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<blocks {
                group.addTask {
                    try await store.write(key, offset: i * blockSize, data: pattern(blockSize, seed: UInt8(i)), version: v(2, UInt64(i + 1)))
                }
                group.addTask {
                    _ = try await store.putBlocks(key, blocks: [(i, oldEntry, old)])
                }
            }
            try await group.waitForAll()
        }
        for i in 0..<blocks {
            let back = try await store.read(key, offset: i * blockSize, length: blockSize)
            XCTAssertEqual(back, pattern(blockSize, seed: UInt8(i)), "block \(i)")
        }
    }

    func testTornJournalTailIsIgnored() async throws {
        let store = try open()
        let key = ChunkKey(volume: 1, chunk: 0)
        try await store.write(key, offset: 0, data: pattern(blockSize, seed: 1), version: v(1, 1))
        try await store.write(key, offset: blockSize, data: pattern(blockSize, seed: 2), version: v(1, 2))
        store.simulateCrash()
        // Tear the second record (after the first one: header + one block of payload).
        let second = Journal.recordsStart + JournalRecord.headerBytes + blockSize
        try overwrite("\(directory)/journal", at: second + 200, with: [UInt8](repeating: 0xFF, count: 16))
        // Nothing of either write reached the chunk file.
        try overwrite(chunkPath(key), at: 0, with: [UInt8](repeating: 0, count: dataOffset + 2 * blockSize))
        let reopened = try open()
        let back = try await reopened.read(key, offset: 0, length: 2 * blockSize)
        XCTAssertEqual(back, pattern(blockSize, seed: 1) + [UInt8](repeating: 0, count: blockSize))
        // The recovered store keeps working and survives another crash.
        try await reopened.write(key, offset: blockSize, data: pattern(blockSize, seed: 3), version: v(1, 3))
        reopened.simulateCrash()
        let third = try open()
        let again = try await third.read(key, offset: 0, length: 2 * blockSize)
        XCTAssertEqual(again, pattern(blockSize, seed: 1) + pattern(blockSize, seed: 3))
    }

    func testCopyChunk() async throws { try await ChunkBackendChecks.copyChunk(try open()) }

    func testACopyIsSparseAndSurvivesACrashAndOlderJournalRecords() async throws {
        let store = try open()
        let source = ChunkKey(volume: 1, chunk: 0), target = ChunkKey(volume: 2, chunk: 0)
        // An earlier file of the target key, deleted: its delete record is in the journal.
        try await store.write(target, offset: 0, data: [9], version: v(1, 1))
        try await store.deleteChunk(target)
        try await store.write(source, offset: 5 * blockSize, data: pattern(2 * blockSize, seed: 6), version: v(2, 1))
        let copied = try await store.copyChunk(from: source, to: target)
        XCTAssertTrue(copied)
        try await store.write(target, offset: 0, data: pattern(100, seed: 7), version: v(3, 1))
        XCTAssertLessThan(Sys.allocatedBytes(chunkPath(target)), UInt64(dataOffset + 16 * blockSize),
                          "holes of the source stay holes in the copy")
        store.simulateCrash()
        let reopened = try open()
        var expected = [UInt8](repeating: 0, count: 7 * blockSize)
        expected.replaceSubrange(0..<100, with: pattern(100, seed: 7))
        expected.replaceSubrange(5 * blockSize..<7 * blockSize, with: pattern(2 * blockSize, seed: 6))
        let back = try await reopened.read(target, offset: 0, length: 7 * blockSize)
        XCTAssertEqual(back, expected, "replay neither deletes the copy nor loses the write after it")
        XCTAssertFalse(FileManager.default.fileExists(atPath: chunkPath(target) + ".copy"))
    }

    func testSecondOpenOfLockedDirectoryFails() throws {
        _ = try open()
        XCTAssertThrowsError(try DiskChunkStore(directory: directory, chunkSize: chunkSize, journalBytes: journalBytes))
    }
}
