// One logical unit: a volume as an SBC-3 direct-access block device with 512-byte logical
// blocks (4 KiB physical: the volume's block unit). Commands run on the shared NBDDevice,
// so every acknowledged write is durable on every replica of its chunk: the write cache is
// off (WCE=0), FUA and SYNCHRONIZE CACHE have nothing left to wait for.
//
// Client input is validated into sense data; device failures become MEDIUM ERROR. COMPARE
// AND WRITE is atomic against other COMPARE AND WRITEs of this gateway (one async lock).
import CairnClient
import CairnCore
import CairnNBD
import NIOCore

public final class SCSILogicalUnit: Sendable {
    public static let blockSize = 512
    /// log2(physical / logical): 4 KiB physical blocks.
    static let physicalExponent: UInt8 = 3
    static let compareAndWriteBlocksMax = 128
    static let unmapBlocksMax: UInt32 = 1 << 20
    static let unmapDescriptorsMax: UInt32 = 256
    static let writeSameBlocksMax: UInt64 = 1 << 21
    /// GET LBA STATUS looks at most this far per command.
    static let lbaStatusSpanMax = 4 << 20

    public let name: String
    public let targetName: String
    let device: NBDDevice
    let sizeBytes: UInt64
    let readOnly: Bool
    public let reservations: SCSIReservations
    private let compareAndWriteLock = AsyncMutex()

    public init(name: String, targetName: String, device: NBDDevice, sizeBytes: UInt64, readOnly: Bool, reservations: SCSIReservations) {
        self.name = name; self.targetName = targetName; self.device = device; self.sizeBytes = sizeBytes
        self.readOnly = readOnly; self.reservations = reservations
    }

    var blockCount: UInt64 { sizeBytes / UInt64(Self.blockSize) }

    /// Runs one command. Never throws: every failure is a status with sense data.
    public func execute(_ cdb: [UInt8], dataOut: ByteBuffer, nexus: ITNexus) async -> SCSIResult {
        let command: SCSICommand
        do { command = try SCSICommand.parse(cdb) } catch let s as SCSISense { return .check(s) } catch { return .check(.invalidOpcode) }
        if reservations.conflicts(nexus, command.access, reserve6Exempt: command.allowedUnderReserve6) { return .reservationConflict }
        do {
            return try await run(command, dataOut: dataOut, nexus: nexus)
        } catch let s as SCSISense {
            return .check(s)
        } catch {
            return .check(command.access == .write ? .writeError : .unrecoveredReadError)
        }
    }

