import CairnCore
import XCTest

final class CairnErrorTests: XCTestCase {
    /// Errors whose description is their bare message: `from(code:message:)` with the
    /// description rebuilds the same value (what the manager's HTTP error body carries).
    func testCodeAndDescriptionRoundTrip() {
        let errors: [CairnError] = [
            .invalidArgument("bad size"), .notFound("no volume 'a'"), .alreadyExists("volume 'a' exists"),
            .staleEpoch(current: 42), .unavailable("node busy"), .unauthenticated("wrong secret"),
            .conflict("attached elsewhere"), .insufficientNodes("2 up, 3 needed"),
        ]
        for e in errors {
            var epoch: Epoch = 0
            if case .staleEpoch(let current) = e { epoch = current }
            XCTAssertEqual(CairnError.from(code: e.code, message: e.description, epoch: epoch), e, "\(e.code)")
        }
    }

    func testCodeAndBareMessageRoundTrip() {
        let errors: [CairnError] = [.io("disk"), .noSpace("full"), .protocolError("bad magic"), .internalError("bug")]
        let messages = ["disk", "full", "bad magic", "bug"]
        for (e, m) in zip(errors, messages) {
            XCTAssertEqual(CairnError.from(code: e.code, message: m), e, "\(e.code)")
        }
    }

    func testCodesAreStableAndDistinct() {
        let all: [CairnError] = [
            .invalidArgument(""), .notFound(""), .alreadyExists(""), .staleEpoch(current: 0),
            .checksumMismatch(block: 0), .io(""), .noSpace(""), .unavailable(""), .unauthenticated(""),
            .conflict(""), .insufficientNodes(""), .protocolError(""), .internalError(""),
        ]
        XCTAssertEqual(all.map(\.code), [
            "invalid_argument", "not_found", "already_exists", "stale_epoch", "checksum_mismatch", "io",
            "no_space", "unavailable", "unauthenticated", "conflict", "insufficient_nodes", "protocol", "internal",
        ])
    }

    func testUnknownCodeIsInternal() {
        XCTAssertEqual(CairnError.from(code: "no_such_code", message: "m"), .internalError("m"))
    }

    func testDescriptions() {
        XCTAssertEqual(CairnError.staleEpoch(current: 7).description, "stale epoch: the volume's current epoch is 7")
        XCTAssertEqual(CairnError.checksumMismatch(block: 3).description, "checksum mismatch in block 3")
        XCTAssertEqual(CairnError.io("x").description, "I/O error: x")
        XCTAssertEqual(CairnError.conflict("x").description, "x")
    }
}
