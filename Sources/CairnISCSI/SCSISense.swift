// SCSI status and sense data (SPC-4 section 4.5): fixed-format sense, the sense keys and
// additional sense codes this target reports, and the result of one command.
import NIOCore

public enum SCSIStatus: UInt8, Sendable {
    case good = 0x00, checkCondition = 0x02, conditionMet = 0x04, busy = 0x08
    case reservationConflict = 0x18, taskSetFull = 0x28, taskAborted = 0x40
}

public struct SCSISense: Equatable, Sendable, Error {
    public var key: UInt8
    public var asc: UInt8
    public var ascq: UInt8
    /// The INFORMATION field (VALID set when present), e.g. a miscompare's offset.
    public var information: UInt32?

    public init(key: UInt8, asc: UInt8, ascq: UInt8, information: UInt32? = nil) {
        self.key = key; self.asc = asc; self.ascq = ascq; self.information = information
    }

    // Sense keys.
    public static let keyNoSense: UInt8 = 0x0, keyNotReady: UInt8 = 0x2, keyMediumError: UInt8 = 0x3
    public static let keyHardwareError: UInt8 = 0x4, keyIllegalRequest: UInt8 = 0x5, keyUnitAttention: UInt8 = 0x6
    public static let keyDataProtect: UInt8 = 0x7, keyAbortedCommand: UInt8 = 0xb, keyMiscompare: UInt8 = 0xe

    public static let invalidOpcode = SCSISense(key: keyIllegalRequest, asc: 0x20, ascq: 0x00)
    public static let invalidFieldInCDB = SCSISense(key: keyIllegalRequest, asc: 0x24, ascq: 0x00)
    public static let lbaOutOfRange = SCSISense(key: keyIllegalRequest, asc: 0x21, ascq: 0x00)
    public static let invalidFieldInParameterList = SCSISense(key: keyIllegalRequest, asc: 0x26, ascq: 0x00)
    public static let parameterListLengthError = SCSISense(key: keyIllegalRequest, asc: 0x1a, ascq: 0x00)
    public static let invalidFieldInInformationUnit = SCSISense(key: keyIllegalRequest, asc: 0x0e, ascq: 0x03)
    public static let invalidReleaseOfPersistentReservation = SCSISense(key: keyIllegalRequest, asc: 0x26, ascq: 0x04)
    public static let savingParametersNotSupported = SCSISense(key: keyIllegalRequest, asc: 0x39, ascq: 0x00)
    public static let logicalUnitNotSupported = SCSISense(key: keyIllegalRequest, asc: 0x25, ascq: 0x00)
    public static let writeProtected = SCSISense(key: keyDataProtect, asc: 0x27, ascq: 0x00)
    public static let unrecoveredReadError = SCSISense(key: keyMediumError, asc: 0x11, ascq: 0x00)
    public static let writeError = SCSISense(key: keyMediumError, asc: 0x0c, ascq: 0x00)
    public static func miscompare(at offset: Int) -> SCSISense {
        SCSISense(key: keyMiscompare, asc: 0x1d, ascq: 0x00, information: UInt32(truncatingIfNeeded: offset))
    }

    /// Fixed format (response code 70h), 18 bytes.
    public var fixedFormat: [UInt8] {
        var s = [UInt8](repeating: 0, count: 18)
        s[0] = 0x70 | (information != nil ? 0x80 : 0)
        s[2] = key & 0x0f
        if let info = information {
            s[3] = UInt8(info >> 24); s[4] = UInt8((info >> 16) & 0xff); s[5] = UInt8((info >> 8) & 0xff); s[6] = UInt8(info & 0xff)
        }
        s[7] = 10
        s[12] = asc; s[13] = ascq
        return s
    }
}

/// What a command produced: its status, the data for the initiator, and sense data.
public struct SCSIResult: Sendable {
    public var status: SCSIStatus
    public var data: ByteBuffer
    public var sense: SCSISense?

    public static func good(_ data: ByteBuffer = ByteBuffer()) -> SCSIResult { SCSIResult(status: .good, data: data, sense: nil) }
    public static func check(_ sense: SCSISense) -> SCSIResult { SCSIResult(status: .checkCondition, data: ByteBuffer(), sense: sense) }
    public static let reservationConflict = SCSIResult(status: .reservationConflict, data: ByteBuffer(), sense: nil)

    /// Data truncated to an allocation length, as SPC-4 asks of every data-in command.
    static func good(_ bytes: [UInt8], allocationLength: Int) -> SCSIResult {
        .good(ByteBuffer(bytes: bytes.prefix(allocationLength)))
    }
}
