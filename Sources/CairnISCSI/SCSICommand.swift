// SCSI command descriptor blocks (SPC-4, SBC-3) parsed into typed commands. Pure: a CDB
// in, a command or the sense data of its rejection out. Range checks against the
// capacity happen when the command runs; here only the CDB itself is judged.
public enum SCSIOpcode {
    public static let testUnitReady: UInt8 = 0x00, requestSense: UInt8 = 0x03, read6: UInt8 = 0x08
    public static let write6: UInt8 = 0x0a, inquiry: UInt8 = 0x12, modeSelect6: UInt8 = 0x15
    public static let reserve6: UInt8 = 0x16, release6: UInt8 = 0x17, modeSense6: UInt8 = 0x1a
    public static let startStopUnit: UInt8 = 0x1b, preventAllow: UInt8 = 0x1e, readCapacity10: UInt8 = 0x25
    public static let read10: UInt8 = 0x28, write10: UInt8 = 0x2a, writeVerify10: UInt8 = 0x2e, verify10: UInt8 = 0x2f
    public static let prefetch10: UInt8 = 0x34, synchronizeCache10: UInt8 = 0x35, writeSame10: UInt8 = 0x41
    public static let unmap: UInt8 = 0x42, modeSelect10: UInt8 = 0x55, modeSense10: UInt8 = 0x5a
    public static let persistentReserveIn: UInt8 = 0x5e, persistentReserveOut: UInt8 = 0x5f
    public static let read16: UInt8 = 0x88, compareAndWrite: UInt8 = 0x89, write16: UInt8 = 0x8a, orWrite: UInt8 = 0x8b
    public static let writeVerify16: UInt8 = 0x8e, verify16: UInt8 = 0x8f, prefetch16: UInt8 = 0x90
    public static let synchronizeCache16: UInt8 = 0x91, writeSame16: UInt8 = 0x93, serviceActionIn16: UInt8 = 0x9e
    public static let reportLUNs: UInt8 = 0xa0, maintenanceIn: UInt8 = 0xa3, read12: UInt8 = 0xa8, write12: UInt8 = 0xaa
    public static let writeVerify12: UInt8 = 0xae, verify12: UInt8 = 0xaf
    // Service actions.
    public static let saReadCapacity16: UInt8 = 0x10, saGetLBAStatus: UInt8 = 0x12, saReportSupportedOpcodes: UInt8 = 0x0c

    /// CDB length by group code (bits 5-7 of the opcode).
    static func cdbLength(_ opcode: UInt8) -> Int? {
        switch opcode >> 5 {
        case 0: return 6
        case 1, 2: return 10
        case 4: return 16
        case 5: return 12
        default: return nil
        }
    }
}

public enum SCSICommand: Equatable, Sendable {
    case testUnitReady
    case requestSense(descriptor: Bool, allocation: Int)
    case inquiry(evpd: Bool, page: UInt8, allocation: Int)
    case readCapacity10
    case readCapacity16(allocation: Int)
    case read(lba: UInt64, blocks: Int)
    case write(lba: UInt64, blocks: Int, fua: Bool)
    case writeVerify(lba: UInt64, blocks: Int)
    /// byteCheck 0: medium only; 1: compare with the data sent; 3: compare every block with one block sent.
    case verify(lba: UInt64, blocks: Int, byteCheck: UInt8)
    case synchronizeCache(lba: UInt64, blocks: Int)
    case prefetch(lba: UInt64, blocks: Int)
    case writeSame(lba: UInt64, blocks: Int, unmap: Bool, noDataOut: Bool)
    case unmap(parameterLength: Int)
    case compareAndWrite(lba: UInt64, blocks: Int)
    case orWrite(lba: UInt64, blocks: Int)
    case getLBAStatus(lba: UInt64, allocation: Int)
    case modeSense(tenByte: Bool, disableBlockDescriptors: Bool, pageControl: UInt8, page: UInt8, subpage: UInt8, allocation: Int)
    case modeSelect(tenByte: Bool, parameterLength: Int)
    case reportLUNs(allocation: Int)
    case reportSupportedOpcodes(timeouts: Bool, options: UInt8, opcode: UInt8, serviceAction: UInt16, allocation: Int)
    case persistentReserveIn(serviceAction: UInt8, allocation: Int)
    case persistentReserveOut(serviceAction: UInt8, scope: UInt8, type: UInt8, parameterLength: Int)
    case reserve6, release6
    case startStopUnit
    case preventAllow

