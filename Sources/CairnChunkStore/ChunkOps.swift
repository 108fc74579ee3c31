// Block-level semantics shared by every backend: range checks, the read-modify-write of
// partial blocks, trims, repair copies and verified reads. A backend supplies storage
// through `ChunkMedium`; the rules live here once, so the in-memory simulation and the
// disk store cannot drift apart.
import CairnCore
import Foundation

/// Block-aligned storage of one chunk: a block table plus a sparse data region.
/// Callers hold whatever lock the backend needs; ranges are always in bounds.
protocol ChunkMedium: AnyObject {
    func readEntries(first: Int, count: Int) throws -> [BlockEntry]
    func writeEntries(_ entries: [BlockEntry], first: Int) throws
    /// Fills `buffer` (a whole number of blocks) from block `first`; unwritten bytes read as zero.
    func readBlocks(first: Int, into buffer: UnsafeMutableRawBufferPointer) throws
    func writeBlocks(first: Int, from buffer: UnsafeRawBufferPointer) throws
    /// Gives back the space of `count` blocks from `first`; they read as zeroes afterwards.
    func punchBlocks(first: Int, count: Int) throws
}

/// Size facts of a chunk and validation of client-supplied ranges.
struct ChunkGeometry: Sendable {
    let chunkSize: Int
    var blockCount: Int { chunkSize / blockSize }

    init(chunkSize: Int) throws {
        guard chunkSize > 0, chunkSize % blockSize == 0 else {
            throw CairnError.invalidArgument("chunk size \(chunkSize) is not a positive multiple of \(blockSize)")
        }
        self.chunkSize = chunkSize
    }

    func checkRange(offset: Int, length: Int) throws {
        guard offset >= 0, length >= 0, offset <= chunkSize, length <= chunkSize - offset else {
            throw CairnError.invalidArgument(
                "range offset \(offset) length \(length) is outside a chunk of \(chunkSize) bytes")
        }
    }

    func checkBlocks(first: Int, count: Int) throws {
        guard first >= 0, count >= 0, first <= blockCount, count <= blockCount - first else {
            throw CairnError.invalidArgument("blocks \(first)+\(count) are outside a chunk of \(blockCount) blocks")
        }
    }

    /// Checks a repair copy before anything is queued: indices in range, data present and
    /// a full block for data entries, CRC matching.
    func checkCopies(_ blocks: [BlockCopy]) throws {
        for block in blocks {
            try checkBlocks(first: block.index, count: 1)
            guard block.entry.state == .data else { continue }
            guard let data = block.data, data.count == blockSize else {
                throw CairnError.invalidArgument("data block \(block.index) must carry exactly \(blockSize) bytes")
            }
            guard CRC32C.checksum(data) == block.entry.crc else {
                throw CairnError.checksumMismatch(block: UInt32(block.index))
            }
        }
    }
}

/// The blocks a byte range touches.
struct BlockSpan {
    let first: Int
    let count: Int
    /// Byte position of the range inside the span's first block.
    let head: Int
    init(offset: Int, length: Int) {
        precondition(length > 0)
        first = offset / blockSize
        count = (offset + length - 1) / blockSize - first + 1
        head = offset - first * blockSize
    }
    var bytes: Int { count * blockSize }
}

