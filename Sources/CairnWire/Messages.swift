// Typed data-path messages and their payload layouts (big endian):
//   chunk address: volume u64 | chunk u32 | epoch u64                       (20 bytes)
//   HELLO:          secretLength u16 | secret | clientLength u16 | client
//   READ:           address | offset u32 | length u32
//   WRITE:          address | seq u64 | offset u32 | data (rest of payload)
//   TRIM:           address | seq u64 | offset u32 | length u32
//   BLOCK_TABLE:    address | first u32 | count u32
//   READ_BLOCKS_RAW address | first u32 | count u32
//   PUT_BLOCKS:     address | count u32 | count x (index u32 | entry 24 | data 4096 if state == data)
//   FENCE:          volume u64 | epoch u64
//   DELETE_CHUNK:   address
//   DELETE_VOLUME:  volume u64 | epoch u64
//   REBUILD:        address | sinceEpoch u64 | bytesPerSecond u64 | sourceCount u16 | sources (u16 length | utf8)
//   PING:           empty
//   COPY_CHUNK:     source address | target address  (node-local copy-up from a snapshot layer)
// Block entries: state u8 | pad 3 | crc u32 | epoch u64 | seq u64.
import CairnCore
import NIOCore

public struct ChunkAddress: Hashable, Sendable {
    public var volume: VolumeID
    public var chunk: ChunkIndex
    public var epoch: Epoch
    public init(volume: VolumeID, chunk: ChunkIndex, epoch: Epoch) {
        self.volume = volume; self.chunk = chunk; self.epoch = epoch
    }
}

public struct BlockPut: Sendable, Equatable {
    public var index: UInt32
    public var entry: BlockEntry
    /// 4096 bytes when `entry.state == .data`, nil for a hole.
    public var data: [UInt8]?
    public init(index: UInt32, entry: BlockEntry, data: [UInt8]?) {
        self.index = index; self.entry = entry; self.data = data
    }
}

public struct RebuildOrder: Sendable, Equatable {
    public var address: ChunkAddress
    public var sinceEpoch: Epoch
    public var bytesPerSecond: UInt64
    public var sources: [String]
    public init(address: ChunkAddress, sinceEpoch: Epoch, bytesPerSecond: UInt64, sources: [String]) {
        self.address = address; self.sinceEpoch = sinceEpoch; self.bytesPerSecond = bytesPerSecond; self.sources = sources
    }
}

public enum DataRequest: Sendable, Equatable {
    case hello(secret: String, client: String)
    case read(ChunkAddress, offset: UInt32, length: UInt32)
    case write(ChunkAddress, seq: UInt64, offset: UInt32, data: ByteBuffer)
    case trim(ChunkAddress, seq: UInt64, offset: UInt32, length: UInt32)
    case blockTable(ChunkAddress, first: UInt32, count: UInt32)
    case readBlocksRaw(ChunkAddress, first: UInt32, count: UInt32)
    case putBlocks(ChunkAddress, [BlockPut])
    case fence(volume: VolumeID, epoch: Epoch)
    case deleteChunk(ChunkAddress)
    case deleteVolume(volume: VolumeID, epoch: Epoch)
    case rebuild(RebuildOrder)
    case ping
    case copyChunk(from: ChunkAddress, to: ChunkAddress)

    public var opcode: Opcode {
        switch self {
        case .hello: return .hello
        case .read: return .read
        case .write: return .write
        case .trim: return .trim
        case .blockTable: return .blockTable
        case .readBlocksRaw: return .readBlocksRaw
        case .putBlocks: return .putBlocks
        case .fence: return .fence
        case .deleteChunk: return .deleteChunk
        case .deleteVolume: return .deleteVolume
        case .rebuild: return .rebuild
        case .ping: return .ping
        case .copyChunk: return .copyChunk
        }
    }

