// The NBD wire codec: one decoder for what clients send, encoders for what the server
// sends. Bytes only, no sockets; the state machines decide what the messages mean.
//
// Client -> server:
//   client flags           u32
//   option request         u64 IHAVEOPT, u32 option, u32 length, data
//   transmission request   u32 0x25609513, u16 flags, u16 type, u64 cookie, u64 offset,
//                          u32 length, then `length` bytes for WRITE
// Server -> client:
//   greeting               u64 NBDMAGIC, u64 IHAVEOPT, u16 handshake flags
//   option reply           u64 0x3e889045565a9, u32 option, u32 reply type, u32 length, data
//   EXPORT_NAME reply      u64 size, u16 transmission flags, [124 zero bytes]
//   simple reply           u32 0x67446698, u32 error, u64 cookie, [data]
//   structured chunk       u32 0x668e33ef, u16 flags, u16 type, u64 cookie, u32 length, payload
import NIOCore

public struct NBDOptionRequest: Equatable, Sendable {
    public var option: UInt32
    public var data: ByteBuffer
    public init(option: UInt32, data: ByteBuffer) { self.option = option; self.data = data }
}

public struct NBDRequest: Equatable, Sendable {
    public var flags: UInt16
    public var type: UInt16
    public var cookie: UInt64
    public var offset: UInt64
    public var length: UInt32
    /// The data of a WRITE (exactly `length` bytes); nil for every other command.
    public var payload: ByteBuffer?
    public init(flags: UInt16, type: UInt16, cookie: UInt64, offset: UInt64, length: UInt32, payload: ByteBuffer? = nil) {
        self.flags = flags; self.type = type; self.cookie = cookie; self.offset = offset; self.length = length
        self.payload = payload
    }
}

public enum NBDInbound: Equatable, Sendable {
    case clientFlags(UInt32)
    case option(NBDOptionRequest)
    case request(NBDRequest)
    /// A WRITE longer than `NBDLimits.payloadMax`: its payload was read and dropped.
    case oversizedWrite(NBDRequest)
}

/// Input that cannot be answered: the connection is closed.
public enum NBDDecodeError: Error, Equatable, CustomStringConvertible {
    case badOptionMagic(UInt64)
    case optionTooLong(UInt32)
    case badRequestMagic(UInt32)
    case writeTooLong(UInt32)

    public var description: String {
        switch self {
        case .badOptionMagic(let m): return "bad option magic 0x\(String(m, radix: 16))"
        case .optionTooLong(let n): return "option of \(n) bytes is above the limit of \(NBDLimits.optionDataMax)"
        case .badRequestMagic(let m): return "bad request magic 0x\(String(m, radix: 16))"
        case .writeTooLong(let n): return "write of \(n) bytes is far above the maximum of \(NBDLimits.payloadMax)"
        }
    }
}

/// Incremental decoder of client bytes. Call `decode` with the accumulated input until it
/// returns nil (needs more bytes); it consumes exactly the bytes of the messages it returns.
public struct NBDDecoder: Sendable {
    public enum Mode: Sendable { case clientFlags, options, transmission }
    public var mode: Mode
    /// Bytes of an oversized WRITE's payload still to drop, and its header.
    private var discard: (remaining: Int, request: NBDRequest)?

    public static let optionHeaderBytes = 16
    public static let requestHeaderBytes = 28

    public init(mode: Mode = .clientFlags) { self.mode = mode }

    public mutating func decode(_ buffer: inout ByteBuffer) throws -> NBDInbound? {
        switch mode {
        case .clientFlags:
            guard let flags = buffer.readInteger(as: UInt32.self) else { return nil }
            return .clientFlags(flags)
        case .options:
            return try decodeOption(&buffer)
        case .transmission:
            return try decodeRequest(&buffer)
        }
    }

    private func decodeOption(_ buffer: inout ByteBuffer) throws -> NBDInbound? {
        guard buffer.readableBytes >= Self.optionHeaderBytes else { return nil }
        let start = buffer.readerIndex
        let magic = buffer.getInteger(at: start, as: UInt64.self)!
        guard magic == NBDMagic.ihaveopt else { throw NBDDecodeError.badOptionMagic(magic) }
        let option = buffer.getInteger(at: start + 8, as: UInt32.self)!
        let length = buffer.getInteger(at: start + 12, as: UInt32.self)!
        guard length <= NBDLimits.optionDataMax else { throw NBDDecodeError.optionTooLong(length) }
        guard buffer.readableBytes >= Self.optionHeaderBytes + Int(length) else { return nil }
        buffer.moveReaderIndex(forwardBy: Self.optionHeaderBytes)
        let data = buffer.readSlice(length: Int(length))!
        return .option(NBDOptionRequest(option: option, data: data))
    }

