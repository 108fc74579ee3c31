// The write-ahead journal of a data directory.
//
// Format 2 (all integers little endian):
//   [0, 4096)     header slot 0    [4096, 8192) header slot 1    [8192, end) two segments
//   segment:  (journalBytes - 8192) / 2 rounded down to 4 KiB; the records of generation g
//           start at the beginning of segment (g + 1) % 2 (odd generations in segment 0).
//   header: magic u64 "CAIRNJNL", format u32, pad u32, generation u64, chunkSize u64,
//           journalBytes u64, CRC32C u32 of the 40 bytes before it. Header h lives in slot
//           h % 2 and means "generations below h are retired; h and h + 1 are live".
//   record: 88-byte header then payload, padded to 8 bytes:
//           magic u32 "CJRN", type u8, entry state u8, pad u16, entry crc u32, payload
//           length u32, generation u64, sequence u64, volume u64, chunk u32, pad u32,
//           offset u64, length u64, version epoch u64, version seq u64, CRC32C u32 over
//           the first 80 header bytes and the payload, pad u32.
//   types:  1 write (payload = data), 2 trim, 3 put one block (offset = block index ×
//           4096; payload = the block for data entries), 4 delete chunk, 5 delete volume.
//
// Protocol: the committer thread takes every queued mutation, encodes their headers into
// one buffer, writes headers and payloads (borrowed where they lie, see JournalBatch) with
// pwritev and one fdatasync (group commit) at the end of the current generation's records,
// then applies them to the chunk files (page cache only) and only then resumes the
// callers. When the current generation g's segment is more than half full and no
// checkpoint is running, or full, the committer rotates: it hands the set of chunk files
// and directories g touched to the checkpointer thread and appends generation g + 1 from
// the start of the other segment. The checkpointer fdatasyncs those files, fsyncs those
// directories, then writes header g + 1 and fdatasyncs it (g is retired), while the
// committer keeps acknowledging writes. Rotating again needs g retired: a committer that
// fills g + 1's segment first waits for the checkpointer (back-pressure). Open (after
// replay), close and chunk copies checkpoint synchronously: wait for the checkpointer, sync
// everything, retire every live generation one header at a time.
//
// Crash argument:
// - An acknowledged mutation has its record durable in the journal (fdatasync returned
//   before the caller resumed) in the generation being appended, after every earlier record
//   of that generation; every record of the previous generation was durable before the
//   first record of this one was written (one committer, appends in order).
// - Live records are never overwritten: generation g + 2 reuses g's segment only after
//   header g + 1 is durable, and that header is written only after every chunk file and
//   directory g's records touched was synced (they were applied before the rotation handed
//   the set over), so dropping g loses nothing. Header h + 1 is written only while h is the
//   newest header, so it overwrites slot (h + 1) % 2 = header h - 1, never the newest one.
// - Recovery reads the newest valid header h and replays generation h's records from its
//   segment's start, then generation h + 1's from the other one, each while magic,
//   generation, sequence (0, 1, 2, ...) and CRC hold. The first bad record ends a
//   generation's log: it and everything after it belong to a batch whose fdatasync never
//   returned, so none of it was acknowledged (and h + 1 has records only if h's last batch
//   completed). Records left in a segment by older generations fail the generation check;
//   a generation number is used by one segment once, so no stale record can pass it.
// - Crash during a background checkpoint: before header h + 1 is durable, h is the newest
//   header and both h and h + 1 are replayed in order (h's files may be partly synced:
//   harmless, see idempotence); after it, h + 1 and h + 2 are (h + 2's records, if any,
//   follow in h's old segment). A torn header write of h + 1 leaves h valid in the other
//   slot, which is the "before" case.
// - Replay is idempotent: every record is a deterministic function of the bytes it
//   names; a byte touched by some record ends up with the last record's value, and a byte
//   touched by none still has its value from the last checkpoint, whatever subset of the
//   applies reached the disk. Repair copies are judged (version rule) before they are
//   journaled, so their records are unconditional. Deletes are journaled too, so replay
//   does not resurrect a deleted chunk.
//
// Format 1 (before segments: one record area from 8192, header g meaning "replay g from
// the area's start") is still read: its records are the same, so open replays generation g
// over the whole area, syncs, and writes header g + 1 of format 2, which retires it (a torn
// write of that header leaves the format 1 header in the other slot: replayed again).
// Other formats are refused with an error naming them; nothing is guessed.
//
// Limits: one record carries at most `recordPayloadMax` bytes (a quarter of a segment;
// larger writes are split at block boundaries); a batch that would not fit the segment's
// free space rotates first (waiting for a running checkpoint).
import CairnCore
import Foundation
import Glibc

