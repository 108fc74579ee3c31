import CairnCore
import XCTest

final class BlockVersionTests: XCTestCase {
    func testEpochOrdersBeforeSequence() {
        XCTAssertLessThan(BlockVersion(epoch: 1, seq: 99), BlockVersion(epoch: 2, seq: 0))
        XCTAssertLessThan(BlockVersion(epoch: 2, seq: 1), BlockVersion(epoch: 2, seq: 2))
        XCTAssertFalse(BlockVersion(epoch: 2, seq: 2) < BlockVersion(epoch: 2, seq: 2))
        XCTAssertGreaterThan(BlockVersion(epoch: 3, seq: 0), BlockVersion(epoch: 2, seq: UInt64.max))
    }

    func testZeroIsTheSmallest() {
        XCTAssertEqual(BlockVersion.zero, BlockVersion(epoch: 0, seq: 0))
        XCTAssertLessThan(BlockVersion.zero, BlockVersion(epoch: 0, seq: 1))
        XCTAssertLessThan(BlockVersion.zero, BlockVersion(epoch: 1, seq: 0))
    }

    func testSortsAndDescribes() {
        let versions = [BlockVersion(epoch: 2, seq: 1), BlockVersion(epoch: 1, seq: 5), BlockVersion(epoch: 2, seq: 0)]
        XCTAssertEqual(versions.sorted().map(\.description), ["1.5", "2.0", "2.1"])
        XCTAssertEqual(versions.max(), BlockVersion(epoch: 2, seq: 1))
    }

    func testHoleEntryIsEmpty() {
        XCTAssertEqual(BlockEntry.hole, BlockEntry(state: .hole, crc: 0, version: .zero))
        XCTAssertEqual(BlockEntry.encodedSize, 24)
    }
}