    private mutating func decodeRequest(_ buffer: inout ByteBuffer) throws -> NBDInbound? {
        if let d = discard {
            let n = min(d.remaining, buffer.readableBytes)
            buffer.moveReaderIndex(forwardBy: n)
            if n < d.remaining { discard = (d.remaining - n, d.request); return nil }
            discard = nil
            return .oversizedWrite(d.request)
        }
        guard buffer.readableBytes >= Self.requestHeaderBytes else { return nil }
        let start = buffer.readerIndex
        let magic = buffer.getInteger(at: start, as: UInt32.self)!
        guard magic == NBDMagic.request else { throw NBDDecodeError.badRequestMagic(magic) }
        var request = NBDRequest(
            flags: buffer.getInteger(at: start + 4, as: UInt16.self)!,
            type: buffer.getInteger(at: start + 6, as: UInt16.self)!,
            cookie: buffer.getInteger(at: start + 8, as: UInt64.self)!,
            offset: buffer.getInteger(at: start + 16, as: UInt64.self)!,
            length: buffer.getInteger(at: start + 24, as: UInt32.self)!)
        guard request.type == NBDCommand.write.rawValue else {
            buffer.moveReaderIndex(forwardBy: Self.requestHeaderBytes)
            return .request(request)
        }
        let length = Int(request.length)
        if length > NBDLimits.payloadMax {
            guard length <= NBDLimits.oversizedWriteDiscardMax else { throw NBDDecodeError.writeTooLong(request.length) }
            buffer.moveReaderIndex(forwardBy: Self.requestHeaderBytes)
            discard = (length, request)
            return try decodeRequest(&buffer)
        }
        guard buffer.readableBytes >= Self.requestHeaderBytes + length else { return nil }
        buffer.moveReaderIndex(forwardBy: Self.requestHeaderBytes)
        request.payload = buffer.readSlice(length: length)!
        return .request(request)
    }
}

// MARK: - Option payload parsers

/// Malformed option data: answered with NBD_REP_ERR_INVALID.
public struct NBDOptionDataError: Error, Equatable {
    public var message: String
    public init(_ message: String) { self.message = message }
}

public struct NBDInfoRequest: Equatable, Sendable {
    public var name: String
    public var infos: [UInt16]
    public init(name: String, infos: [UInt16]) { self.name = name; self.infos = infos }
}

public struct NBDMetaContextRequest: Equatable, Sendable {
    public var name: String
    public var queries: [String]
    public init(name: String, queries: [String]) { self.name = name; self.queries = queries }
}

public enum NBDOptionParser {
    /// INFO / GO: u32 name length, name, u16 count, count x u16.
    public static func info(_ data: ByteBuffer) throws -> NBDInfoRequest {
        var d = data
        let name = try string(&d, what: "export name")
        guard let count = d.readInteger(as: UInt16.self) else { throw NBDOptionDataError("missing information request count") }
        guard d.readableBytes == Int(count) * 2 else {
            throw NBDOptionDataError("\(count) information requests do not fit the \(d.readableBytes) bytes left")
        }
        var infos: [UInt16] = []
        for _ in 0..<count { infos.append(d.readInteger(as: UInt16.self)!) }
        return NBDInfoRequest(name: name, infos: infos)
    }

    /// LIST_META_CONTEXT / SET_META_CONTEXT: u32 name length, name, u32 count, count x (u32 length, query).
    public static func metaContext(_ data: ByteBuffer) throws -> NBDMetaContextRequest {
        var d = data
        let name = try string(&d, what: "export name")
        guard let count = d.readInteger(as: UInt32.self) else { throw NBDOptionDataError("missing query count") }
        var queries: [String] = []
        for _ in 0..<count {
            queries.append(try string(&d, what: "query"))
        }
        guard d.readableBytes == 0 else { throw NBDOptionDataError("\(d.readableBytes) bytes after the last query") }
        return NBDMetaContextRequest(name: name, queries: queries)
    }

    /// A u32 length then that many bytes of UTF-8 without NUL.
    static func string(_ d: inout ByteBuffer, what: String) throws -> String {
        guard let length = d.readInteger(as: UInt32.self) else { throw NBDOptionDataError("missing \(what) length") }
        guard length <= NBDLimits.stringMax else { throw NBDOptionDataError("\(what) of \(length) bytes is longer than 4096") }
        guard let bytes = d.readBytes(length: Int(length)) else {
            throw NBDOptionDataError("\(what) of \(length) bytes is longer than the option")
        }
        guard !bytes.contains(0), let s = String(validating: bytes, as: UTF8.self) else {
            throw NBDOptionDataError("\(what) is not valid UTF-8 without NUL")
        }
        return s
    }
}

// MARK: - Encoders

public enum NBDEncoder {
    public static func greeting(into b: inout ByteBuffer) {
        b.writeInteger(NBDMagic.initPassword)
        b.writeInteger(NBDMagic.ihaveopt)
        b.writeInteger(NBDHandshakeFlag.fixedNewstyle | NBDHandshakeFlag.noZeroes)
    }