enum JournalRecordType: UInt8 {
    case write = 1, trim = 2, putBlock = 3, deleteChunk = 4, deleteVolume = 5
}

/// One journal record without its payload.
struct JournalRecord {
    var type: JournalRecordType
    var key: ChunkKey
    var offset: Int = 0
    var length: Int = 0
    var version: BlockVersion = .zero
    var entryState: BlockState = .hole
    var entryCRC: UInt32 = 0
    var payloadLength: Int = 0

    static let headerBytes = 88
    static let magic: UInt32 = 0x4E52_4A43  // "CJRN"

    var encodedBytes: Int { (Self.headerBytes + payloadLength + 7) & ~7 }
}

final class Journal {
    static let headerSlotBytes = 4096
    static let recordsStart = 2 * headerSlotBytes
    static let journalBytesMin = 1 << 20
    static let formatVersion: UInt32 = 2
    /// The format before segments: one record area from `recordsStart`, generation g's
    /// records from its start, header g meaning "replay g". Read once, then rewritten.
    static let formatVersionSingleArea: UInt32 = 1
    private static let magic: UInt64 = 0x4C4E_4A4E_5249_4143  // "CAIRNJNL"

    let path: String
    private(set) var fd: Int32
    let capacity: Int
    let chunkSize: Int
    /// Bytes of each of the two record segments (whole blocks).
    let segmentBytes: Int
    /// The generation being appended (committer only).
    private(set) var generation: UInt64 = 0
    private(set) var writePosition = Journal.recordsStart
    private(set) var nextSequence: UInt64 = 0
    /// The newest durable header's generation: records of older generations are retired.
    /// Written by the checkpointer, read by the committer; guarded by `headerLock`.
    private var oldest: UInt64 = 0
    private let headerLock = NSLock()
    /// The newest header is of `formatVersionSingleArea` (until the first retire).
    private(set) var isSingleArea = false

    var oldestGeneration: UInt64 { headerLock.withLock { oldest } }

    /// Largest payload of one record: a quarter of a segment, at most 4 MiB, whole blocks.
    var recordPayloadMax: Int { min(4 << 20, segmentBytes / 4 / blockSize * blockSize) }
    /// Bytes left in the segment being appended.
    var bytesFree: Int { segmentStart(generation) + segmentBytes - writePosition }
    /// The segment being appended is more than half full.
    var segmentHalfFull: Bool { writePosition - segmentStart(generation) > segmentBytes / 2 }

    /// Where the records of `generation` start: odd generations in segment 0, even in 1.
    func segmentStart(_ generation: UInt64) -> Int {
        Self.recordsStart + Int((generation + 1) % 2) * segmentBytes
    }

