// The write-ahead journal of a data directory.
//
// Format (all integers little endian):
//   [0, 4096)     header slot 0    [4096, 8192) header slot 1    [8192, end) records
//   header: magic u64 "CAIRNJNL", format u32, pad u32, generation u64, chunkSize u64,
//           journalBytes u64, CRC32C u32 of the 40 bytes before it. Generation g lives in
//           slot g % 2, so a torn header write leaves the previous generation readable.
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
// pwritev and one fdatasync (group commit), then applies them
// to the chunk files (page cache only) and only then resumes the callers. When the
// journal is more than half full (and on close) it checkpoints: fdatasync every chunk
// file and fsync every directory changed since the last checkpoint, then write the header
// of generation + 1 and fdatasync it, and start again after the header slots.
//
// Crash argument:
// - An acknowledged mutation has its record durable in the journal (fdatasync returned
//   before the caller resumed), in the current generation, after every earlier record.
// - Until the next checkpoint's header is durable, the records of the current generation
//   are never overwritten: the next generation starts only after every chunk file and
//   directory touched by them was synced, so dropping them loses nothing.
// - Recovery replays records of the header's generation in order from the start while
//   magic, generation, sequence (0, 1, 2, ...) and CRC hold. The first bad record ends the
//   log: it and everything after it belong to a batch whose fdatasync never returned, so
//   none of it was acknowledged. Leftover records of older generations fail the
//   generation check.
// - Replay is idempotent: every record is a deterministic function of the bytes it
//   names; a byte touched by some record ends up with the last record's value, and a byte
//   touched by none still has its value from the last checkpoint, whatever subset of the
//   applies reached the disk. Repair copies are judged (version rule) before they are
//   journaled, so their records are unconditional. Deletes are journaled too, so replay
//   does not resurrect a deleted chunk.
// - A torn header write of generation g + 1 leaves generation g valid in the other slot;
//   replaying its records again over the already synced files is harmless (idempotence).
//
// Limits: one record carries at most `recordPayloadMax` bytes (larger writes are split at
// block boundaries); a batch that would not fit the free space triggers a checkpoint first.
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
    static let formatVersion: UInt32 = 1
    private static let magic: UInt64 = 0x4C4E_4A4E_5249_4143  // "CAIRNJNL"

    let path: String
    private(set) var fd: Int32
    let capacity: Int
    let chunkSize: Int
    private(set) var generation: UInt64 = 0
    private(set) var writePosition = Journal.recordsStart
    private(set) var nextSequence: UInt64 = 0

    /// Largest payload of one record: a quarter of the record area, at most 4 MiB, whole blocks.
    var recordPayloadMax: Int {
        min(4 << 20, (capacity - Self.recordsStart) / 4 / blockSize * blockSize)
    }
    var bytesFree: Int { capacity - writePosition }
    var needsCheckpoint: Bool { writePosition - Self.recordsStart > (capacity - Self.recordsStart) / 2 }

    /// Opens (creating and preallocating if needed) and locks the journal of a directory.
    init(path: String, capacity: Int, chunkSize: Int) throws {
        guard capacity >= Self.journalBytesMin, capacity % blockSize == 0 else {
            throw CairnError.invalidArgument("journal size \(capacity) must be a multiple of \(blockSize) and at least \(Self.journalBytesMin)")
        }
        self.path = path
        self.capacity = capacity
        self.chunkSize = chunkSize
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
    /// Returns false when the journal was new.
    func openHeader() throws -> Bool {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw Sys.error("fstat", path) }
        let slots = try (0..<2).map { try readHeader(slot: $0) }
        if let best = slots.compactMap({ $0 }).max(by: { $0.generation < $1.generation }) {
            guard best.chunkSize == chunkSize, best.capacity == capacity else {
                throw CairnError.invalidArgument(
                    "data directory was formatted with chunk size \(best.chunkSize) and journal \(best.capacity), not \(chunkSize) and \(capacity)")
            }
            generation = best.generation
            if st.st_size < capacity { try preallocate() }
            return true
        }
        guard try isBlank(size: Int(st.st_size)) else {
            throw CairnError.io("\(path): no valid journal header; refusing to guess what was acknowledged")
        }
        try preallocate()
        try writeHeader(generation: 1)
        return false
    }

    /// Visits every valid record of the current generation in order.
    func replay(_ visit: (JournalRecord, UnsafeRawBufferPointer) throws -> Void) throws {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: capacity - Self.recordsStart, alignment: 8)
        defer { buffer.deallocate() }
        try Sys.preadFull(fd, buffer, Self.recordsStart, path)
        var position = 0
        var sequence: UInt64 = 0
        while let record = decode(UnsafeRawBufferPointer(rebasing: buffer[position...]), sequence: sequence) {
            let payload = UnsafeRawBufferPointer(
                rebasing: buffer[position + JournalRecord.headerBytes ..< position + JournalRecord.headerBytes + record.payloadLength])
            try visit(record, payload)
            position += record.encodedBytes
            sequence += 1
        }
        writePosition = Self.recordsStart + position
        nextSequence = sequence
    }

    /// Appends a batch of records (one pwritev where IOV_MAX allows) and makes them durable.
    func append(_ batch: JournalBatch) throws {
        precondition(batch.byteCount <= bytesFree, "journal batch larger than the free space")
        precondition(batch.firstSequence == nextSequence && batch.generation == generation, "journal batch out of sequence")
        try batch.write(to: fd, at: writePosition, path: path)
        try Sys.fdatasync(fd, path)
        writePosition += batch.byteCount
        nextSequence += UInt64(batch.count)
    }

    /// Starts the next generation; the caller has synced every file the records touched.
    func startNextGeneration() throws {
        try writeHeader(generation: generation + 1)
    }

    func newBatch() -> JournalBatch { JournalBatch(generation: generation, firstSequence: nextSequence) }

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
        self.generation = generation
        writePosition = Self.recordsStart
        nextSequence = 0
    }

    private func readHeader(slot: Int) throws -> (generation: UInt64, chunkSize: Int, capacity: Int)? {
        var header = [UInt8](repeating: 0, count: 48)
        try header.withUnsafeMutableBytes { try Sys.preadFull(fd, $0, slot * Self.headerSlotBytes, path) }
        return header.withUnsafeBytes { b in
            guard UInt64(littleEndian: b.load(fromByteOffset: 0, as: UInt64.self)) == Self.magic,
                  UInt32(littleEndian: b.load(fromByteOffset: 8, as: UInt32.self)) == Self.formatVersion,
                  UInt32(littleEndian: b.load(fromByteOffset: 40, as: UInt32.self))
                    == CRC32C.checksum(UnsafeRawBufferPointer(rebasing: b[0..<40]))
            else { return nil }
            return (UInt64(littleEndian: b.load(fromByteOffset: 16, as: UInt64.self)),
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

    /// Decodes the record at the start of `bytes` if it is a valid record of this
    /// generation with the expected sequence number.
    private func decode(_ bytes: UnsafeRawBufferPointer, sequence: UInt64) -> JournalRecord? {
        guard bytes.count >= JournalRecord.headerBytes else { return nil }
        func u32(_ at: Int) -> UInt32 { UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: at, as: UInt32.self)) }
        func u64(_ at: Int) -> UInt64 { UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: at, as: UInt64.self)) }
        let payloadLength = Int(u32(12))
        guard u32(0) == JournalRecord.magic, u64(16) == generation, u64(24) == sequence,
              payloadLength <= recordPayloadMax, JournalRecord.headerBytes + payloadLength <= bytes.count,
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
