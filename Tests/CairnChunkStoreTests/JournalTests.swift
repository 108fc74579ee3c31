import CairnCore
import Foundation
import XCTest
@testable import CairnChunkStore

final class JournalTests: XCTestCase {
    private var directory = ""

    override func setUp() {
        directory = "/tmp/cairn-journal-\(UUID().uuidString)"
        try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: directory) }

    private func openJournal() throws -> Journal {
        let journal = try Journal(path: "\(directory)/journal", capacity: 8 << 20, chunkSize: 1 << 20)
        _ = try journal.openHeader()
        return journal
    }

    /// One batch mixing borrowed payloads (odd lengths, so padding follows them), copied
    /// repair blocks and payload-less records, more pieces than one pwritev takes; replay
    /// gives back every record and payload in order, and the next batch follows on.
    func testMixedBatchWritesWithPwritevAndReplays() throws {
        let journal = try openJournal()
        var batch = journal.newBatch()
        var expected: [(JournalRecord, [UInt8])] = []
        let owners = (0..<700).map { ChunkPayload(copying: pattern(100 + $0 * 7, seed: UInt8($0 % 200))) }
        for i in 0..<owners.count {
            let key = ChunkKey(volume: 3, chunk: UInt32(i % 5))
            let whole = owners[i]
            // Borrow the middle of the payload, so the range handling is exercised too.
            let range = 1 ..< whole.count - 1
            let write = JournalRecord(type: .write, key: key, offset: i * 3, length: range.count,
                                      version: v(1, UInt64(i)), payloadLength: range.count)
            batch.append(write, borrowing: whole, range: range)
            expected.append((write, [UInt8](whole.bytes[range])))
            switch i % 3 {
            case 0:
                let block = pattern(blockSize, seed: UInt8(i % 256))
                let put = JournalRecord(type: .putBlock, key: key, offset: blockSize, length: blockSize, version: v(1, 9),
                                        entryState: .data, entryCRC: CRC32C.checksum(block), payloadLength: blockSize)
                block.withUnsafeBytes { batch.append(put, payload: $0) }
                expected.append((put, block))
            case 1:
                let trim = JournalRecord(type: .trim, key: key, offset: 10, length: 20, version: v(1, 10))
                batch.append(trim, payload: nil)
                expected.append((trim, []))
            default:
                break
            }
        }
        XCTAssertGreaterThan(2 * owners.count, Sys.iovecsPerCallMax, "the batch needs more than one pwritev")
        try journal.append(batch)
        var more = journal.newBatch()
        let last = JournalRecord(type: .deleteChunk, key: ChunkKey(volume: 3, chunk: 1))
        more.append(last, payload: nil)
        expected.append((last, []))
        try journal.append(more)
        let end = journal.writePosition
        journal.close()

        let reopened = try openJournal()
        var seen: [(JournalRecord, [UInt8])] = []
        try reopened.replay { record, payload in seen.append((record, [UInt8](payload))) }
        XCTAssertEqual(seen.count, expected.count)
        for (got, want) in zip(seen, expected) {
            XCTAssertEqual(got.0.type, want.0.type)
            XCTAssertEqual(got.0.key, want.0.key)
            XCTAssertEqual(got.0.offset, want.0.offset)
            XCTAssertEqual(got.0.length, want.0.length)
            XCTAssertEqual(got.0.version, want.0.version)
            XCTAssertEqual(got.0.entryState, want.0.entryState)
            XCTAssertEqual(got.0.entryCRC, want.0.entryCRC)
            XCTAssertEqual(got.1, want.1)
        }
        XCTAssertEqual(reopened.writePosition, end)
        XCTAssertEqual(reopened.nextSequence, UInt64(expected.count))
    }

    /// pwritevFull writes the concatenation of many pieces, including empty ones.
    func testPwritevFullWritesEveryPiece() throws {
        let path = "\(directory)/pieces"
        let fd = try XCTUnwrap(try Sys.open(path, O_RDWR | O_CREAT))
        defer { close(fd) }
        let pieces = (0..<2500).map { pattern($0 % 13, seed: UInt8($0 % 256)) }
        var iovecs: [iovec] = []
        let storage = pieces.map { ChunkPayload(copying: $0) }
        for p in storage {
            iovecs.append(iovec(iov_base: UnsafeMutableRawPointer(mutating: p.bytes.baseAddress), iov_len: p.count))
        }
        try withExtendedLifetime(storage) { try Sys.pwritevFull(fd, &iovecs, 5, path) }
        let expected = pieces.flatMap { $0 }
        var back = [UInt8](repeating: 0, count: expected.count)
        try back.withUnsafeMutableBytes { try Sys.preadFull(fd, $0, 5, path) }
        XCTAssertEqual(back, expected)
    }
}
