@testable import CairnISCSI
import XCTest

final class SCSICommandTests: XCTestCase {
    func testRead10AndWrite16Fields() throws {
        XCTAssertEqual(try SCSICommand.parse([0x28, 0, 0, 0, 0x10, 0, 0, 0, 8, 0]), .read(lba: 0x1000, blocks: 8))
        var w16 = [UInt8](repeating: 0, count: 16)
        w16[0] = 0x8a; w16[1] = 0x08; w16[9] = 5; w16[13] = 2
        XCTAssertEqual(try SCSICommand.parse(w16), .write(lba: 5, blocks: 2, fua: true))
        XCTAssertEqual(try SCSICommand.parse([0x08, 0, 0, 1, 0, 0]), .read(lba: 1, blocks: 256), "READ(6) length 0 is 256")
    }

    func testRejections() {
        func sense(_ cdb: [UInt8]) -> SCSISense? {
            do { _ = try SCSICommand.parse(cdb); return nil } catch { return error as? SCSISense }
        }
        XCTAssertEqual(sense([0xff, 0, 0, 0, 0, 0]), .invalidOpcode)
        XCTAssertEqual(sense([0x28, 0x20, 0, 0, 0, 0, 0, 0, 1, 0]), .invalidFieldInCDB, "RDPROTECT")
        XCTAssertEqual(sense([0x12, 0, 0x80, 0, 36, 0]), .invalidFieldInCDB, "page code without EVPD")
        XCTAssertEqual(sense([0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0]), .invalidFieldInCDB, "REPORT LUNS below 16 bytes")
        XCTAssertEqual(sense([0x2f, 0x04, 0, 0, 0, 0, 0, 0, 1, 0]), .invalidFieldInCDB, "VERIFY BYTCHK=2")
        XCTAssertEqual(sense([0x28, 0]), .invalidFieldInCDB, "short CDB")
    }

    func testDataOutLengths() throws {
        XCTAssertEqual(try SCSICommand.parse([0x2a, 0, 0, 0, 0, 0, 0, 0, 3, 0]).dataOutLength(blockSize: 512), 1536)
        var caw = [UInt8](repeating: 0, count: 16)
        caw[0] = 0x89; caw[13] = 2
        XCTAssertEqual(try SCSICommand.parse(caw).dataOutLength(blockSize: 512), 2048)
        XCTAssertEqual(try SCSICommand.parse([0x2f, 0x06, 0, 0, 0, 0, 0, 0, 4, 0]).dataOutLength(blockSize: 512), 512, "BYTCHK=3")
        XCTAssertEqual(try SCSICommand.parse([0x28, 0, 0, 0, 0, 0, 0, 0, 4, 0]).dataOutLength(blockSize: 512), 0)
    }

    func testFixedSenseLayout() {
        let s = SCSISense.miscompare(at: 0x0102).fixedFormat
        XCTAssertEqual(s.count, 18)
        XCTAssertEqual(s[0], 0xf0, "response code 70h with VALID")
        XCTAssertEqual(s[2], 0x0e)
        XCTAssertEqual(Array(s[3..<7]), [0, 0, 1, 2])
        XCTAssertEqual(s[7], 10)
        XCTAssertEqual(s[12], 0x1d)
        XCTAssertEqual(SCSISense.lbaOutOfRange.fixedFormat[0], 0x70)
    }
}