    private func run(_ command: SCSICommand, dataOut: ByteBuffer, nexus: ITNexus) async throws -> SCSIResult {
        let bs = Self.blockSize
        switch command {
        case .testUnitReady, .startStopUnit, .preventAllow:
            return .good()
        case .requestSense(let descriptor, let allocation):
            let bytes: [UInt8] = descriptor ? [0x72, 0, 0, 0, 0, 0, 0, 0] : SCSISense(key: 0, asc: 0, ascq: 0).fixedFormat
            return .good(bytes, allocationLength: allocation)
        case .inquiry(let evpd, let page, let allocation):
            return .good(try SCSIInquiry.data(self, evpd: evpd, page: page), allocationLength: allocation)
        case .readCapacity10:
            let last = blockCount - 1
            return .good(be32(last > 0xffff_fffe ? 0xffff_ffff : UInt32(last)) + be32(UInt32(bs)), allocationLength: 8)
        case .readCapacity16(let allocation):
            var d = be64(blockCount - 1) + be32(UInt32(bs))
            d += [0, Self.physicalExponent, 0x80 | 0x40, 0]    // LBPME, LBPRZ: unmapped blocks read as zeroes
            d += [UInt8](repeating: 0, count: 16)
            return .good(d, allocationLength: allocation)
        case .read(let lba, let blocks):
            try checkRange(lba, blocks)
            guard blocks > 0 else { return .good() }
            return .good(try await device.read(offset: lba * UInt64(bs), length: blocks * bs))
        case .write(let lba, let blocks, let fua):
            return try await write(lba: lba, blocks: blocks, dataOut, fua: fua)
        case .writeVerify(let lba, let blocks):
            return try await write(lba: lba, blocks: blocks, dataOut, fua: true)
        case .verify(let lba, let blocks, let byteCheck):
            try checkRange(lba, blocks)
            guard blocks > 0 else { return .good() }
            let medium = try await device.read(offset: lba * UInt64(bs), length: blocks * bs)
            if byteCheck == 0 { return .good() }
            if byteCheck == 3 && dataOut.readableBytes < bs { throw SCSISense.invalidFieldInInformationUnit }
            let expected = byteCheck == 1 ? dataOut : Self.repeated(dataOut.getSlice(at: dataOut.readerIndex, length: bs)!, blocks: blocks)
            if let at = Self.firstDifference(medium, expected) { return .check(.miscompare(at: at)) }
            return .good()
        case .synchronizeCache(let lba, let blocks), .prefetch(let lba, let blocks):
            try checkRange(lba, blocks)
            if case .synchronizeCache = command { try await device.flush() }
            return .good()
        case .writeSame(let lba, let blocks, let unmap, let noDataOut):
            return try await writeSame(lba: lba, blocks: blocks, unmap: unmap, block: noDataOut ? nil : dataOut)
        case .unmap:
            return try await unmap(dataOut)
        case .compareAndWrite(let lba, let blocks):
            return try await compareAndWrite(lba: lba, blocks: blocks, dataOut: dataOut)
        case .orWrite(let lba, let blocks):
            return try await orWrite(lba: lba, blocks: blocks, dataOut: dataOut)
        case .getLBAStatus(let lba, let allocation):
            return .good(try await lbaStatus(lba), allocationLength: allocation)
        case .modeSense(let ten, let dbd, let pc, let page, let subpage, let allocation):
            return .good(try SCSIModePages.sense(self, tenByte: ten, disableBlockDescriptors: dbd, pageControl: pc,
                                                 page: page, subpage: subpage), allocationLength: allocation)
        case .modeSelect(let ten, _):
            try SCSIModePages.select(self, tenByte: ten, dataOut)
            return .good()
        case .reportLUNs(let allocation):
            return .good(be32(8) + be32(0) + be64(0), allocationLength: allocation)
        case .reportSupportedOpcodes(let timeouts, let options, let opcode, let sa, let allocation):
            return .good(try SCSISupportedOpcodes.report(timeouts: timeouts, options: options, opcode: opcode, serviceAction: sa),
                         allocationLength: allocation)
        case .persistentReserveIn(let sa, let allocation):
            return .good(try persistentReserveIn(sa), allocationLength: allocation)
        case .persistentReserveOut(let sa, let scope, let type, let length):
            return try persistentReserveOut(sa, scope: scope, type: type, parameterLength: length, dataOut, nexus)
        case .reserve6:
            return reservations.reserve6(nexus) ? .good() : .reservationConflict
        case .release6:
            reservations.release6(nexus)
            return .good()
        }
    }

    // MARK: - Checks

    private func checkRange(_ lba: UInt64, _ blocks: Int) throws {
        let (end, overflow) = lba.addingReportingOverflow(UInt64(blocks))
        guard !overflow, end <= blockCount, lba <= blockCount else { throw SCSISense.lbaOutOfRange }
        guard blocks * Self.blockSize <= ISCSILimits.transferBytesMax else { throw SCSISense.invalidFieldInCDB }
    }

    private func checkWritable() throws {
        if readOnly { throw SCSISense.writeProtected }
    }

    // MARK: - Commands with more to them

    /// Writes the whole blocks of the data sent: fewer than the CDB says when the initiator's
    /// expected length was shorter (the residual tells it so); a partial block is refused.
    private func write(lba: UInt64, blocks: Int, _ dataOut: ByteBuffer, fua: Bool) async throws -> SCSIResult {
        try checkWritable(); try checkRange(lba, blocks)
        let bs = Self.blockSize
        let usable = min(blocks * bs, dataOut.readableBytes)
        guard usable % bs == 0 else { throw SCSISense.invalidFieldInInformationUnit }
        guard usable > 0 else { return .good() }
        try await device.write(offset: lba * UInt64(bs), data: dataOut.getSlice(at: dataOut.readerIndex, length: usable)!, fua: fua)
        return .good()
    }

    private func writeSame(lba: UInt64, blocks: Int, unmap: Bool, block: ByteBuffer?) async throws -> SCSIResult {
        try checkWritable()
        // WSNZ is clear: zero blocks means from the LBA to the end of the volume.
        guard lba <= blockCount else { throw SCSISense.lbaOutOfRange }
        let blocks = blocks == 0 ? Int(blockCount - lba) : blocks
        guard UInt64(blocks) <= Self.writeSameBlocksMax else { throw SCSISense.invalidFieldInCDB }
        guard blocks > 0 else { return .good() }
        let (end, overflow) = lba.addingReportingOverflow(UInt64(blocks))
        guard !overflow, end <= blockCount else { throw SCSISense.lbaOutOfRange }
        let bs = Self.blockSize
        let offset = lba * UInt64(bs)
        if let block, block.readableBytes < bs { throw SCSISense.invalidFieldInCDB }
        let pattern = block.map { $0.getSlice(at: $0.readerIndex, length: bs)! }
        let zero = pattern.map(Self.isAllZero) ?? true
        if zero {
            try await device.writeZeroes(offset: offset, length: blocks * bs, mayTrim: unmap)
            return .good()
        }
        // A non-zero pattern is written out, at most 1 MiB per request.
        let perWrite = max(1, (1 << 20) / bs)
        var done = 0
        while done < blocks {
            let n = min(perWrite, blocks - done)
            try await device.write(offset: offset + UInt64(done * bs), data: Self.repeated(pattern!, blocks: n), fua: false)
            done += n
        }
        return .good()
    }

