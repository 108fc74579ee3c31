import Foundation
import CairnCore
import XCTest

final class LockedTests: XCTestCase {
    func testConcurrentIncrementsAreNotLost() {
        let counter = Locked(0)
        DispatchQueue.concurrentPerform(iterations: 1000) { _ in counter.withLock { $0 += 1 } }
        XCTAssertEqual(counter.snapshot, 1000)
    }

    func testWithLockReturnsAndRethrows() {
        let value = Locked([1, 2])
        XCTAssertEqual(value.withLock { $0.append(3); return $0.count }, 3)
        struct Boom: Error {}
        XCTAssertThrowsError(try value.withLock { _ in throw Boom() })
        XCTAssertEqual(value.snapshot, [1, 2, 3], "a throwing body leaves the value as it was")
    }
}