    /// Opens (creating and preallocating if needed) and locks the journal of a directory.
    init(path: String, capacity: Int, chunkSize: Int) throws {
        guard capacity >= Self.journalBytesMin, capacity % blockSize == 0 else {
            throw CairnError.invalidArgument("journal size \(capacity) must be a multiple of \(blockSize) and at least \(Self.journalBytesMin)")
        }
        self.path = path
        self.capacity = capacity
        self.chunkSize = chunkSize
        segmentBytes = (capacity - Self.recordsStart) / 2 / blockSize * blockSize
        fd = try Sys.open(path, O_RDWR | O_CREAT)!
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let error = Sys.error("flock (is another process using this directory?)", path)
            Glibc.close(fd)
            throw error
        }
    }

    deinit { close() }

    /// Closes the file, which also releases the directory lock.
    func close() {
        if fd >= 0 { Glibc.close(fd) }
        fd = -1
    }

    /// Reads the newest valid header; a new (empty) journal is formatted at generation 1.
    /// Returns false when the journal was new. A journal of format 1 is replayed and
    /// rewritten (see the header comment); other formats are refused.
    func openHeader() throws -> Bool {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw Sys.error("fstat", path) }
        let slots = try (0..<2).map { try readHeader(slot: $0) }
        if let best = slots.compactMap({ $0 }).max(by: { $0.generation < $1.generation }) {
            guard best.format == Self.formatVersion || best.format == Self.formatVersionSingleArea else {
                throw CairnError.invalidArgument(
                    "\(path) is a journal of format \(best.format); this version of Cairn reads formats 1 and 2 only. "
                    + "It may hold acknowledged writes: start the node with the Cairn version that wrote it")
            }
            isSingleArea = best.format == Self.formatVersionSingleArea
            guard best.chunkSize == chunkSize, best.capacity == capacity else {
                throw CairnError.invalidArgument(
                    "data directory was formatted with chunk size \(best.chunkSize) and journal \(best.capacity), not \(chunkSize) and \(capacity)")
            }
            headerLock.withLock { oldest = best.generation }
            startAppending(best.generation)
            if st.st_size < capacity { try preallocate() }
            return true
        }
        guard try isBlank(size: Int(st.st_size)) else {
            throw CairnError.io("\(path): no valid journal header; refusing to guess what was acknowledged")
        }
        try preallocate()
        try writeHeader(generation: 1)
        startAppending(1)
        return false
    }

    /// Visits every valid record of the live generations in order: the oldest one's, then
    /// the next one's (see the crash argument). Appending continues after the newest one
    /// with records.
    func replay(_ visit: (JournalRecord, UnsafeRawBufferPointer) throws -> Void) throws {
        let first = oldestGeneration
        if isSingleArea {
            // Format 1: the header's generation only, over the whole record area. Nothing is
            // appended after it: the caller retires it at once, writing a format 2 header.
            let area = capacity - Self.recordsStart
            _ = try replayRun(at: Self.recordsStart, bytes: area, generation: first,
                              payloadMax: min(4 << 20, area / 4 / blockSize * blockSize), visit)
            return
        }
        for generation in [first, first + 1] {
            let (position, count) = try replayRun(at: segmentStart(generation), bytes: segmentBytes,
                                                  generation: generation, payloadMax: recordPayloadMax, visit)
            if generation == first || count > 0 {
                self.generation = generation
                writePosition = segmentStart(generation) + position
                nextSequence = count
            }
        }
    }

    /// Visits the records of `generation` from `start` while they are valid; returns where
    /// they end (relative to `start`) and how many there were.
    private func replayRun(at start: Int, bytes: Int, generation: UInt64, payloadMax: Int,
                           _ visit: (JournalRecord, UnsafeRawBufferPointer) throws -> Void) throws -> (Int, UInt64) {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes, alignment: 8)
        defer { buffer.deallocate() }
        try Sys.preadFull(fd, buffer, start, path)
        var position = 0
        var sequence: UInt64 = 0
        while let record = decode(UnsafeRawBufferPointer(rebasing: buffer[position...]), generation: generation,
                                  sequence: sequence, payloadMax: payloadMax) {
            let payload = UnsafeRawBufferPointer(
                rebasing: buffer[position + JournalRecord.headerBytes ..< position + JournalRecord.headerBytes + record.payloadLength])
            try visit(record, payload)
            position += record.encodedBytes
            sequence += 1
        }
        return (position, sequence)
    }

    /// Appends a batch of records (one pwritev where IOV_MAX allows) and makes them durable.
    func append(_ batch: JournalBatch) throws {
        precondition(!isSingleArea, "appending to a format 1 journal before it was retired")
        precondition(batch.byteCount <= bytesFree, "journal batch larger than the free space")
        precondition(batch.firstSequence == nextSequence && batch.generation == generation, "journal batch out of sequence")
        try batch.write(to: fd, at: writePosition, path: path)
        try Sys.fdatasync(fd, path)
        writePosition += batch.byteCount
        nextSequence += UInt64(batch.count)
    }

    /// Committer: starts appending the next generation in the other segment. That segment
    /// holds only retired records: the generation before the current one must be retired.
    func rotate() {
        precondition(oldestGeneration == generation, "rotating onto the segment of an unretired generation")
        startAppending(generation + 1)
    }

    /// Writes the header of generation + 1: the records of `generation` are no longer
    /// needed. The caller has synced every file and directory they touched; it is the
    /// oldest live generation and the committer appends after it (never into it again).
    func retire(_ generation: UInt64) throws {
        precondition(generation == oldestGeneration, "retiring generation \(generation) out of order")
        try writeHeader(generation: generation + 1)
    }

    func newBatch() -> JournalBatch { JournalBatch(generation: generation, firstSequence: nextSequence) }

    private func startAppending(_ generation: UInt64) {
        self.generation = generation
        writePosition = segmentStart(generation)
        nextSequence = 0
    }

    private func writeHeader(generation: UInt64) throws {
        var header = [UInt8](repeating: 0, count: Self.headerSlotBytes)
        header.withUnsafeMutableBytes { b in
            b.storeBytes(of: Self.magic.littleEndian, toByteOffset: 0, as: UInt64.self)
            b.storeBytes(of: Self.formatVersion.littleEndian, toByteOffset: 8, as: UInt32.self)
            b.storeBytes(of: generation.littleEndian, toByteOffset: 16, as: UInt64.self)
            b.storeBytes(of: UInt64(chunkSize).littleEndian, toByteOffset: 24, as: UInt64.self)
            b.storeBytes(of: UInt64(capacity).littleEndian, toByteOffset: 32, as: UInt64.self)
            let crc = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: b[0..<40]))
            b.storeBytes(of: crc.littleEndian, toByteOffset: 40, as: UInt32.self)
        }
        let slot = Int(generation % 2) * Self.headerSlotBytes
        try header.withUnsafeBytes { try Sys.pwriteFull(fd, $0, slot, path) }
        try Sys.fdatasync(fd, path)
        headerLock.withLock { oldest = generation }
        if isSingleArea { isSingleArea = false }  // Only ever true before the first retire, at open.
    }

    private func readHeader(slot: Int) throws -> (format: UInt32, generation: UInt64, chunkSize: Int, capacity: Int)? {
        var header = [UInt8](repeating: 0, count: 48)
        try header.withUnsafeMutableBytes { try Sys.preadFull(fd, $0, slot * Self.headerSlotBytes, path) }
        return header.withUnsafeBytes { b in
            guard UInt64(littleEndian: b.load(fromByteOffset: 0, as: UInt64.self)) == Self.magic,
                  UInt32(littleEndian: b.load(fromByteOffset: 40, as: UInt32.self))
                    == CRC32C.checksum(UnsafeRawBufferPointer(rebasing: b[0..<40]))
            else { return nil }
            return (UInt32(littleEndian: b.load(fromByteOffset: 8, as: UInt32.self)),
                    UInt64(littleEndian: b.load(fromByteOffset: 16, as: UInt64.self)),
                    Int(UInt64(littleEndian: b.load(fromByteOffset: 24, as: UInt64.self))),
                    Int(UInt64(littleEndian: b.load(fromByteOffset: 32, as: UInt64.self))))
        }
    }

    private func isBlank(size: Int) throws -> Bool {
        guard size > 0 else { return true }
        var head = [UInt8](repeating: 0, count: Self.recordsStart)
        try head.withUnsafeMutableBytes { try Sys.preadFull(fd, $0, 0, path) }
        return head.allSatisfy { $0 == 0 }
    }

    /// Writes zeroes over the whole file once, so later fdatasyncs need no extent changes.
    private func preallocate() throws {
        let zeroes = [UInt8](repeating: 0, count: 1 << 20)
        var position = 0
        while position < capacity {
            let n = min(zeroes.count, capacity - position)
            try zeroes.withUnsafeBytes { try Sys.pwriteFull(fd, UnsafeRawBufferPointer(rebasing: $0[0..<n]), position, path) }
            position += n
        }
        try Sys.fsync(fd, path)
        try Sys.fsyncDirectory((path as NSString).deletingLastPathComponent)
    }

    /// Decodes the record at the start of `bytes` if it is a valid record of `generation`
    /// with the expected sequence number.
    private func decode(_ bytes: UnsafeRawBufferPointer, generation: UInt64, sequence: UInt64, payloadMax: Int) -> JournalRecord? {
        guard bytes.count >= JournalRecord.headerBytes else { return nil }
        func u32(_ at: Int) -> UInt32 { UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: at, as: UInt32.self)) }
        func u64(_ at: Int) -> UInt64 { UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: at, as: UInt64.self)) }
        let payloadLength = Int(u32(12))
        guard u32(0) == JournalRecord.magic, u64(16) == generation, u64(24) == sequence,
              payloadLength <= payloadMax, JournalRecord.headerBytes + payloadLength <= bytes.count,
              let type = JournalRecordType(rawValue: bytes[4]),
              let state = BlockState(rawValue: bytes[5])
        else { return nil }
        var crc = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: bytes[0..<80]))
        crc = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: bytes[88 ..< 88 + payloadLength]), seed: crc)
        guard crc == u32(80) else { return nil }
        return JournalRecord(
            type: type, key: ChunkKey(volume: u64(32), chunk: u32(40)),
            offset: Int(u64(48)), length: Int(u64(56)),
            version: BlockVersion(epoch: u64(64), seq: u64(72)),
            entryState: state, entryCRC: u32(8), payloadLength: payloadLength)
    }
}

