import CairnCore
import Foundation
import XCTest
@testable import CairnChunkStore

/// Crashes around the background checkpoint of a journal generation (see Journal.swift's
/// crash argument): before its files are synced, after they are but before the header that
/// retires it, after the header; a journal that fills while a checkpoint is held; format 1
/// journals. "Crash" drops the chunk files' unsynced writes by overwriting them.
extension DiskChunkStoreTests {
    private static let piece = 256 << 10
    /// Chunks large enough for several segments of the 4 MiB test journal.
    private static let bigChunk = 16 << 20
    private var bigDataOffset: Int { ChunkFile.tableBytes(try! ChunkGeometry(chunkSize: Self.bigChunk)) }

    /// Writes `piece`-sized writes to `key` from `offset` until the committer rotated to
    /// `generation`; returns the offset after the last write.
    private func writeUntilGeneration(_ store: DiskChunkStore, _ generation: UInt64, _ key: ChunkKey,
                                      seed: UInt8) async throws -> Int {
        var offset = 0
        while store.journal.generation < generation {
            XCTAssertLessThan(offset, Self.bigChunk, "the journal never rotated")
            try await store.write(key, offset: offset, data: pattern(Self.piece, seed: seed), version: v(1, UInt64(offset + 1)))
            offset += Self.piece
        }
        return offset
    }

    /// Polls (the checkpointer runs on its own thread) until `condition` holds.
    private func eventually(_ what: String, _ condition: () -> Bool) async throws {
        for _ in 0..<2000 where !condition() { try await Task.sleep(nanoseconds: 10_000_000) }
        XCTAssertTrue(condition(), "never: \(what)")
    }

    private func expectPattern(_ store: DiskChunkStore, _ key: ChunkKey, bytes: Int, seed: UInt8,
                               file: StaticString = #filePath, line: UInt = #line) async throws {
        let back = try await store.read(key, offset: 0, length: bytes)
        XCTAssertTrue(back == pattern(bytes, seed: seed), "\(key): bytes differ", file: file, line: line)
    }

    /// Records in both segments, the older generation not retired, nothing synced: replay
    /// applies both generations, in order (the newer write of a byte wins).
    func testCrashBeforeABackgroundCheckpointSyncsReplaysBothGenerationsInOrder() async throws {
        let store = try open(chunkSize: Self.bigChunk)
        store.checkpointHold = .beforeSync
        let older = ChunkKey(volume: 1, chunk: 0), newer = ChunkKey(volume: 1, chunk: 1)
        let olderBytes = try await writeUntilGeneration(store, 2, older, seed: 1)
        try await eventually("the checkpointer holds") { store.checkpointHeldAt == .beforeSync }
        try await store.write(newer, offset: 0, data: pattern(Self.piece, seed: 2), version: v(1, 1))
        try await store.write(older, offset: 0, data: pattern(Self.piece, seed: 3), version: v(2, 1))
        XCTAssertEqual(store.journal.oldestGeneration, 1)
        XCTAssertEqual(store.journal.generation, 2)
        store.simulateCrash()
        try overwrite(chunkPath(older), at: 0, with: [UInt8](repeating: 0x5A, count: bigDataOffset + olderBytes))
        try overwrite(chunkPath(newer), at: 0, with: [UInt8](repeating: 0x5A, count: bigDataOffset + Self.piece))
        let reopened = try open(chunkSize: Self.bigChunk)
        let first = try await reopened.read(older, offset: 0, length: Self.piece)
        XCTAssertTrue(first == pattern(Self.piece, seed: 3), "generation 2's write replayed after generation 1's")
        let rest = try await reopened.read(older, offset: Self.piece, length: olderBytes - Self.piece)
        XCTAssertTrue(rest == pattern(olderBytes - Self.piece, seed: 1), "generation 1's writes replayed")
        try await expectPattern(reopened, newer, bytes: Self.piece, seed: 2)
    }