enum ChunkOps {
    /// Writes `data` at `offset`. Whole blocks are written (and checksummed) straight from
    /// `data`; only a partially covered head or tail block is merged with its old contents
    /// in a one-block buffer. When `verifyOld` is set and an old partial block fails its CRC,
    /// the merged block keeps failing (its stored CRC is the complement of the real one): a
    /// merge must not bless corrupt bytes. Replay passes false, because after a crash a
    /// block's table entry and data may come from different moments until replay has finished.
    static func write(_ medium: ChunkMedium, offset: Int, data: UnsafeRawBufferPointer,
                      version: BlockVersion, verifyOld: Bool) throws {
        guard data.count > 0 else { return }
        let span = BlockSpan(offset: offset, length: data.count)
        let end = span.head + data.count  // Where the data ends, from the span's first byte.
        var entries = [BlockEntry](repeating: .hole, count: span.count)
        // Blocks [wholeFirst, wholeEnd) of the span are fully covered.
        let wholeFirst = span.head == 0 ? 0 : 1
        let wholeEnd = end % blockSize == 0 ? span.count : span.count - 1
        var partial: [Int] = []
        if wholeFirst == 1 { partial.append(0) }
        if wholeEnd < span.count && span.count - 1 >= wholeFirst { partial.append(span.count - 1) }
        if !partial.isEmpty {
            let block = UnsafeMutableRawBufferPointer.allocate(byteCount: blockSize, alignment: blockSize)
            defer { block.deallocate() }
            for i in partial {
                let old = try medium.readEntries(first: span.first + i, count: 1)[0]
                let poisoned = try loadOld(medium, span.first + i, old, into: block, at: 0, verify: verifyOld)
                // The part of block i that `data` covers, in span bytes.
                let from = max(i * blockSize, span.head), to = min((i + 1) * blockSize, end)
                memcpy(block.baseAddress! + (from - i * blockSize), data.baseAddress! + (from - span.head), to - from)
                let crc = CRC32C.checksum(UnsafeRawBufferPointer(block))
                entries[i] = BlockEntry(state: .data, crc: poisoned ? ~crc : crc, version: version)
                try medium.writeBlocks(first: span.first + i, from: UnsafeRawBufferPointer(block))
            }
        }
        if wholeEnd > wholeFirst {
            let start = wholeFirst * blockSize - span.head
            let whole = UnsafeRawBufferPointer(rebasing: data[start ..< start + (wholeEnd - wholeFirst) * blockSize])
            for i in wholeFirst..<wholeEnd {
                let at = (i - wholeFirst) * blockSize
                let crc = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: whole[at ..< at + blockSize]))
                entries[i] = BlockEntry(state: .data, crc: crc, version: version)
            }
            try medium.writeBlocks(first: span.first + wholeFirst, from: whole)
        }
        try medium.writeEntries(entries, first: span.first)
    }

    /// Trims [offset, offset+length): whole blocks become holes, partial bytes are zeroed.
    static func trim(_ medium: ChunkMedium, offset: Int, length: Int, version: BlockVersion,
                     verifyOld: Bool) throws {
        guard length > 0 else { return }
        let span = BlockSpan(offset: offset, length: length)
        var entries = try medium.readEntries(first: span.first, count: span.count)
        let block = UnsafeMutableRawBufferPointer.allocate(byteCount: blockSize, alignment: blockSize)
        defer { block.deallocate() }
        var wholeFirst = -1
        var wholeCount = 0
        for i in 0..<span.count {
            let start = max(offset - (span.first + i) * blockSize, 0)
            let stop = min(offset + length - (span.first + i) * blockSize, blockSize)
            if start == 0 && stop == blockSize {
                if wholeFirst < 0 { wholeFirst = span.first + i }
                wholeCount += 1
                entries[i] = BlockEntry(state: .hole, crc: CRC32C.zeroBlock, version: version)
                continue
            }
            entries[i].version = version
            guard entries[i].state == .data else { continue }
            let poisoned = try loadOld(medium, span.first + i, entries[i], into: block, at: 0, verify: verifyOld)
            memset(block.baseAddress! + start, 0, stop - start)
            let crc = CRC32C.checksum(UnsafeRawBufferPointer(block))
            entries[i].crc = poisoned ? ~crc : crc
            try medium.writeBlocks(first: span.first + i, from: UnsafeRawBufferPointer(block))
        }
        if wholeCount > 0 { try medium.punchBlocks(first: wholeFirst, count: wholeCount) }
        try medium.writeEntries(entries, first: span.first)
    }

    /// Stores one repair block exactly as given (the version rule was applied by the caller).
    static func put(_ medium: ChunkMedium, index: Int, entry: BlockEntry, data: UnsafeRawBufferPointer?) throws {
        if entry.state == .data, let data {
            precondition(data.count == blockSize, "repair block must be a full block")
            try medium.writeBlocks(first: index, from: data)
        } else {
            try medium.punchBlocks(first: index, count: 1)
        }
        try medium.writeEntries([entry], first: index)
    }

    /// Which copies to apply: those whose version is >= the stored one or whose stored
    /// version predates epoch `overwriteBelow`, judged in order (a later copy of the same
    /// index sees the earlier one's version).
    static func selectCopies(_ blocks: [BlockCopy], overwriteBelow: Epoch,
                             stored: (Int) throws -> BlockVersion) rethrows -> [Int] {
        var seen: [Int: BlockVersion] = [:]
        var chosen: [Int] = []
        for (position, block) in blocks.enumerated() {
            let current = try seen[block.index] ?? stored(block.index)
            guard current <= block.entry.version || current.epoch < overwriteBelow else { continue }
            seen[block.index] = block.entry.version
            chosen.append(position)
        }
        return chosen
    }

    /// Verified read of [offset, offset+length); the medium must exist.
    static func read(_ medium: ChunkMedium, offset: Int, length: Int) throws -> [UInt8] {
        guard length > 0 else { return [] }
        let span = BlockSpan(offset: offset, length: length)
        let entries = try medium.readEntries(first: span.first, count: span.count)
        var blocks = [UInt8](repeating: 0, count: span.bytes)
        try blocks.withUnsafeMutableBytes { buffer in
            try medium.readBlocks(first: span.first, into: buffer)
            for (i, entry) in entries.enumerated() {
                let block = UnsafeMutableRawBufferPointer(rebasing: buffer[i * blockSize ..< (i + 1) * blockSize])
                if entry.state == .hole {
                    memset(block.baseAddress!, 0, blockSize)
                } else if CRC32C.checksum(UnsafeRawBufferPointer(block)) != entry.crc {
                    throw CairnError.checksumMismatch(block: UInt32(span.first + i))
                }
            }
        }
        if span.head == 0 && length == blocks.count { return blocks }
        return Array(blocks[span.head ..< span.head + length])
    }

    /// One block and its entry without verification; holes read as zeroes.
    static func readRaw(_ medium: ChunkMedium, index: Int) throws -> (BlockEntry, [UInt8]) {
        let entry = try medium.readEntries(first: index, count: 1)[0]
        var data = [UInt8](repeating: 0, count: blockSize)
        if entry.state == .data {
            try data.withUnsafeMutableBytes { try medium.readBlocks(first: index, into: $0) }
        }
        return (entry, data)
    }

    /// Loads an old block into `buffer[at...]` for a merge; returns whether it failed its CRC.
    private static func loadOld(_ medium: ChunkMedium, _ index: Int, _ entry: BlockEntry,
                                into buffer: UnsafeMutableRawBufferPointer, at: Int, verify: Bool) throws -> Bool {
        let block = UnsafeMutableRawBufferPointer(rebasing: buffer[at ..< at + blockSize])
        guard entry.state == .data else {
            memset(block.baseAddress!, 0, blockSize)
            return false
        }
        try medium.readBlocks(first: index, into: block)
        return verify && CRC32C.checksum(UnsafeRawBufferPointer(block)) != entry.crc
    }
}