    private func unmap(_ data: ByteBuffer) async throws -> SCSIResult {
        try checkWritable()
        let bytes = data.getBytes(at: data.readerIndex, length: data.readableBytes) ?? []
        guard !bytes.isEmpty else { return .good() }
        guard bytes.count >= 8 else { throw SCSISense.parameterListLengthError }
        let descriptorBytes = Int(bytes[2]) << 8 | Int(bytes[3])
        guard descriptorBytes % 16 == 0, 8 + descriptorBytes <= bytes.count else { throw SCSISense.parameterListLengthError }
        let count = descriptorBytes / 16
        guard count <= Int(Self.unmapDescriptorsMax) else { throw SCSISense.invalidFieldInParameterList }
        var ranges: [(UInt64, Int)] = []
        for i in 0..<count {
            let d = Array(bytes[(8 + 16 * i)..<(24 + 16 * i)])
            let lba = d[0..<8].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
            let n = d[8..<12].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
            guard n <= Self.unmapBlocksMax else { throw SCSISense.invalidFieldInParameterList }
            let (end, overflow) = lba.addingReportingOverflow(UInt64(n))
            guard !overflow, end <= blockCount else { throw SCSISense.lbaOutOfRange }
            ranges.append((lba, Int(n)))
        }
        for (lba, n) in ranges where n > 0 {
            try await device.trim(offset: lba * UInt64(Self.blockSize), length: n * Self.blockSize)
        }
        return .good()
    }

    private func compareAndWrite(lba: UInt64, blocks: Int, dataOut: ByteBuffer) async throws -> SCSIResult {
        try checkWritable()
        guard blocks <= Self.compareAndWriteBlocksMax else { throw SCSISense.invalidFieldInCDB }
        try checkRange(lba, blocks)
        guard blocks > 0 else { return .good() }
        let length = blocks * Self.blockSize
        let offset = lba * UInt64(Self.blockSize)
        guard dataOut.readableBytes >= 2 * length else { throw SCSISense.invalidFieldInCDB }
        let expected = dataOut.getSlice(at: dataOut.readerIndex, length: length)!
        let replacement = dataOut.getSlice(at: dataOut.readerIndex + length, length: length)!
        await compareAndWriteLock.lock()
        defer { compareAndWriteLock.unlock() }
        let current = try await device.read(offset: offset, length: length)
        if let at = Self.firstDifference(current, expected) { return .check(.miscompare(at: at)) }
        try await device.write(offset: offset, data: replacement, fua: true)
        return .good()
    }

    /// ORWRITE(16): each block becomes itself OR the data sent; atomic like COMPARE AND WRITE.
    private func orWrite(lba: UInt64, blocks: Int, dataOut: ByteBuffer) async throws -> SCSIResult {
        try checkWritable()
        try checkRange(lba, blocks)
        guard blocks > 0 else { return .good() }
        let length = blocks * Self.blockSize
        let offset = lba * UInt64(Self.blockSize)
        guard dataOut.readableBytes >= length else { throw SCSISense.invalidFieldInInformationUnit }
        await compareAndWriteLock.lock()
        defer { compareAndWriteLock.unlock() }
        var current = try await device.read(offset: offset, length: length)
        let mask = dataOut.getBytes(at: dataOut.readerIndex, length: length)!
        current.withUnsafeMutableReadableBytes { raw in
            for i in 0..<length { raw[i] |= mask[i] }
        }
        try await device.write(offset: offset, data: current, fua: true)
        return .good()
    }