    public func frame(id: UInt64, allocator: ByteBufferAllocator = ByteBufferAllocator()) -> RequestFrame {
        var b = allocator.buffer(capacity: 64)
        switch self {
        case .hello(let secret, let client):
            b.writeShortString(secret)
            b.writeShortString(client)
        case .read(let a, let offset, let length):
            b.writeAddress(a); b.writeInteger(offset); b.writeInteger(length)
        case .write(let a, let seq, let offset, let data):
            // The data goes as the frame's own buffer: sent after these fields, not copied.
            b.writeAddress(a); b.writeInteger(seq); b.writeInteger(offset)
            return RequestFrame(opcode: opcode, id: id, payload: b, data: data)
        case .trim(let a, let seq, let offset, let length):
            b.writeAddress(a); b.writeInteger(seq); b.writeInteger(offset); b.writeInteger(length)
        case .blockTable(let a, let first, let count), .readBlocksRaw(let a, let first, let count):
            b.writeAddress(a); b.writeInteger(first); b.writeInteger(count)
        case .putBlocks(let a, let blocks):
            b.writeAddress(a); b.writeInteger(UInt32(blocks.count))
            for block in blocks {
                b.writeInteger(block.index)
                b.writeBlockEntry(block.entry)
                if block.entry.state == .data, let data = block.data { b.writeBytes(data) }
            }
        case .fence(let volume, let epoch), .deleteVolume(let volume, let epoch):
            b.writeInteger(volume); b.writeInteger(epoch)
        case .deleteChunk(let a):
            b.writeAddress(a)
        case .rebuild(let order):
            b.writeAddress(order.address); b.writeInteger(order.sinceEpoch); b.writeInteger(order.bytesPerSecond)
            b.writeInteger(UInt16(order.sources.count))
            for s in order.sources { b.writeShortString(s) }
        case .ping:
            break
        case .copyChunk(let from, let to):
            b.writeAddress(from); b.writeAddress(to)
        }
        return RequestFrame(opcode: opcode, id: id, payload: b)
    }

    /// Decodes and validates a request payload. Anything malformed is `protocolError`.
    public init(frame: RequestFrame) throws {
        var p = frame.payload
        if frame.data.readableBytes > 0 { p.writeImmutableBuffer(frame.data) }  // a frame built here, not decoded
        func need<T>(_ v: T?) throws -> T {
            guard let v else { throw CairnError.protocolError("truncated \(frame.opcode) request") }
            return v
        }
        switch frame.opcode {
        case .hello:
            self = .hello(secret: try need(p.readShortString()), client: try need(p.readShortString()))
        case .read:
            self = .read(try need(p.readAddress()), offset: try need(p.readInteger()), length: try need(p.readInteger()))
        case .write:
            let a = try need(p.readAddress())
            let seq: UInt64 = try need(p.readInteger())
            let offset: UInt32 = try need(p.readInteger())
            self = .write(a, seq: seq, offset: offset, data: p.readSlice(length: p.readableBytes)!)
        case .trim:
            self = .trim(try need(p.readAddress()), seq: try need(p.readInteger()),
                         offset: try need(p.readInteger()), length: try need(p.readInteger()))
        case .blockTable:
            self = .blockTable(try need(p.readAddress()), first: try need(p.readInteger()), count: try need(p.readInteger()))
        case .readBlocksRaw:
            self = .readBlocksRaw(try need(p.readAddress()), first: try need(p.readInteger()), count: try need(p.readInteger()))
        case .putBlocks:
            let a = try need(p.readAddress())
            let count: UInt32 = try need(p.readInteger())
            guard Int(count) <= WireLimits.ioLengthMax / blockSize else {
                throw CairnError.protocolError("PUT_BLOCKS of \(count) blocks is above the limit")
            }
            var blocks: [BlockPut] = []
            blocks.reserveCapacity(Int(count))
            for _ in 0..<count {
                let index: UInt32 = try need(p.readInteger())
                let entry = try need(try p.readBlockEntry())
                var data: [UInt8]?
                if entry.state == .data { data = try need(p.readBytes(length: blockSize)) }
                blocks.append(BlockPut(index: index, entry: entry, data: data))
            }
            self = .putBlocks(a, blocks)
        case .fence:
            self = .fence(volume: try need(p.readInteger()), epoch: try need(p.readInteger()))
        case .deleteChunk:
            self = .deleteChunk(try need(p.readAddress()))
        case .deleteVolume:
            self = .deleteVolume(volume: try need(p.readInteger()), epoch: try need(p.readInteger()))
        case .rebuild:
            let a = try need(p.readAddress())
            let since: UInt64 = try need(p.readInteger())
            let rate: UInt64 = try need(p.readInteger())
            let count: UInt16 = try need(p.readInteger())
            guard count <= 16 else { throw CairnError.protocolError("REBUILD with \(count) sources") }
            var sources: [String] = []
            for _ in 0..<count { sources.append(try need(p.readShortString())) }
            self = .rebuild(RebuildOrder(address: a, sinceEpoch: since, bytesPerSecond: rate, sources: sources))
        case .ping:
            self = .ping
        case .copyChunk:
            self = .copyChunk(from: try need(p.readAddress()), to: try need(p.readAddress()))
        }
        if p.readableBytes > 0, frame.opcode != .write {
            throw CairnError.protocolError("\(p.readableBytes) unexpected bytes after a \(frame.opcode) request")
        }
    }
}

