// INQUIRY data (standard and VPD pages 00h, 80h, 83h, B0h, B1h, B2h), mode pages
// (caching 08h, control 0Ah, informational exceptions 1Ch) and REPORT SUPPORTED
// OPERATION CODES: the fixed descriptions of a logical unit.
import NIOCore

enum SCSIInquiry {
    static let vendor = "CAIRN"
    static let product = "VOLUME"
    static let revision = "0001"
    static let supportedPages: [UInt8] = [0x00, 0x80, 0x83, 0xb0, 0xb1, 0xb2]

    static func data(_ lu: SCSILogicalUnit, evpd: Bool, page: UInt8) throws -> [UInt8] {
        guard evpd else { return standard() }
        switch page {
        case 0x00: return vpd(0x00, supportedPages)
        case 0x80: return vpd(0x80, Array(serial(lu.name).utf8))
        case 0x83: return vpd(0x83, identification(lu))
        case 0xb0: return vpd(0xb0, blockLimits())
        case 0xb1: return vpd(0xb1, [0x00, 0x01] + [UInt8](repeating: 0, count: 58))  // non-rotating medium
        case 0xb2: return vpd(0xb2, [0x00, 0x80 | 0x40 | 0x20 | 0x04, 0x02, 0x00])    // LBPU, LBPWS, LBPWS10, LBPRZ; thin
        default: throw SCSISense.invalidFieldInCDB
        }
    }

    static func standard() -> [UInt8] {
        var d = [UInt8](repeating: 0, count: 74)
        d[0] = 0x00                 // connected direct-access block device
        d[2] = 0x06                 // SPC-4
        d[3] = 0x12                 // HISUP, response data format 2
        d[4] = UInt8(d.count - 5)
        d[7] = 0x02                 // CMDQUE
        d.replaceSubrange(8..<16, with: padded(vendor, 8))
        d.replaceSubrange(16..<32, with: padded(product, 16))
        d.replaceSubrange(32..<36, with: padded(revision, 4))
        // Version descriptors: SAM-5, iSCSI, SPC-4, SBC-3.
        let versions: [UInt16] = [0x00a0, 0x0960, 0x0460, 0x04c0]
        for (i, v) in versions.enumerated() { d.replaceSubrange((58 + 2 * i)..<(60 + 2 * i), with: be16(v)) }
        return d
    }

    static func vpd(_ page: UInt8, _ body: [UInt8]) -> [UInt8] {
        [0x00, page] + be16(UInt16(body.count)) + body
    }

    static func padded(_ s: String, _ n: Int) -> [UInt8] {
        Array((Array(s.utf8) + [UInt8](repeating: 0x20, count: n)).prefix(n))
    }

    /// A stable 64-bit identity of the volume (FNV-1a of its name).
    static func identity(_ name: String) -> UInt64 {
        name.utf8.reduce(UInt64(0xcbf2_9ce4_8422_2325)) { ($0 ^ UInt64($1)) &* 0x100_0000_01b3 }
    }