    /// Parses a CDB; throws the sense of its rejection.
    public static func parse(_ cdb: [UInt8]) throws -> SCSICommand {
        guard let opcode = cdb.first else { throw SCSISense.invalidOpcode }
        if let n = SCSIOpcode.cdbLength(opcode), cdb.count < n { throw SCSISense.invalidFieldInCDB }
        func u16(_ i: Int) -> Int { Int(cdb[i]) << 8 | Int(cdb[i + 1]) }
        func u32(_ i: Int) -> UInt32 { UInt32(cdb[i]) << 24 | UInt32(cdb[i + 1]) << 16 | UInt32(cdb[i + 2]) << 8 | UInt32(cdb[i + 3]) }
        func u64(_ i: Int) -> UInt64 { UInt64(u32(i)) << 32 | UInt64(u32(i + 4)) }
        /// RDPROTECT / WRPROTECT / VRPROTECT: protection information is not supported.
        func noProtection() throws { if cdb[1] & 0xe0 != 0 { throw SCSISense.invalidFieldInCDB } }
        let o = SCSIOpcode.self
        switch opcode {
        case o.testUnitReady: return .testUnitReady
        case o.requestSense: return .requestSense(descriptor: cdb[1] & 1 != 0, allocation: Int(cdb[4]))
        case o.inquiry:
            if cdb[1] & 0x02 != 0 { throw SCSISense.invalidFieldInCDB }   // CMDDT is obsolete
            let evpd = cdb[1] & 1 != 0
            if !evpd && cdb[2] != 0 { throw SCSISense.invalidFieldInCDB }
            return .inquiry(evpd: evpd, page: cdb[2], allocation: u16(3))
        case o.readCapacity10:
            // Without PMI the LBA field must be zero.
            if cdb[8] & 1 == 0 && u32(2) != 0 { throw SCSISense.invalidFieldInCDB }
            return .readCapacity10
        case o.read6, o.write6:
            let lba = UInt64(cdb[1] & 0x1f) << 16 | UInt64(cdb[2]) << 8 | UInt64(cdb[3])
            let blocks = cdb[4] == 0 ? 256 : Int(cdb[4])
            return opcode == o.read6 ? .read(lba: lba, blocks: blocks) : .write(lba: lba, blocks: blocks, fua: false)
        case o.read10, o.read12, o.read16:
            try noProtection()
            let (lba, blocks) = Self.lbaAndLength(cdb, opcode == o.read10 ? 10 : opcode == o.read12 ? 12 : 16)
            return .read(lba: lba, blocks: blocks)
        case o.write10, o.write12, o.write16:
            try noProtection()
            let (lba, blocks) = Self.lbaAndLength(cdb, opcode == o.write10 ? 10 : opcode == o.write12 ? 12 : 16)
            return .write(lba: lba, blocks: blocks, fua: cdb[1] & 0x08 != 0)
        case o.writeVerify10, o.writeVerify12, o.writeVerify16:
            try noProtection()
            let (lba, blocks) = Self.lbaAndLength(cdb, opcode == o.writeVerify10 ? 10 : opcode == o.writeVerify12 ? 12 : 16)
            return .writeVerify(lba: lba, blocks: blocks)
        case o.verify10, o.verify12, o.verify16:
            try noProtection()
            let byteCheck = (cdb[1] >> 1) & 0x03
            if byteCheck == 2 { throw SCSISense.invalidFieldInCDB }
            let (lba, blocks) = Self.lbaAndLength(cdb, opcode == o.verify10 ? 10 : opcode == o.verify12 ? 12 : 16)
            return .verify(lba: lba, blocks: blocks, byteCheck: byteCheck)
        case o.synchronizeCache10, o.synchronizeCache16, o.prefetch10, o.prefetch16:
            let ten = opcode == o.synchronizeCache10 || opcode == o.prefetch10
            let (lba, blocks) = Self.lbaAndLength(cdb, ten ? 10 : 16)
            let sync = opcode == o.synchronizeCache10 || opcode == o.synchronizeCache16
            return sync ? .synchronizeCache(lba: lba, blocks: blocks) : .prefetch(lba: lba, blocks: blocks)
        case o.writeSame10, o.writeSame16:
            try noProtection()
            if cdb[1] & 0x10 != 0 { throw SCSISense.invalidFieldInCDB }   // ANCHOR: not supported
            let ten = opcode == o.writeSame10
            let (lba, blocks) = Self.lbaAndLength(cdb, ten ? 10 : 16)
            let ndob = !ten && cdb[1] & 0x01 != 0
            return .writeSame(lba: lba, blocks: blocks, unmap: cdb[1] & 0x08 != 0, noDataOut: ndob)
        case o.unmap:
            if cdb[1] & 0x01 != 0 { throw SCSISense.invalidFieldInCDB }   // ANCHOR
            return .unmap(parameterLength: u16(7))
        case o.compareAndWrite:
            try noProtection()
            return .compareAndWrite(lba: u64(2), blocks: Int(cdb[13]))
        case o.orWrite:
            try noProtection()
            let (lba, blocks) = Self.lbaAndLength(cdb, 16)
            return .orWrite(lba: lba, blocks: blocks)
        case o.serviceActionIn16:
            switch cdb[1] & 0x1f {
            case o.saReadCapacity16: return .readCapacity16(allocation: Int(u32(10)))
            case o.saGetLBAStatus: return .getLBAStatus(lba: u64(2), allocation: Int(u32(10)))
            default: throw SCSISense.invalidFieldInCDB
            }
        case o.modeSense6, o.modeSense10:
            let ten = opcode == o.modeSense10
            return .modeSense(tenByte: ten, disableBlockDescriptors: cdb[1] & 0x08 != 0, pageControl: cdb[2] >> 6,
                              page: cdb[2] & 0x3f, subpage: cdb[3], allocation: ten ? u16(7) : Int(cdb[4]))
        case o.modeSelect6, o.modeSelect10:
            // PF must be set (SPC-4 page format); SP (save pages) is not supported.
            if cdb[1] & 0x01 != 0 { throw SCSISense.invalidFieldInCDB }
            let ten = opcode == o.modeSelect10
            return .modeSelect(tenByte: ten, parameterLength: ten ? u16(7) : Int(cdb[4]))
        case o.reportLUNs:
            let allocation = Int(u32(6))
            if allocation < 16 { throw SCSISense.invalidFieldInCDB }
            if ![0, 1, 2, 0x10, 0x11, 0x12].contains(cdb[2]) { throw SCSISense.invalidFieldInCDB }
            return .reportLUNs(allocation: allocation)
        case o.maintenanceIn:
            guard cdb[1] & 0x1f == o.saReportSupportedOpcodes else { throw SCSISense.invalidFieldInCDB }
            let options = cdb[2] & 0x07
            if options > 3 { throw SCSISense.invalidFieldInCDB }
            return .reportSupportedOpcodes(timeouts: cdb[2] & 0x80 != 0, options: options, opcode: cdb[3],
                                           serviceAction: UInt16(u16(4)), allocation: Int(u32(6)))
        case o.persistentReserveIn:
            return .persistentReserveIn(serviceAction: cdb[1] & 0x1f, allocation: u16(7))
        case o.persistentReserveOut:
            return .persistentReserveOut(serviceAction: cdb[1] & 0x1f, scope: cdb[2] >> 4, type: cdb[2] & 0x0f,
                                         parameterLength: Int(u32(5)))
        case o.reserve6:
            if cdb[1] & 0x01 != 0 { throw SCSISense.invalidFieldInCDB }   // third-party reservations
            return .reserve6
        case o.release6:
            if cdb[1] & 0x01 != 0 { throw SCSISense.invalidFieldInCDB }
            return .release6
        case o.startStopUnit: return .startStopUnit
        case o.preventAllow:
            if cdb[4] & 0x03 > 1 { throw SCSISense.invalidFieldInCDB }     // only for changers
            return .preventAllow
        default:
            throw SCSISense.invalidOpcode
        }
    }

