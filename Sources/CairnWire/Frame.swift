// Framing of the data-path protocol between volume clients, the manager and storage nodes.
//
// Every message is a 24-byte header followed by `payloadLength` bytes:
//   request:  magic "CRNQ" u32 | version u8 | opcode u8 | flags u16 | id u64 | payloadLength u32 | reserved u32
//   response: magic "CRNR" u32 | version u8 | opcode u8 | status u16 | id u64 | payloadLength u32 | reserved u32
// All integers big endian. A frame with a bad magic, an unknown version or a payload above
// `payloadLengthMax` is a protocol error: the connection is closed, nothing is applied.
import CairnCore
import NIOCore

public enum WireLimits {
    /// Largest data a single READ or WRITE may carry.
    public static let ioLengthMax = 16 << 20
    /// Largest payload of any frame: one I/O plus its fixed fields.
    public static let payloadLengthMax = ioLengthMax + 4096
    /// Requests one connection may have in flight before the server stops reading from it.
    public static let inFlightPerConnectionMax = 512
    public static let headerSize = 24
}

public enum Opcode: UInt8, Sendable, CaseIterable {
    case hello = 1
    case read = 2
    case write = 3
    case trim = 4
    case blockTable = 5
    case putBlocks = 6
    case fence = 7
    case deleteChunk = 8
    case deleteVolume = 9
    case rebuild = 10
    case ping = 11
    case readBlocksRaw = 12
    case copyChunk = 13
}

public enum WireStatus: UInt16, Sendable {
    case ok = 0
    case staleEpoch = 1
    case checksumMismatch = 2
    case io = 3
    case invalid = 4
    case notFound = 5
    case noSpace = 6
    case unauthenticated = 7
    case busy = 8
    case internalError = 9
}

public struct RequestFrame: Sendable {
    public static let magic: UInt32 = 0x4352_4E51  // "CRNQ"
    public var opcode: Opcode
    public var flags: UInt16
    public var id: UInt64
    public var payload: ByteBuffer
    /// Bytes that follow `payload` on the wire as part of it (a write's data), kept as a
    /// separate buffer so they are sent without being copied. Decoded frames have none.
    public var data: ByteBuffer
    public init(opcode: Opcode, flags: UInt16 = 0, id: UInt64, payload: ByteBuffer, data: ByteBuffer = ByteBuffer()) {
        self.opcode = opcode; self.flags = flags; self.id = id; self.payload = payload; self.data = data
    }

    /// Bytes of the payload on the wire: `payload` then `data`.
    public var wireLength: Int { payload.readableBytes + data.readableBytes }
}

public struct ResponseFrame: Sendable {
    public static let magic: UInt32 = 0x4352_4E52  // "CRNR"
    public var opcode: Opcode
    public var status: WireStatus
    public var id: UInt64
    public var payload: ByteBuffer
    public init(opcode: Opcode, status: WireStatus, id: UInt64, payload: ByteBuffer) {
        self.opcode = opcode; self.status = status; self.id = id; self.payload = payload
    }
}

public let wireVersion: UInt8 = 1

/// Pure frame codec: bytes in, frames out. Used by the NIO handlers and by tests.
public enum FrameCodec {
    public static func encode(_ frame: RequestFrame, into out: inout ByteBuffer) {
        out.writeInteger(RequestFrame.magic)
        out.writeInteger(wireVersion)
        out.writeInteger(frame.opcode.rawValue)
        out.writeInteger(frame.flags)
        out.writeInteger(frame.id)
        out.writeInteger(UInt32(frame.wireLength))
        out.writeInteger(UInt32(0))
        out.writeImmutableBuffer(frame.payload)
        out.writeImmutableBuffer(frame.data)
    }

    public static func encode(_ frame: ResponseFrame, into out: inout ByteBuffer) {
        out.writeInteger(ResponseFrame.magic)
        out.writeInteger(wireVersion)
        out.writeInteger(frame.opcode.rawValue)
        out.writeInteger(frame.status.rawValue)
        out.writeInteger(frame.id)
        out.writeInteger(UInt32(frame.payload.readableBytes))
        out.writeInteger(UInt32(0))
        var payload = frame.payload
        out.writeBuffer(&payload)
    }

    /// Returns a frame when `buffer` holds a whole one (consuming it), nil when more bytes
    /// are needed; throws on input that can never become a valid frame.
    public static func decodeRequest(_ buffer: inout ByteBuffer) throws -> RequestFrame? {
        guard let header = try peekHeader(buffer, magic: RequestFrame.magic) else { return nil }
        guard let opcode = Opcode(rawValue: header.opcode) else {
            throw CairnError.protocolError("unknown opcode \(header.opcode)")
        }
        guard buffer.readableBytes >= WireLimits.headerSize + header.length else { return nil }
        buffer.moveReaderIndex(forwardBy: WireLimits.headerSize)
        let payload = buffer.readSlice(length: header.length)!
        return RequestFrame(opcode: opcode, flags: header.field, id: header.id, payload: payload)
    }

    public static func decodeResponse(_ buffer: inout ByteBuffer) throws -> ResponseFrame? {
        guard let header = try peekHeader(buffer, magic: ResponseFrame.magic) else { return nil }
        guard let opcode = Opcode(rawValue: header.opcode) else {
            throw CairnError.protocolError("unknown opcode \(header.opcode)")
        }
        guard let status = WireStatus(rawValue: header.field) else {
            throw CairnError.protocolError("unknown status \(header.field)")
        }
        guard buffer.readableBytes >= WireLimits.headerSize + header.length else { return nil }
        buffer.moveReaderIndex(forwardBy: WireLimits.headerSize)
        let payload = buffer.readSlice(length: header.length)!
        return ResponseFrame(opcode: opcode, status: status, id: header.id, payload: payload)
    }

    private struct Header {
        var opcode: UInt8
        var field: UInt16
        var id: UInt64
        var length: Int
    }

    private static func peekHeader(_ buffer: ByteBuffer, magic: UInt32) throws -> Header? {
        let start = buffer.readerIndex
        // Check the magic as soon as four bytes are here, so garbage is refused early.
        if buffer.readableBytes >= 4, buffer.getInteger(at: start, as: UInt32.self)! != magic {
            throw CairnError.protocolError("bad magic")
        }
        guard buffer.readableBytes >= WireLimits.headerSize else { return nil }
        let version = buffer.getInteger(at: start + 4, as: UInt8.self)!
        guard version == wireVersion else { throw CairnError.protocolError("unsupported version \(version)") }
        let length = Int(buffer.getInteger(at: start + 16, as: UInt32.self)!)
        guard length <= WireLimits.payloadLengthMax else {
            throw CairnError.protocolError("payload of \(length) bytes is above the limit of \(WireLimits.payloadLengthMax)")
        }
        return Header(
            opcode: buffer.getInteger(at: start + 5, as: UInt8.self)!,
            field: buffer.getInteger(at: start + 6, as: UInt16.self)!,
            id: buffer.getInteger(at: start + 8, as: UInt64.self)!,
            length: length)
    }
}