    public static func optionReply(option: UInt32, type: UInt32, data: ByteBuffer = ByteBuffer(), into b: inout ByteBuffer) {
        var data = data
        b.writeInteger(NBDMagic.optionReply)
        b.writeInteger(option)
        b.writeInteger(type)
        b.writeInteger(UInt32(data.readableBytes))
        b.writeBuffer(&data)
    }

    /// An error reply with a message for the person reading the client's output.
    public static func optionError(option: UInt32, type: UInt32, message: String, into b: inout ByteBuffer) {
        let text = String(decoding: message.utf8.prefix(NBDLimits.stringMax), as: UTF8.self)
        optionReply(option: option, type: type, data: ByteBuffer(string: text), into: &b)
    }

    public static func exportNameReply(size: UInt64, flags: UInt16, zeroes: Bool, into b: inout ByteBuffer) {
        b.writeInteger(size)
        b.writeInteger(flags)
        if zeroes { b.writeRepeatingByte(0, count: 124) }
    }

    public static func infoExport(size: UInt64, flags: UInt16) -> ByteBuffer {
        var d = ByteBuffer()
        d.writeInteger(NBDInfoType.export.rawValue)
        d.writeInteger(size)
        d.writeInteger(flags)
        return d
    }

    public static func infoString(_ type: NBDInfoType, _ text: String) -> ByteBuffer {
        var d = ByteBuffer()
        d.writeInteger(type.rawValue)
        d.writeString(text)
        return d
    }

    public static func infoBlockSize(minimum: UInt32, preferred: UInt32, maximum: UInt32) -> ByteBuffer {
        var d = ByteBuffer()
        d.writeInteger(NBDInfoType.blockSize.rawValue)
        d.writeInteger(minimum)
        d.writeInteger(preferred)
        d.writeInteger(maximum)
        return d
    }

    public static func serverEntry(name: String, description: String) -> ByteBuffer {
        var d = ByteBuffer()
        d.writeInteger(UInt32(name.utf8.count))
        d.writeString(name)
        d.writeString(description)
        return d
    }

    public static func metaContext(id: UInt32, name: String) -> ByteBuffer {
        var d = ByteBuffer()
        d.writeInteger(id)
        d.writeString(name)
        return d
    }

    /// Simple reply header; a successful READ's data follows it.
    public static func simpleReply(error: UInt32, cookie: UInt64, into b: inout ByteBuffer) {
        b.writeInteger(NBDMagic.simpleReply)
        b.writeInteger(error)
        b.writeInteger(cookie)
    }

    public static func chunkHeader(flags: UInt16, type: UInt16, cookie: UInt64, length: Int, into b: inout ByteBuffer) {
        precondition(length <= Int(UInt32.max), "structured chunk payload above 4 GiB")
        b.writeInteger(NBDMagic.structuredReply)
        b.writeInteger(flags)
        b.writeInteger(type)
        b.writeInteger(cookie)
        b.writeInteger(UInt32(length))
    }

    public static func noneChunk(cookie: UInt64, into b: inout ByteBuffer) {
        chunkHeader(flags: NBDStructuredType.flagDone, type: NBDStructuredType.none, cookie: cookie, length: 0, into: &b)
    }

    /// Header and offset of an OFFSET_DATA chunk; `dataLength` bytes of data follow it.
    public static func offsetDataHeader(cookie: UInt64, offset: UInt64, dataLength: Int, done: Bool, into b: inout ByteBuffer) {
        chunkHeader(flags: done ? NBDStructuredType.flagDone : 0, type: NBDStructuredType.offsetData, cookie: cookie,
                    length: 8 + dataLength, into: &b)
        b.writeInteger(offset)
    }

    public static func offsetHole(cookie: UInt64, offset: UInt64, length: UInt32, done: Bool, into b: inout ByteBuffer) {
        chunkHeader(flags: done ? NBDStructuredType.flagDone : 0, type: NBDStructuredType.offsetHole, cookie: cookie,
                    length: 12, into: &b)
        b.writeInteger(offset)
        b.writeInteger(length)
    }

    public static func blockStatus(cookie: UInt64, contextID: UInt32, descriptors: [(length: UInt32, flags: UInt32)],
                                   done: Bool, into b: inout ByteBuffer) {
        chunkHeader(flags: done ? NBDStructuredType.flagDone : 0, type: NBDStructuredType.blockStatus, cookie: cookie,
                    length: 4 + 8 * descriptors.count, into: &b)
        b.writeInteger(contextID)
        for d in descriptors {
            b.writeInteger(d.length)
            b.writeInteger(d.flags)
        }
    }

    public static func errorChunk(cookie: UInt64, error: NBDError, message: String, into b: inout ByteBuffer) {
        let text = Array(message.utf8.prefix(NBDLimits.stringMax))
        chunkHeader(flags: NBDStructuredType.flagDone, type: NBDStructuredType.error, cookie: cookie,
                    length: 6 + text.count, into: &b)
        b.writeInteger(error.rawValue)
        b.writeInteger(UInt16(text.count))
        b.writeBytes(text)
    }
}