    /// The older generation's files are synced but its header was never written: the same
    /// two generations are replayed over them (idempotent).
    func testCrashBeforeTheRetiringHeaderReplaysBothGenerations() async throws {
        let store = try open(chunkSize: Self.bigChunk)
        store.checkpointHold = .beforeHeader
        let older = ChunkKey(volume: 2, chunk: 0), newer = ChunkKey(volume: 2, chunk: 1)
        let olderBytes = try await writeUntilGeneration(store, 2, older, seed: 4)
        try await eventually("the checkpointer synced and holds") { store.checkpointHeldAt == .beforeHeader }
        try await store.write(newer, offset: 0, data: pattern(Self.piece, seed: 5), version: v(1, 1))
        try await store.write(older, offset: 0, data: pattern(Self.piece, seed: 6), version: v(2, 1))
        XCTAssertEqual(store.journal.oldestGeneration, 1)
        store.simulateCrash()
        // Synced: generation 1's data of `older`. Lost: the rest.
        try overwrite(chunkPath(older), at: bigDataOffset, with: pattern(Self.piece, seed: 4))
        try overwrite(chunkPath(newer), at: 0, with: [UInt8](repeating: 0x5A, count: bigDataOffset + Self.piece))
        let reopened = try open(chunkSize: Self.bigChunk)
        let first = try await reopened.read(older, offset: 0, length: olderBytes)
        XCTAssertTrue(first == pattern(Self.piece, seed: 6) + pattern(olderBytes - Self.piece, seed: 4), "both generations replayed in order")
        try await expectPattern(reopened, newer, bytes: Self.piece, seed: 5)
    }

    /// After headers retired generations 1 to 3, recovery replays generation 4 (in segment
    /// 1, over generation 2's retired records) and keeps working through another crash.
    func testCrashAfterTheRetiringHeaderReplaysTheLiveGenerations() async throws {
        let store = try open(chunkSize: Self.bigChunk)
        let keys = (0..<3).map { ChunkKey(volume: 3, chunk: UInt32($0)) }
        var written: [Int] = []
        for (i, key) in keys.enumerated() {
            written.append(try await writeUntilGeneration(store, UInt64(i + 2), key, seed: UInt8(10 + i)))
            try await eventually("generation \(i + 1) retired") { store.journal.oldestGeneration == UInt64(i + 2) }
        }
        let last = ChunkKey(volume: 3, chunk: 9)
        try await store.write(last, offset: 0, data: pattern(Self.piece, seed: 20), version: v(1, 1))
        XCTAssertEqual(store.journal.generation, 4)
        store.simulateCrash()
        // Only generation 4 (the live one) holds `last`; lose its file.
        try overwrite(chunkPath(last), at: 0, with: [UInt8](repeating: 0x5A, count: bigDataOffset + Self.piece))
        let reopened = try open(chunkSize: Self.bigChunk)
        for (i, key) in keys.enumerated() { try await expectPattern(reopened, key, bytes: written[i], seed: UInt8(10 + i)) }
        try await expectPattern(reopened, last, bytes: Self.piece, seed: 20)
        try await reopened.write(last, offset: Self.piece, data: pattern(Self.piece, seed: 20), version: v(1, 2))
        reopened.simulateCrash()
        // The open's checkpoint synced the first piece; the second one's data is lost.
        try overwrite(chunkPath(last), at: bigDataOffset + Self.piece, with: [UInt8](repeating: 0x5A, count: Self.piece))
        let third = try open(chunkSize: Self.bigChunk)
        try await expectPattern(third, last, bytes: 2 * Self.piece, seed: 20)
    }

