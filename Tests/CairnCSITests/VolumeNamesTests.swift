import XCTest
@testable import CairnCSI

final class VolumeNamesTests: XCTestCase {
    func testCairnNamesAreStable() {
        XCTAssertEqual(VolumeNames.cairnName("pvc-1234", kind: .block), "pvc-1234")
        let long = String(repeating: "x", count: 100)
        XCTAssertEqual(VolumeNames.cairnName(long, kind: .block), VolumeNames.cairnName(long, kind: .block))
        XCTAssertTrue(VolumeNames.cairnName("Upper_Case", kind: .block).hasPrefix("csi-"))
    }
}
