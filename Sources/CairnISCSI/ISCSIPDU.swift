// iSCSI PDUs (RFC 7143 section 11): a 48-byte basic header segment (BHS), optional
// additional header segments (AHS), an optional header digest, a data segment padded to a
// multiple of 4 bytes, an optional data digest. This file knows bytes, not sockets.
//
// Invariants: a PDU's BHS is always exactly 48 bytes; DataSegmentLength in the BHS always
// equals the data segment's byte count (the encoder writes it). Digests are CRC32C over
// the header (BHS + AHS) and over the padded data, stored little-endian as the Linux and
// libiscsi initiators do.
import CairnCore
import NIOCore

public enum ISCSIOpcode: UInt8, Sendable {
    // Initiator to target.
    case nopOut = 0x00, scsiCommand = 0x01, taskManagementRequest = 0x02, loginRequest = 0x03
    case textRequest = 0x04, dataOut = 0x05, logoutRequest = 0x06, snackRequest = 0x10
    // Target to initiator.
    case nopIn = 0x20, scsiResponse = 0x21, taskManagementResponse = 0x22, loginResponse = 0x23
    case textResponse = 0x24, dataIn = 0x25, logoutResponse = 0x26, r2t = 0x31
    case asyncMessage = 0x32, reject = 0x3f
}

public enum ISCSILimits {
    public static let bhsLength = 48
    /// Largest data segment we accept from an initiator (our MaxRecvDataSegmentLength).
    public static let recvDataSegmentMax = 256 * 1024
    /// Data segments during login: RFC 7143 fixes 8192 until negotiated.
    public static let loginDataSegmentMax = 8192
    /// Largest text a login or text negotiation may accumulate across continued PDUs.
    public static let textMax = 64 * 1024
    /// Total AHS length we accept (bytes).
    public static let ahsMax = 1020
    /// Commands we allow in flight per session: MaxCmdSN = ExpCmdSN + queueDepth - 1.
    public static let queueDepth: UInt32 = 128
    /// Largest SCSI data transfer per command (Block Limits VPD MAXIMUM TRANSFER LENGTH).
    public static let transferBytesMax = 32 * 1024 * 1024
    /// Write data a connection holds (solicited, not yet written): no R2T goes out beyond it.
    public static let writeBufferBytesMax = 64 * 1024 * 1024
    /// Our MaxBurstLength and FirstBurstLength offers.
    public static let burstMax = 1024 * 1024
    public static let firstBurstMax = 256 * 1024
    /// Connections per gateway.
    public static let connectionsMax = 256
    /// Reserved task tag value.
    public static let reservedTag: UInt32 = 0xffff_ffff
}

/// One PDU. `bhs` always holds 48 bytes; accessors read and write its fields.
public struct ISCSIPDU: Equatable, Sendable {
    public var bhs: [UInt8]
    public var ahs: [UInt8]
    public var data: ByteBuffer

    public init(opcode: ISCSIOpcode, immediate: Bool = false, final: Bool = true) {
        bhs = [UInt8](repeating: 0, count: ISCSILimits.bhsLength)
        ahs = []
        data = ByteBuffer()
        bhs[0] = opcode.rawValue | (immediate ? 0x40 : 0)
        if final { bhs[1] = 0x80 }
    }

    public init(bhs: [UInt8], ahs: [UInt8] = [], data: ByteBuffer = ByteBuffer()) {
        precondition(bhs.count == ISCSILimits.bhsLength, "a BHS is 48 bytes")
        self.bhs = bhs; self.ahs = ahs; self.data = data
    }

    public var rawOpcode: UInt8 { bhs[0] & 0x3f }
    public var opcode: ISCSIOpcode? { ISCSIOpcode(rawValue: rawOpcode) }
    public var immediate: Bool { bhs[0] & 0x40 != 0 }
    public var final: Bool { bhs[1] & 0x80 != 0 }
    public var flags: UInt8 { get { bhs[1] } set { bhs[1] = newValue } }
    public var dataSegmentLength: Int { Int(bhs[5]) << 16 | Int(bhs[6]) << 8 | Int(bhs[7]) }
    public var lun: UInt64 { get { u64(8) } set { set64(8, newValue) } }
    public var itt: UInt32 { get { u32(16) } set { set32(16, newValue) } }

    public func u16(_ at: Int) -> UInt16 { UInt16(bhs[at]) << 8 | UInt16(bhs[at + 1]) }
    public func u32(_ at: Int) -> UInt32 {
        UInt32(bhs[at]) << 24 | UInt32(bhs[at + 1]) << 16 | UInt32(bhs[at + 2]) << 8 | UInt32(bhs[at + 3])
    }
    public func u64(_ at: Int) -> UInt64 { UInt64(u32(at)) << 32 | UInt64(u32(at + 4)) }
    public mutating func set16(_ at: Int, _ v: UInt16) { bhs[at] = UInt8(v >> 8); bhs[at + 1] = UInt8(v & 0xff) }
    public mutating func set32(_ at: Int, _ v: UInt32) {
        for i in 0..<4 { bhs[at + i] = UInt8((v >> (24 - 8 * UInt32(i))) & 0xff) }
    }
    public mutating func set64(_ at: Int, _ v: UInt64) { set32(at, UInt32(v >> 32)); set32(at + 4, UInt32(v & 0xffff_ffff)) }
}