    /// A committer that fills the next segment while the checkpoint of the previous one is
    /// held waits (it never rotates onto un-retired records); a crash then keeps every
    /// acknowledged write, and releasing the checkpoint instead lets every write finish.
    func testAJournalFillingDuringACheckpointWaitsAndLosesNothing() async throws {
        for crash in [true, false] {
            let store = try open(chunkSize: Self.bigChunk)
            store.checkpointHold = .beforeSync
            let key = ChunkKey(volume: 4, chunk: crash ? 0 : 1)
            let first = try await writeUntilGeneration(store, 2, key, seed: 30)
            let done = Completed()
            // Five times the segment: cannot fit while generation 1 is not retired.
            let writes = 5 * store.journal.segmentBytes / Self.piece
            let writer = Task {
                for i in 0..<writes {
                    let offset = first + i * Self.piece
                    try await store.write(key, offset: offset, data: pattern(Self.piece, seed: 31), version: v(2, UInt64(i + 1)))
                    done.add(offset)
                }
            }
            try await eventually("the segment fills") { store.committerWaitsForCheckpoint }
            XCTAssertEqual(store.journal.generation, 2, "no rotation onto generation 1's segment")
            XCTAssertEqual(store.journal.oldestGeneration, 1)
            if crash {
                store.simulateCrash()
                _ = await writer.result
                let acknowledged = done.offsets
                XCTAssertLessThan(acknowledged.count, writes)
                try overwrite(chunkPath(key), at: 0, with: [UInt8](repeating: 0x5A, count: bigDataOffset + first + writes * Self.piece))
                let reopened = try open(chunkSize: Self.bigChunk)
                for offset in Set(acknowledged) {
                    let back = try await reopened.read(key, offset: offset, length: Self.piece)
                    XCTAssertTrue(back == pattern(Self.piece, seed: 31), "acknowledged write at \(offset) lost")
                }
                let back = try await reopened.read(key, offset: 0, length: first)
                XCTAssertTrue(back == pattern(first, seed: 30), "generation 1's writes lost")
                reopened.simulateCrash()
            } else {
                store.checkpointHold = nil
                try await writer.value
                XCTAssertEqual(done.count, writes)
                XCTAssertGreaterThan(store.journal.generation, 3)
                try store.close()
                let reopened = try open(chunkSize: Self.bigChunk)
                let back = try await reopened.read(key, offset: 0, length: first + writes * Self.piece)
                XCTAssertTrue(back == pattern(first, seed: 30) + pattern(writes * Self.piece, seed: 31), "writes lost")
                try reopened.close()
            }
            try? FileManager.default.removeItem(atPath: directory)
        }
    }