    private func lbaStatus(_ lba: UInt64) async throws -> [UInt8] {
        guard lba < blockCount else { throw SCSISense.lbaOutOfRange }
        let offset = lba * UInt64(Self.blockSize)
        let length = Int(min(UInt64(Self.lbaStatusSpanMax), sizeBytes - offset))
        let extents = try await device.blockStatus(offset: offset, length: length)
        var descriptors: [UInt8] = []
        var pos = offset
        for e in extents where descriptors.count < 64 * 16 {
            let start = max(e.offset, pos)
            let end = min(e.offset + e.length, offset + UInt64(length))
            guard end > start else { continue }
            // Merge with the previous descriptor when the state is the same.
            let state: UInt8 = e.hole ? 1 : 0
            let startLBA = start / UInt64(Self.blockSize)
            var blocks = UInt32(min((end - start) / UInt64(Self.blockSize), UInt64(UInt32.max)))
            if descriptors.count >= 16, descriptors[descriptors.count - 4] == state {
                let i = descriptors.count - 8
                let prev = descriptors[i..<i + 4].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
                blocks = prev &+ blocks
                descriptors.replaceSubrange(i..<i + 4, with: be32(blocks))
            } else {
                descriptors += be64(startLBA) + be32(blocks) + [state, 0, 0, 0]
            }
            pos = end
        }
        if descriptors.isEmpty { descriptors = be64(lba) + be32(1) + [0, 0, 0, 0] }
        return be32(UInt32(descriptors.count + 4)) + [0, 0, 0, 0] + descriptors
    }

    // MARK: - Persistent reservations

    private func persistentReserveIn(_ sa: UInt8) throws -> [UInt8] {
        switch sa {
        case 0: return reservations.readKeys()
        case 1: return reservations.readReservation()
        case 3: return reservations.readFullStatus()
        case 2:
            // Length 8; TMV with ALLOW COMMANDS 0; types WE, EA, WERO, EARO, WEAR, EAAR.
            return [0, 8, 0x00, 0x80, 0x80 | 0x40 | 0x20 | 0x08 | 0x02, 0x01, 0, 0]
        default: throw SCSISense.invalidFieldInCDB
        }
    }

    private func persistentReserveOut(_ sa: UInt8, scope: UInt8, type: UInt8, parameterLength: Int,
                                      _ data: ByteBuffer, _ nexus: ITNexus) throws -> SCSIResult {
        guard sa <= 6 else { throw SCSISense.invalidFieldInCDB }
        guard parameterLength == 24, data.readableBytes >= 24 else { throw SCSISense.parameterListLengthError }
        let p = data.getBytes(at: data.readerIndex, length: 24)!
        let key = p[0..<8].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        let saKey = p[8..<16].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        // SPEC_I_PT and ALL_TG_PT are not supported; APTPL cannot be honoured.
        if p[20] & 0x0d != 0 { throw SCSISense.invalidFieldInParameterList }
        func prType() throws -> PRType {
            guard scope == 0, let t = PRType(rawValue: type) else { throw SCSISense.invalidFieldInCDB }
            return t
        }
        let r: SCSIReservations.OutResult
        switch sa {
        case 0: r = reservations.register(nexus, key: key, newKey: saKey, ignoreExisting: false)
        case 6: r = reservations.register(nexus, key: key, newKey: saKey, ignoreExisting: true)
        case 1: r = reservations.reserve(nexus, key: key, type: try prType())
        case 2: r = reservations.release(nexus, key: key, type: try prType())
        case 3: r = reservations.clear(nexus, key: key)
        default: r = reservations.preempt(nexus, key: key, victimKey: saKey, type: try prType())
        }
        switch r {
        case .good: return .good()
        case .conflict: return .reservationConflict
        case .sense(let s): return .check(s)
        }
    }

    // MARK: - Bytes

    static func isAllZero(_ b: ByteBuffer) -> Bool {
        b.withUnsafeReadableBytes { raw in raw.allSatisfy { $0 == 0 } }
    }

    static func repeated(_ block: ByteBuffer, blocks: Int) -> ByteBuffer {
        var out = ByteBuffer()
        out.reserveCapacity(block.readableBytes * blocks)
        for _ in 0..<blocks { var b = block; out.writeBuffer(&b) }
        return out
    }

    /// Offset of the first differing byte, nil if equal over the shorter length.
    static func firstDifference(_ a: ByteBuffer, _ b: ByteBuffer) -> Int? {
        let n = min(a.readableBytes, b.readableBytes)
        return a.withUnsafeReadableBytes { x in
            b.withUnsafeReadableBytes { y in (0..<n).first { x[$0] != y[$0] } }
        }
    }
}

/// A lock that suspends instead of blocking a thread.
final class AsyncMutex: @unchecked Sendable {
    private let state = Locked<(held: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))

    func lock() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let acquired = state.withLock { s -> Bool in
                if !s.held { s.held = true; return true }
                s.waiters.append(c)
                return false
            }
            if acquired { c.resume() }
        }
    }

    func unlock() {
        let next = state.withLock { s -> CheckedContinuation<Void, Never>? in
            if s.waiters.isEmpty { s.held = false; return nil }
            return s.waiters.removeFirst()
        }
        next?.resume()
    }
}