    private static func lbaAndLength(_ cdb: [UInt8], _ size: Int) -> (UInt64, Int) {
        func be(_ from: Int, _ n: Int) -> UInt64 { (from..<from + n).reduce(0) { $0 << 8 | UInt64(cdb[$1]) } }
        switch size {
        case 10: return (be(2, 4), Int(be(7, 2)))
        case 12: return (be(2, 4), Int(be(6, 4)))
        default: return (be(2, 8), Int(be(10, 4)))
        }
    }

    /// Bytes the command expects from the initiator (Data-Out), given the block size.
    public func dataOutLength(blockSize: Int) -> Int {
        switch self {
        case .write(_, let blocks, _), .writeVerify(_, let blocks), .orWrite(_, let blocks): return blocks * blockSize
        case .verify(_, let blocks, let byteCheck): return byteCheck == 1 ? blocks * blockSize : byteCheck == 3 ? blockSize : 0
        case .writeSame(_, _, _, let ndob): return ndob ? 0 : blockSize
        case .compareAndWrite(_, let blocks): return 2 * blocks * blockSize
        case .unmap(let n), .modeSelect(_, let n): return n
        case .persistentReserveOut(_, _, _, let n): return n
        default: return 0
        }
    }

    /// Commands whose Data-Out must be exactly what the CDB says (else INVALID FIELD IN CDB).
    var needsExactDataOut: Bool {
        switch self {
        case .compareAndWrite: return true
        case .writeSame(_, _, _, let ndob): return !ndob
        default: return false
        }
    }

    /// Commands another nexus's RESERVE(6) does not block (SPC-2 5.5.1).
    var allowedUnderReserve6: Bool {
        switch self {
        case .inquiry, .reportLUNs, .requestSense, .release6, .reserve6: return true
        default: return false
        }
    }

    /// How the command touches the medium, for reservation conflicts.
    var access: SCSIAccess {
        switch self {
        case .read, .verify, .getLBAStatus, .prefetch: return .read
        case .write, .writeVerify, .writeSame, .unmap, .compareAndWrite, .orWrite, .synchronizeCache, .modeSelect: return .write
        default: return .none
        }
    }
}