    /// A copy-up checkpoints synchronously (a new generation) in the middle of a committer
    /// round; the writes queued behind it in the same round go to the new generation and
    /// survive a crash. The round is assembled while the committer waits for a held
    /// checkpoint.
    func testWritesInTheRoundOfACopyAreJournaledAfterItsCheckpoint() async throws {
        let store = try open(chunkSize: Self.bigChunk)
        let source = ChunkKey(volume: 6, chunk: 0), target = ChunkKey(volume: 7, chunk: 0)
        let filler = ChunkKey(volume: 6, chunk: 1), later = ChunkKey(volume: 6, chunk: 2)
        try await store.write(source, offset: 0, data: pattern(Self.piece, seed: 50), version: v(1, 1))
        store.checkpointHold = .beforeSync
        let first = try await writeUntilGeneration(store, 2, filler, seed: 51)
        // One write more than generation 2's segment holds: the last one waits.
        let blocking = store.journal.bytesFree / (Self.piece + JournalRecord.headerBytes) + 1
        let blocker = Task {
            for i in 0..<blocking {
                try await store.write(filler, offset: first + i * Self.piece, data: pattern(Self.piece, seed: 51), version: v(1, 1))
            }
        }
        try await eventually("the committer waits for the checkpoint") { store.committerWaitsForCheckpoint }
        let copy = Task { try await store.copyChunk(from: source, to: target) }
        try await eventually("the copy is queued") { store.mutationsPending == 1 }
        let writes = Task {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for i in 0..<3 {  // Less than half a segment: no checkpoint syncs them.
                    group.addTask {
                        try await store.write(later, offset: i * Self.piece, data: pattern(Self.piece, seed: 52), version: v(1, 1))
                    }
                }
                try await group.waitForAll()
            }
        }
        try await eventually("the writes are queued behind it") { store.mutationsPending == 4 }
        store.checkpointHold = nil
        try await blocker.value
        let copied = try await copy.value
        XCTAssertTrue(copied)
        try await writes.value
        store.simulateCrash()
        try overwrite(chunkPath(later), at: bigDataOffset, with: [UInt8](repeating: 0x5A, count: 3 * Self.piece))
        let reopened = try open(chunkSize: Self.bigChunk)
        try await expectPattern(reopened, later, bytes: 3 * Self.piece, seed: 52)
        try await expectPattern(reopened, target, bytes: Self.piece, seed: 50)
        try await expectPattern(reopened, filler, bytes: first + blocking * Self.piece, seed: 51)
    }

    /// A journal whose header is of format 1 (one record area) is replayed and rewritten
    /// as format 2; an unknown format is refused with an error that names it.
    func testAFormat1JournalIsReplayedAndAnUnknownFormatRefused() async throws {
        let store = try open(chunkSize: Self.bigChunk)
        let key = ChunkKey(volume: 5, chunk: 0)
        try await store.write(key, offset: 0, data: pattern(Self.piece, seed: 40), version: v(1, 1))
        store.simulateCrash()
        try overwrite(chunkPath(key), at: 0, with: [UInt8](repeating: 0x5A, count: bigDataOffset + Self.piece))
        // Generation 1's header (slot 1) as the previous version wrote it: the records of
        // generation 1 sit at the start of the record area in both formats.
        try setHeaderFormat(1, slot: 1)
        let reopened = try open(chunkSize: Self.bigChunk)
        try await expectPattern(reopened, key, bytes: Self.piece, seed: 40)
        try await reopened.write(key, offset: Self.piece, data: pattern(Self.piece, seed: 40), version: v(1, 2))
        reopened.simulateCrash()
        try overwrite(chunkPath(key), at: bigDataOffset + Self.piece, with: [UInt8](repeating: 0x5A, count: Self.piece))
        let third = try open(chunkSize: Self.bigChunk)
        try await expectPattern(third, key, bytes: 2 * Self.piece, seed: 40)
        XCTAssertEqual(third.journal.oldestGeneration, 3, "format 1's generation 1 retired, then 2")
        third.simulateCrash()
        try setHeaderFormat(7, slot: 1)
        XCTAssertThrowsError(try open(chunkSize: Self.bigChunk)) { error in
            XCTAssertTrue("\(error)".contains("format 7"), "\(error)")
        }
    }

    /// Rewrites the format field of a header slot, with a valid CRC.
    private func setHeaderFormat(_ format: UInt32, slot: Int) throws {
        let path = "\(directory)/journal"
        let handle = try XCTUnwrap(FileHandle(forUpdatingAtPath: path))
        try handle.seek(toOffset: UInt64(slot * Journal.headerSlotBytes))
        var header = [UInt8](try XCTUnwrap(handle.read(upToCount: 48)))
        handle.closeFile()
        header.withUnsafeMutableBytes { b in
            b.storeBytes(of: format.littleEndian, toByteOffset: 8, as: UInt32.self)
            let crc = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: b[0..<40]))
            b.storeBytes(of: crc.littleEndian, toByteOffset: 40, as: UInt32.self)
        }
        try overwrite(path, at: slot * Journal.headerSlotBytes, with: header)
    }
}

/// Offsets of the writes acknowledged so far (appended by a writer task, read by the test).
private final class Completed: @unchecked Sendable {
    private let lock = NSLock()
    private var all: [Int] = []
    func add(_ offset: Int) { lock.withLock { all.append(offset) } }
    var offsets: [Int] { lock.withLock { all } }
    var count: Int { offsets.count }
}