    static func serial(_ name: String) -> String {
        let hex = String(identity(name), radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }

    static func identification(_ lu: SCSILogicalUnit) -> [UInt8] {
        var out: [UInt8] = []
        // NAA locally assigned (3h), binary, associated with the logical unit.
        let naa = (UInt64(0x3) << 60) | (identity(lu.name) & 0x0fff_ffff_ffff_ffff)
        out += [0x01, 0x03, 0x00, 0x08] + be64(naa)
        // T10 vendor identification, ASCII: vendor then the volume's serial.
        let t10 = padded(vendor, 8) + Array(serial(lu.name).utf8)
        out += [0x02, 0x01, 0x00, UInt8(t10.count)] + t10
        // SCSI name string of the target device (iSCSI, UTF-8, NUL-terminated, padded to 4).
        var nameBytes = Array(lu.targetName.utf8) + [0]
        while nameBytes.count % 4 != 0 { nameBytes.append(0) }
        out += [0x53, 0x80 | 0x20 | 0x08, 0x00, UInt8(min(nameBytes.count, 252))] + nameBytes.prefix(252)
        // Relative target port 1 (iSCSI, binary, target port).
        out += [0x51, 0x80 | 0x10 | 0x04, 0x00, 0x04, 0, 0, 0, 1]
        return out
    }

    static func blockLimits() -> [UInt8] {
        var d = [UInt8](repeating: 0, count: 60)
        d[0] = 0x00                                                   // WSNZ clear: WRITE SAME of 0 blocks runs to the end
        d[1] = UInt8(SCSILogicalUnit.compareAndWriteBlocksMax)
        d.replaceSubrange(2..<4, with: be16(8))                       // optimal granularity: 4 KiB
        let maxBlocks = UInt32(ISCSILimits.transferBytesMax / SCSILogicalUnit.blockSize)
        d.replaceSubrange(4..<8, with: be32(maxBlocks))
        d.replaceSubrange(8..<12, with: be32(UInt32((1 << 20) / SCSILogicalUnit.blockSize)))
        d.replaceSubrange(16..<20, with: be32(SCSILogicalUnit.unmapBlocksMax))
        d.replaceSubrange(20..<24, with: be32(SCSILogicalUnit.unmapDescriptorsMax))
        d.replaceSubrange(24..<28, with: be32(8))                     // optimal unmap granularity: 4 KiB
        d.replaceSubrange(28..<32, with: be32(0x8000_0000))           // UGAVALID, alignment 0
        d.replaceSubrange(32..<40, with: be64(SCSILogicalUnit.writeSameBlocksMax))
        return d
    }
}

enum SCSIModePages {
    /// Page code, then its current values. Nothing is changeable.
    static func pages(_ lu: SCSILogicalUnit, pageControl: UInt8) -> [(UInt8, [UInt8])] {
        let changeable = pageControl == 1
        var caching = [UInt8](repeating: 0, count: 20)
        caching[0] = 0x08; caching[1] = 0x12
        var control = [UInt8](repeating: 0, count: 12)
        control[0] = 0x0a; control[1] = 0x0a
        var exceptions = [UInt8](repeating: 0, count: 12)
        exceptions[0] = 0x1c; exceptions[1] = 0x0a
        if !changeable {
            control[3] = 0x10                                          // unrestricted reordering
            control[8] = 0xff; control[9] = 0xff                       // busy timeout: unlimited
        }
        return [(0x08, caching), (0x0a, control), (0x1c, exceptions)]
    }

    static func sense(_ lu: SCSILogicalUnit, tenByte: Bool, disableBlockDescriptors: Bool, pageControl: UInt8,
                      page: UInt8, subpage: UInt8) throws -> [UInt8] {
        if pageControl == 3 { throw SCSISense.savingParametersNotSupported }
        guard subpage == 0 || (subpage == 0xff && page == 0x3f) else { throw SCSISense.invalidFieldInCDB }
        let all = pages(lu, pageControl: pageControl)
        let body: [UInt8]
        if page == 0x3f {
            body = all.flatMap(\.1)
        } else if let p = all.first(where: { $0.0 == page }) {
            body = p.1
        } else {
            throw SCSISense.invalidFieldInCDB
        }
        let deviceSpecific: UInt8 = (lu.readOnly ? 0x80 : 0) | 0x10          // WP, DPOFUA
        var descriptor: [UInt8] = []
        if !disableBlockDescriptors {
            let blocks = lu.blockCount > 0xff_ffff ? 0xff_ffff : UInt32(lu.blockCount)
            descriptor = [0, UInt8(blocks >> 16), UInt8((blocks >> 8) & 0xff), UInt8(blocks & 0xff), 0]
                + Array(be32(UInt32(SCSILogicalUnit.blockSize)).suffix(3))
        }
        if tenByte {
            let length = 6 + descriptor.count + body.count
            return be16(UInt16(length)) + [0, deviceSpecific, 0, 0] + be16(UInt16(descriptor.count)) + descriptor + body
        }
        let length = 3 + descriptor.count + body.count
        return [UInt8(min(length, 255)), 0, deviceSpecific, UInt8(descriptor.count)] + descriptor + body
    }