/// Records of one group commit. Headers (and small payloads such as repair blocks) are
/// encoded into one inline buffer; write payloads are borrowed from their `ChunkPayload`
/// (kept alive by the batch) and never copied: the batch goes out with pwritev, inline runs
/// and borrowed payloads alternating, and each record's CRC is computed over the payload
/// where it lies.
struct JournalBatch {
    let generation: UInt64
    let firstSequence: UInt64
    /// Encoded headers, inline payloads and padding, in file order between borrowed payloads.
    private var inline: [UInt8] = []
    /// Borrowed payloads, each written after `inline[..<inlineEnd]`'s bytes not yet written.
    private var borrowed: [(inlineEnd: Int, bytes: UnsafeRawBufferPointer)] = []
    /// Owners of the borrowed bytes, alive until the batch is gone.
    private var owners: [ChunkPayload] = []
    /// Encoded size of the batch in the journal.
    private(set) var byteCount = 0
    private(set) var count = 0

    init(generation: UInt64, firstSequence: UInt64) {
        self.generation = generation; self.firstSequence = firstSequence
    }

    var isEmpty: Bool { count == 0 }

    /// Appends a record whose payload (if any) is copied into the batch.
    mutating func append(_ record: JournalRecord, payload: UnsafeRawBufferPointer?) {
        precondition((payload?.count ?? 0) == record.payloadLength, "payload length disagrees with its record")
        appendHeader(record, payload: payload)
        if let payload, payload.count > 0 { inline.append(contentsOf: payload) }
        finishRecord(record)
    }