extension BlockEntry {
    /// Encodes entries in the 24-byte on-disk layout (state u8, 3 pad, crc, epoch, seq; LE).
    static func encode(_ entries: [BlockEntry], into buffer: UnsafeMutableRawBufferPointer) {
        precondition(buffer.count >= entries.count * encodedSize)
        for (i, e) in entries.enumerated() {
            let base = i * encodedSize
            buffer.storeBytes(of: UInt32(e.state.rawValue).littleEndian, toByteOffset: base, as: UInt32.self)
            buffer.storeBytes(of: e.crc.littleEndian, toByteOffset: base + 4, as: UInt32.self)
            buffer.storeBytes(of: e.version.epoch.littleEndian, toByteOffset: base + 8, as: UInt64.self)
            buffer.storeBytes(of: e.version.seq.littleEndian, toByteOffset: base + 16, as: UInt64.self)
        }
    }

    /// Decodes `count` entries; an unknown state byte is disk corruption.
    static func decode(_ buffer: UnsafeRawBufferPointer, count: Int) throws -> [BlockEntry] {
        precondition(buffer.count >= count * encodedSize)
        var entries: [BlockEntry] = []
        entries.reserveCapacity(count)
        for i in 0..<count {
            let base = i * encodedSize
            let raw = buffer.loadUnaligned(fromByteOffset: base, as: UInt8.self)
            guard let state = BlockState(rawValue: raw) else {
                throw CairnError.io("block table entry has unknown state \(raw)")
            }
            entries.append(BlockEntry(
                state: state,
                crc: UInt32(littleEndian: buffer.loadUnaligned(fromByteOffset: base + 4, as: UInt32.self)),
                version: BlockVersion(
                    epoch: UInt64(littleEndian: buffer.loadUnaligned(fromByteOffset: base + 8, as: UInt64.self)),
                    seq: UInt64(littleEndian: buffer.loadUnaligned(fromByteOffset: base + 16, as: UInt64.self)))))
        }
        return entries
    }
}