extension ByteBuffer {
    mutating func writeAddress(_ a: ChunkAddress) {
        writeInteger(a.volume); writeInteger(a.chunk); writeInteger(a.epoch)
    }
    mutating func readAddress() -> ChunkAddress? {
        guard readableBytes >= 20 else { return nil }
        return ChunkAddress(volume: readInteger()!, chunk: readInteger()!, epoch: readInteger()!)
    }
    mutating func writeShortString(_ s: String) {
        let bytes = Array(s.utf8.prefix(Int(UInt16.max)))
        writeInteger(UInt16(bytes.count)); writeBytes(bytes)
    }
    mutating func readShortString() -> String? {
        guard let n: UInt16 = getInteger(at: readerIndex), readableBytes >= 2 + Int(n) else { return nil }
        moveReaderIndex(forwardBy: 2)
        return readString(length: Int(n))
    }
    public mutating func writeBlockEntry(_ e: BlockEntry) {
        writeInteger(e.state.rawValue); writeBytes([0, 0, 0])
        writeInteger(e.crc); writeInteger(e.version.epoch); writeInteger(e.version.seq)
    }
    /// nil when fewer than 24 bytes remain; throws on an unknown state.
    public mutating func readBlockEntry() throws -> BlockEntry? {
        guard readableBytes >= BlockEntry.encodedSize else { return nil }
        let raw: UInt8 = readInteger()!
        moveReaderIndex(forwardBy: 3)
        guard let state = BlockState(rawValue: raw) else { throw CairnError.protocolError("unknown block state \(raw)") }
        let crc: UInt32 = readInteger()!
        let epoch: UInt64 = readInteger()!
        let seq: UInt64 = readInteger()!
        return BlockEntry(state: state, crc: crc, version: BlockVersion(epoch: epoch, seq: seq))
    }
}

// MARK: - Responses

/// Builds and parses response payloads. A failed request carries its status and a payload
/// that depends on it: the current epoch for `staleEpoch`, the block for
/// `checksumMismatch`, a UTF-8 message otherwise.
public enum DataResponse {
    public static func error(_ error: Error, for request: RequestFrame) -> ResponseFrame {
        var b = ByteBuffer()
        let status: WireStatus
        switch error as? CairnError {
        case .staleEpoch(let current)?: status = .staleEpoch; b.writeInteger(current)
        case .checksumMismatch(let block)?: status = .checksumMismatch; b.writeInteger(block)
        case .io(let m)?: status = .io; b.writeString(m)
        case .invalidArgument(let m)?, .protocolError(let m)?: status = .invalid; b.writeString(m)
        case .notFound(let m)?: status = .notFound; b.writeString(m)
        case .noSpace(let m)?: status = .noSpace; b.writeString(m)
        case .unauthenticated(let m)?: status = .unauthenticated; b.writeString(m)
        case .unavailable(let m)?: status = .busy; b.writeString(m)
        default: status = .internalError; b.writeString("\(error)")
        }
        return ResponseFrame(opcode: request.opcode, status: status, id: request.id, payload: b)
    }

