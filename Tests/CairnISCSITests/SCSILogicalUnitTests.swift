import CairnClient
import CairnCore
@testable import CairnISCSI
import CairnNBD
import NIOCore
import XCTest

/// An in-memory device: enough for the SCSI layer's own logic.
final class MemoryDevice: NBDDevice, @unchecked Sendable {
    let bytes: Locked<[UInt8]>
    init(size: Int) { bytes = Locked([UInt8](repeating: 0, count: size)) }
    func read(offset: UInt64, length: Int) async throws -> ByteBuffer {
        ByteBuffer(bytes: bytes.withLock { Array($0[Int(offset)..<Int(offset) + length]) })
    }
    func write(offset: UInt64, data: ByteBuffer, fua: Bool) async throws {
        let d = data.getBytes(at: data.readerIndex, length: data.readableBytes)!
        bytes.withLock { $0.replaceSubrange(Int(offset)..<Int(offset) + d.count, with: d) }
    }
    func flush() async throws {}
    func trim(offset: UInt64, length: Int) async throws {
        bytes.withLock { $0.replaceSubrange(Int(offset)..<Int(offset) + length, with: [UInt8](repeating: 0, count: length)) }
    }
    func writeZeroes(offset: UInt64, length: Int, mayTrim: Bool) async throws { try await trim(offset: offset, length: length) }
    func blockStatus(offset: UInt64, length: Int) async throws -> [Extent] {
        [Extent(offset: offset, length: UInt64(length), hole: false)]
    }
}

final class SCSILogicalUnitTests: XCTestCase {
    let a = ITNexus(initiator: "iqn.test:a", isid: 1)
    let b = ITNexus(initiator: "iqn.test:b", isid: 2)

    func unit(readOnly: Bool = false) -> SCSILogicalUnit {
        SCSILogicalUnit(name: "v", targetName: iscsiTargetPrefix + "v", device: MemoryDevice(size: 1 << 20), sizeBytes: 1 << 20,
                        readOnly: readOnly, reservations: SCSIReservations())
    }

    func bytes(_ r: SCSIResult) -> [UInt8] { r.data.getBytes(at: r.data.readerIndex, length: r.data.readableBytes) ?? [] }

    func testWriteThenReadAndRangeChecks() async {
        let lu = unit()
        let data = ByteBuffer(repeating: 0x5a, count: 1024)
        let w = await lu.execute([0x2a, 0, 0, 0, 0, 2, 0, 0, 2, 0], dataOut: data, nexus: a)
        XCTAssertEqual(w.status, .good)
        let r = await lu.execute([0x28, 0, 0, 0, 0, 2, 0, 0, 2, 0], dataOut: ByteBuffer(), nexus: a)
        XCTAssertEqual(bytes(r), [UInt8](repeating: 0x5a, count: 1024))
        let beyond = await lu.execute([0x28, 0, 0, 0, 0x07, 0xff, 0, 0, 2, 0], dataOut: ByteBuffer(), nexus: a)
        XCTAssertEqual(beyond.sense, .lbaOutOfRange)
    }

    func testReadCapacity() async {
        let r10 = await unit().execute([0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], dataOut: ByteBuffer(), nexus: a)
        XCTAssertEqual(bytes(r10), [0, 0, 0x07, 0xff, 0, 0, 2, 0])
        var cdb = [UInt8](repeating: 0, count: 16)
        cdb[0] = 0x9e; cdb[1] = 0x10; cdb[13] = 32
        let r16 = await unit().execute(cdb, dataOut: ByteBuffer(), nexus: a)
        XCTAssertEqual(bytes(r16).count, 32)
        XCTAssertEqual(bytes(r16)[13], 3, "4 KiB physical blocks")
        XCTAssertEqual(bytes(r16)[14] & 0x80, 0x80, "LBPME")
    }

    func testWriteProtected() async {
        let r = await unit(readOnly: true).execute([0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0], dataOut: ByteBuffer(repeating: 0, count: 512), nexus: a)
        XCTAssertEqual(r.sense, .writeProtected)
    }

    func testCompareAndWrite() async {
        let lu = unit()
        var cdb = [UInt8](repeating: 0, count: 16)
        cdb[0] = 0x89; cdb[13] = 1
        var good = ByteBuffer(repeating: 0, count: 512)
        good.writeRepeatingByte(7, count: 512)
        let r = await lu.execute(cdb, dataOut: good, nexus: a)
        XCTAssertEqual(r.status, .good)
        var bad = ByteBuffer(repeating: 7, count: 100)
        bad.writeRepeatingByte(8, count: 924)
        let m = await lu.execute(cdb, dataOut: bad, nexus: a)
        XCTAssertEqual(m.sense, .miscompare(at: 100))
    }