    /// Appends a record whose payload is `range` of `payload`, written from where it lies.
    mutating func append(_ record: JournalRecord, borrowing payload: ChunkPayload, range: Range<Int>) {
        precondition(range.count == record.payloadLength && range.count > 0, "payload length disagrees with its record")
        let bytes = UnsafeRawBufferPointer(rebasing: payload.bytes[range])
        appendHeader(record, payload: bytes)
        borrowed.append((inline.count, bytes))
        owners.append(payload)
        finishRecord(record)
    }

    /// Writes the batch at `offset` of `fd` (pwritev; not synced).
    func write(to fd: Int32, at offset: Int, path: String) throws {
        try inline.withUnsafeBytes { all in
            var pieces: [iovec] = []
            pieces.reserveCapacity(2 * borrowed.count + 1)
            var start = 0
            func addInline(_ end: Int) {
                if end > start {
                    pieces.append(iovec(iov_base: UnsafeMutableRawPointer(mutating: all.baseAddress! + start), iov_len: end - start))
                }
                start = end
            }
            for piece in borrowed {
                addInline(piece.inlineEnd)
                pieces.append(iovec(iov_base: UnsafeMutableRawPointer(mutating: piece.bytes.baseAddress!), iov_len: piece.bytes.count))
            }
            addInline(all.count)
            try Sys.pwritevFull(fd, &pieces, offset, path)
        }
    }

