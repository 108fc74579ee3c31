@testable import CairnMeta
import XCTest

/// The byte-wise key rules both embedded backends rely on.
final class KeyOrderTests: XCTestCase {
    func testPrefixUpperBound() {
        XCTAssertEqual("/a/".prefixUpperBound, "/a0")
        XCTAssertEqual("a\u{D7FF}".prefixUpperBound, "a\u{E000}")
        XCTAssertEqual("a\u{10FFFF}".prefixUpperBound, "b")
        XCTAssertNil("\u{10FFFF}".prefixUpperBound)
        XCTAssertNil("".prefixUpperBound)
    }

    func testCanonicallyEquivalentKeysStayDistinct() async throws {
        let composed = "/caf\u{E9}", decomposed = "/cafe\u{301}"
        XCTAssertEqual(composed, decomposed, "Swift's == treats them as one string")
        let store = MemoryMetaStore()
        _ = try await store.txn(compare: [], success: [.put(key: composed, value: [1]), .put(key: decomposed, value: [2])], failure: [])
        let all = try await store.rangeAll(prefix: "/")
        XCTAssertEqual(all.map(\.value), [[2], [1]], "two keys in UTF-8 byte order")
    }
}
