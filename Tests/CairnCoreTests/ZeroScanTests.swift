import CairnCore
import XCTest

final class ZeroScanTests: XCTestCase {
    func testOneNonZeroByteAnywhereIsSeen() {
        for count in [0, 1, 7, 8, 63, 64, 65, 4095, 4096, 4097, 131_072 + 5] {
            let zeroes = [UInt8](repeating: 0, count: count)
            XCTAssertTrue(zeroes.withUnsafeBytes { isAllZero($0) }, "\(count) zero bytes")
            for at in Set([0, 7, 8, 62, 63, 64, 4095, 4096, count / 2, count - 1]) where at >= 0 && at < count {
                var bytes = zeroes
                bytes[at] = 0x10
                XCTAssertFalse(bytes.withUnsafeBytes { isAllZero($0) }, "byte \(at) of \(count)")
            }
        }
    }
}