    /// Encodes the 88-byte header (CRC over its first 80 bytes and `payload`) inline.
    private mutating func appendHeader(_ record: JournalRecord, payload: UnsafeRawBufferPointer?) {
        let start = inline.count
        inline.append(contentsOf: repeatElement(0, count: JournalRecord.headerBytes))
        let sequence = firstSequence + UInt64(count)
        inline.withUnsafeMutableBytes { all in
            let b = UnsafeMutableRawBufferPointer(rebasing: all[start ..< start + JournalRecord.headerBytes])
            b.storeBytes(of: JournalRecord.magic.littleEndian, toByteOffset: 0, as: UInt32.self)
            b[4] = record.type.rawValue
            b[5] = record.entryState.rawValue
            b.storeBytes(of: record.entryCRC.littleEndian, toByteOffset: 8, as: UInt32.self)
            b.storeBytes(of: UInt32(record.payloadLength).littleEndian, toByteOffset: 12, as: UInt32.self)
            b.storeBytes(of: generation.littleEndian, toByteOffset: 16, as: UInt64.self)
            b.storeBytes(of: sequence.littleEndian, toByteOffset: 24, as: UInt64.self)
            b.storeBytes(of: record.key.volume.littleEndian, toByteOffset: 32, as: UInt64.self)
            b.storeBytes(of: record.key.chunk.littleEndian, toByteOffset: 40, as: UInt32.self)
            b.storeBytes(of: UInt64(record.offset).littleEndian, toByteOffset: 48, as: UInt64.self)
            b.storeBytes(of: UInt64(record.length).littleEndian, toByteOffset: 56, as: UInt64.self)
            b.storeBytes(of: record.version.epoch.littleEndian, toByteOffset: 64, as: UInt64.self)
            b.storeBytes(of: record.version.seq.littleEndian, toByteOffset: 72, as: UInt64.self)
            var crc = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: b[0..<80]))
            if let payload, payload.count > 0 { crc = CRC32C.checksum(payload, seed: crc) }
            b.storeBytes(of: crc.littleEndian, toByteOffset: 80, as: UInt32.self)
        }
    }

    /// Pads the record to 8 bytes (the padding starts the next inline run).
    private mutating func finishRecord(_ record: JournalRecord) {
        let padding = record.encodedBytes - JournalRecord.headerBytes - record.payloadLength
        if padding > 0 { inline.append(contentsOf: repeatElement(0, count: padding)) }
        byteCount += record.encodedBytes
        count += 1
    }
}