    func testInquiryPages() async {
        let lu = unit()
        let std = bytes(await lu.execute([0x12, 0, 0, 0, 96, 0], dataOut: ByteBuffer(), nexus: a))
        XCTAssertEqual(std[0], 0)
        XCTAssertEqual(String(decoding: std[8..<13], as: UTF8.self), "CAIRN")
        let pages = bytes(await lu.execute([0x12, 1, 0, 0, 255, 0], dataOut: ByteBuffer(), nexus: a))
        XCTAssertEqual(Array(pages[4...]), [0x00, 0x80, 0x83, 0xb0, 0xb1, 0xb2])
        let bl = bytes(await lu.execute([0x12, 1, 0xb0, 0, 255, 0], dataOut: ByteBuffer(), nexus: a))
        XCTAssertEqual(bl.count, 64)
        let unknown = await lu.execute([0x12, 1, 0x99, 0, 255, 0], dataOut: ByteBuffer(), nexus: a)
        XCTAssertEqual(unknown.sense, .invalidFieldInCDB)
    }

    func persistentOut(_ sa: UInt8, type: UInt8 = 0, key: UInt64, saKey: UInt64) -> ([UInt8], ByteBuffer) {
        var p = ByteBuffer()
        p.writeInteger(key); p.writeInteger(saKey); p.writeRepeatingByte(0, count: 8)
        return ([0x5f, sa, type, 0, 0, 0, 0, 0, 24, 0], p)
    }

    func testPersistentReservationWriteExclusive() async {
        let lu = unit()
        for (nexus, key) in [(a, UInt64(0xa)), (b, UInt64(0xb))] {
            let (cdb, data) = persistentOut(0, key: 0, saKey: key)
            let r = await lu.execute(cdb, dataOut: data, nexus: nexus)
            XCTAssertEqual(r.status, .good)
        }
        let (reserve, rdata) = persistentOut(1, type: 1, key: 0xa, saKey: 0)
        let reserved = await lu.execute(reserve, dataOut: rdata, nexus: a)
        XCTAssertEqual(reserved.status, .good)
        let write: [UInt8] = [0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0]
        let blocked = await lu.execute(write, dataOut: ByteBuffer(repeating: 1, count: 512), nexus: b)
        XCTAssertEqual(blocked.status, .reservationConflict)
        let read = await lu.execute([0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0], dataOut: ByteBuffer(), nexus: b)
        XCTAssertEqual(read.status, .good, "write exclusive lets others read")
        let keys = bytes(await lu.execute([0x5e, 0, 0, 0, 0, 0, 0, 1, 0, 0], dataOut: ByteBuffer(), nexus: b))
        XCTAssertEqual(Array(keys[4..<8]), [0, 0, 0, 16])
        let (wrongKey, wdata) = persistentOut(1, type: 1, key: 0xc, saKey: 0)
        let conflict = await lu.execute(wrongKey, dataOut: wdata, nexus: b)
        XCTAssertEqual(conflict.status, .reservationConflict)
    }

    func testReserve6BlocksOtherNexusUntilReleased() async {
        let lu = unit()
        let read: [UInt8] = [0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0]
        let reserved = await lu.execute([0x16, 0, 0, 0, 0, 0], dataOut: ByteBuffer(), nexus: a)
        XCTAssertEqual(reserved.status, .good)
        let blocked = await lu.execute(read, dataOut: ByteBuffer(), nexus: b)
        XCTAssertEqual(blocked.status, .reservationConflict)
        let inquiry = await lu.execute([0x12, 0, 0, 0, 36, 0], dataOut: ByteBuffer(), nexus: b)
        XCTAssertEqual(inquiry.status, .good, "INQUIRY never conflicts")
        lu.reservations.nexusLost(a)
        let after = await lu.execute(read, dataOut: ByteBuffer(), nexus: b)
        XCTAssertEqual(after.status, .good)
    }

    func testModeSenseAllPagesAndSavedValues() async {
        let lu = unit()
        let all = bytes(await lu.execute([0x1a, 0, 0x3f, 0, 255, 0], dataOut: ByteBuffer(), nexus: a))
        XCTAssertEqual(Int(all[0]) + 1, all.count)
        XCTAssertEqual(all[3], 8, "block descriptor")
        XCTAssertEqual(all[2] & 0x10, 0x10, "DPOFUA")
        let saved = await lu.execute([0x1a, 0, 0xff, 0, 255, 0], dataOut: ByteBuffer(), nexus: a)
        XCTAssertEqual(saved.sense, .savingParametersNotSupported)
    }
}