    /// Turns a non-OK response into the error it stands for.
    public static func error(from frame: ResponseFrame) -> CairnError? {
        guard frame.status != .ok else { return nil }
        var p = frame.payload
        // Only error payloads are text; an OK payload can be megabytes of data.
        let message = p.getString(at: p.readerIndex, length: min(p.readableBytes, 4096)) ?? ""
        switch frame.status {
        case .ok: return nil
        case .staleEpoch: return .staleEpoch(current: p.readInteger() ?? 0)
        case .checksumMismatch: return .checksumMismatch(block: p.readInteger() ?? 0)
        case .io: return .io(message)
        case .invalid: return .invalidArgument(message)
        case .notFound: return .notFound(message)
        case .noSpace: return .noSpace(message)
        case .unauthenticated: return .unauthenticated(message)
        case .busy: return .unavailable(message)
        case .internalError: return .internalError(message)
        }
    }

    public static func encodeEntries(_ entries: [BlockEntry]) -> ByteBuffer {
        var b = ByteBuffer()
        b.reserveCapacity(4 + entries.count * BlockEntry.encodedSize)
        b.writeInteger(UInt32(entries.count))
        for e in entries { b.writeBlockEntry(e) }
        return b
    }

    public static func decodeEntries(_ payload: ByteBuffer) throws -> [BlockEntry] {
        var p = payload
        guard let count: UInt32 = p.readInteger(), Int(count) * BlockEntry.encodedSize == p.readableBytes else {
            throw CairnError.protocolError("malformed block table")
        }
        var out: [BlockEntry] = []
        out.reserveCapacity(Int(count))
        for _ in 0..<count { out.append(try p.readBlockEntry()!) }
        return out
    }

    public static func encodeRawBlocks(_ blocks: [BlockPut]) -> ByteBuffer {
        var b = ByteBuffer()
        b.writeInteger(UInt32(blocks.count))
        for block in blocks {
            b.writeInteger(block.index)
            b.writeBlockEntry(block.entry)
            if block.entry.state == .data, let data = block.data { b.writeBytes(data) }
        }
        return b
    }

    public static func decodeRawBlocks(_ payload: ByteBuffer) throws -> [BlockPut] {
        var p = payload
        guard let count: UInt32 = p.readInteger() else { throw CairnError.protocolError("malformed raw blocks") }
        var out: [BlockPut] = []
        for _ in 0..<count {
            guard let index: UInt32 = p.readInteger(), let entry = try p.readBlockEntry() else {
                throw CairnError.protocolError("truncated raw blocks")
            }
            var data: [UInt8]?
            if entry.state == .data {
                guard let d = p.readBytes(length: blockSize) else { throw CairnError.protocolError("truncated raw block data") }
                data = d
            }
            out.append(BlockPut(index: index, entry: entry, data: data))
        }
        guard p.readableBytes == 0 else { throw CairnError.protocolError("\(p.readableBytes) bytes after the raw blocks") }
        return out
    }

    public static func u64(_ value: UInt64) -> ByteBuffer {
        var b = ByteBuffer(); b.writeInteger(value); return b
    }

    public static func readU64(_ payload: ByteBuffer) throws -> UInt64 {
        var p = payload
        guard let v: UInt64 = p.readInteger() else { throw CairnError.protocolError("expected a u64 reply") }
        return v
    }
}