    /// Accepts a parameter list that changes nothing; anything else is an invalid field.
    static func select(_ lu: SCSILogicalUnit, tenByte: Bool, _ data: ByteBuffer) throws {
        let bytes = data.getBytes(at: data.readerIndex, length: data.readableBytes) ?? []
        guard !bytes.isEmpty else { return }
        let header = tenByte ? 8 : 4
        guard bytes.count >= header else { throw SCSISense.parameterListLengthError }
        let descriptorLength = tenByte ? Int(bytes[6]) << 8 | Int(bytes[7]) : Int(bytes[3])
        var i = header + descriptorLength
        let current = pages(lu, pageControl: 0)
        while i < bytes.count {
            guard i + 2 <= bytes.count else { throw SCSISense.parameterListLengthError }
            let code = bytes[i] & 0x3f
            let length = Int(bytes[i + 1]) + 2
            guard i + length <= bytes.count, let mine = current.first(where: { $0.0 == code }), mine.1.count == length else {
                throw SCSISense.invalidFieldInParameterList
            }
            // Only values equal to the current ones are accepted (nothing is changeable).
            guard Array(bytes[(i + 2)..<(i + length)]) == Array(mine.1[2...]) else { throw SCSISense.invalidFieldInParameterList }
            i += length
        }
    }
}

enum SCSISupportedOpcodes {
    /// (opcode, service action or nil, CDB length).
    static let commands: [(UInt8, UInt16?, Int)] = {
        let o = SCSIOpcode.self
        return [
            (o.testUnitReady, nil, 6), (o.requestSense, nil, 6), (o.read6, nil, 6), (o.write6, nil, 6),
            (o.inquiry, nil, 6), (o.modeSelect6, nil, 6), (o.reserve6, nil, 6), (o.release6, nil, 6),
            (o.modeSense6, nil, 6), (o.startStopUnit, nil, 6), (o.preventAllow, nil, 6),
            (o.readCapacity10, nil, 10), (o.read10, nil, 10), (o.write10, nil, 10), (o.writeVerify10, nil, 10),
            (o.verify10, nil, 10), (o.prefetch10, nil, 10), (o.synchronizeCache10, nil, 10), (o.writeSame10, nil, 10),
            (o.unmap, nil, 10), (o.modeSelect10, nil, 10), (o.modeSense10, nil, 10),
            (o.persistentReserveIn, 0, 10), (o.persistentReserveIn, 1, 10), (o.persistentReserveIn, 2, 10), (o.persistentReserveIn, 3, 10),
            (o.persistentReserveOut, 0, 10), (o.persistentReserveOut, 1, 10), (o.persistentReserveOut, 2, 10),
            (o.persistentReserveOut, 3, 10), (o.persistentReserveOut, 4, 10), (o.persistentReserveOut, 5, 10),
            (o.persistentReserveOut, 6, 10),
            (o.read16, nil, 16), (o.compareAndWrite, nil, 16), (o.write16, nil, 16), (o.orWrite, nil, 16), (o.writeVerify16, nil, 16),
            (o.verify16, nil, 16), (o.prefetch16, nil, 16), (o.synchronizeCache16, nil, 16), (o.writeSame16, nil, 16),
            (o.serviceActionIn16, UInt16(o.saReadCapacity16), 16), (o.serviceActionIn16, UInt16(o.saGetLBAStatus), 16),
            (o.reportLUNs, nil, 12), (o.maintenanceIn, UInt16(o.saReportSupportedOpcodes), 12),
            (o.read12, nil, 12), (o.write12, nil, 12), (o.writeVerify12, nil, 12), (o.verify12, nil, 12),
        ]
    }()

    static let timeoutDescriptor: [UInt8] = [0x00, 0x0a, 0, 0] + be32(0) + be32(30)

    static func report(timeouts: Bool, options: UInt8, opcode: UInt8, serviceAction: UInt16) throws -> [UInt8] {
        switch options {
        case 0:
            var list: [UInt8] = []
            for (op, sa, length) in commands {
                list += [op, 0] + be16(sa ?? 0) + [0, (sa != nil ? 0x01 : 0) | (timeouts ? 0x02 : 0)] + be16(UInt16(length))
                if timeouts { list += timeoutDescriptor }
            }
            return be32(UInt32(list.count)) + list
        case 1, 2, 3:
            let hasServiceActions = commands.contains { $0.0 == opcode && $0.1 != nil }
            if options == 1 && hasServiceActions { throw SCSISense.invalidFieldInCDB }
            if options == 2 && !hasServiceActions && commands.contains(where: { $0.0 == opcode }) { throw SCSISense.invalidFieldInCDB }
            let match = commands.first { $0.0 == opcode && (options == 1 || $0.1 == serviceAction || (options == 3 && $0.1 == nil)) }
            guard let (op, sa, length) = match else { return [0, 0x01, 0, 0] }   // not supported
            var usage = [UInt8](repeating: 0xff, count: length)
            usage[0] = op
            if let sa { usage[1] = UInt8(sa & 0x1f) }
            usage[length - 1] = 0x07
            return [0, 0x03 | (timeouts ? 0x80 : 0)] + be16(UInt16(length)) + usage + (timeouts ? timeoutDescriptor : [])
        default:
            throw SCSISense.invalidFieldInCDB
        }
    }
}
