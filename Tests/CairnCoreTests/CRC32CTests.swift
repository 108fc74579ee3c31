import CairnCore
import XCTest

final class CRC32CTests: XCTestCase {
    func testKnownVectors() {
        XCTAssertEqual(CRC32C.checksum(Array("123456789".utf8)), 0xE306_9283)
        XCTAssertEqual(CRC32C.checksum([]), 0)
        // RFC 3720 appendix B.4.
        XCTAssertEqual(CRC32C.checksum([UInt8](repeating: 0, count: 32)), 0x8A91_36AA)
        XCTAssertEqual(CRC32C.checksum([UInt8](repeating: 0xFF, count: 32)), 0x62A8_AB43)
        XCTAssertEqual(CRC32C.checksum((0..<32).map { UInt8($0) }), 0x46DD_794E)
        XCTAssertEqual(CRC32C.checksum((0..<32).reversed().map { UInt8($0) }), 0x113F_DB5C)
    }

    func testZeroBlockIsTheChecksumOfOneBlockOfZeroes() {
        XCTAssertEqual(CRC32C.zeroBlock, CRC32C.checksum([UInt8](repeating: 0, count: blockSize)))
        XCTAssertEqual(blockSize, 4096)
    }

    func testSeedContinuesAChecksumAcrossPieces() {
        let bytes = (0..<1000).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
        // Split at every alignment the 8-byte inner loop cares about.
        for split in [0, 1, 3, 7, 8, 9, 500, 999, 1000] {
            let head = CRC32C.checksum(Array(bytes[..<split]))
            let whole = bytes[split...].withUnsafeBytes { CRC32C.checksum($0, seed: head) }
            XCTAssertEqual(whole, CRC32C.checksum(bytes), "split at \(split)")
        }
    }

    func testUnalignedBufferGivesTheSameChecksum() {
        let bytes = [UInt8](repeating: 0, count: 1) + Array("123456789".utf8)
        let crc = bytes.withUnsafeBytes { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[1...])) }
        XCTAssertEqual(crc, 0xE306_9283)
    }
}