public struct ISCSIDigests: Equatable, Sendable {
    public var header = false
    public var data = false
    public init(header: Bool = false, data: Bool = false) { self.header = header; self.data = data }
}

public enum ISCSIDecodeError: Error, Equatable {
    /// The header digest did not match: the PDU boundaries cannot be trusted; close.
    case headerDigest
    /// The data digest did not match: the header is fine (answer with a Reject).
    case dataDigest(bhs: [UInt8])
    case dataSegmentTooLong(Int)
    case ahsTooLong(Int)
}

/// Pure decoder: call `decode` with the bytes received so far; it consumes one whole PDU
/// and returns it, or returns nil and consumes nothing when more bytes are needed.
public struct ISCSIPDUDecoder: Sendable {
    public var digests = ISCSIDigests()
    public var dataSegmentMax = ISCSILimits.loginDataSegmentMax
    public init() {}

    public func decode(_ buffer: inout ByteBuffer) throws -> ISCSIPDU? {
        guard buffer.readableBytes >= ISCSILimits.bhsLength else { return nil }
        let start = buffer.readerIndex
        let bhs = buffer.getBytes(at: start, length: ISCSILimits.bhsLength)!
        let ahsLength = Int(bhs[4]) * 4
        let dataLength = Int(bhs[5]) << 16 | Int(bhs[6]) << 8 | Int(bhs[7])
        guard ahsLength <= ISCSILimits.ahsMax else { throw ISCSIDecodeError.ahsTooLong(ahsLength) }
        guard dataLength <= dataSegmentMax else { throw ISCSIDecodeError.dataSegmentTooLong(dataLength) }
        let padded = (dataLength + 3) & ~3
        let headerLength = ISCSILimits.bhsLength + ahsLength
        let total = headerLength + (digests.header ? 4 : 0) + padded + (digests.data && dataLength > 0 ? 4 : 0)
        guard buffer.readableBytes >= total else { return nil }
        if digests.header {
            let crc = buffer.withUnsafeReadableBytes { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[0..<headerLength])) }
            guard buffer.getInteger(at: start + headerLength, endianness: .little, as: UInt32.self) == crc else {
                throw ISCSIDecodeError.headerDigest
            }
        }
        let dataStart = start + headerLength + (digests.header ? 4 : 0)
        if digests.data && dataLength > 0 {
            let offset = dataStart - start
            let crc = buffer.withUnsafeReadableBytes { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[offset..<offset + padded])) }
            guard buffer.getInteger(at: dataStart + padded, endianness: .little, as: UInt32.self) == crc else {
                buffer.moveReaderIndex(forwardBy: total)
                throw ISCSIDecodeError.dataDigest(bhs: bhs)
            }
        }
        let ahs = buffer.getBytes(at: start + ISCSILimits.bhsLength, length: ahsLength)!
        let data = buffer.getSlice(at: dataStart, length: dataLength)!
        buffer.moveReaderIndex(forwardBy: total)
        return ISCSIPDU(bhs: bhs, ahs: ahs, data: data)
    }
}

public enum ISCSIPDUEncoder {
    /// Writes the PDU with DataSegmentLength set from its data, padding and digests.
    public static func encode(_ pdu: ISCSIPDU, digests: ISCSIDigests, into out: inout ByteBuffer) {
        precondition(pdu.ahs.count % 4 == 0 && pdu.ahs.count <= ISCSILimits.ahsMax, "AHS is whole words")
        var bhs = pdu.bhs
        let dataLength = pdu.data.readableBytes
        precondition(dataLength < 1 << 24, "data segment length is 24 bits")
        bhs[4] = UInt8(pdu.ahs.count / 4)
        bhs[5] = UInt8(dataLength >> 16); bhs[6] = UInt8((dataLength >> 8) & 0xff); bhs[7] = UInt8(dataLength & 0xff)
        let headerStart = out.writerIndex
        out.writeBytes(bhs)
        out.writeBytes(pdu.ahs)
        if digests.header {
            let crc = out.withUnsafeReadableBytes {
                CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[(headerStart - out.readerIndex)...]))
            }
            out.writeInteger(crc, endianness: .little)
        }
        guard dataLength > 0 else { return }
        let dataStart = out.writerIndex
        var data = pdu.data
        out.writeBuffer(&data)
        let pad = (4 - dataLength % 4) % 4
        if pad > 0 { out.writeRepeatingByte(0, count: pad) }
        if digests.data {
            let crc = out.withUnsafeReadableBytes {
                CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[(dataStart - out.readerIndex)...]))
            }
            out.writeInteger(crc, endianness: .little)
        }
    }

    public static func encode(_ pdu: ISCSIPDU, digests: ISCSIDigests) -> ByteBuffer {
        var out = ByteBuffer()
        out.reserveCapacity(ISCSILimits.bhsLength + 8 + pdu.data.readableBytes + 8)
        encode(pdu, digests: digests, into: &out)
        return out
    }
}
