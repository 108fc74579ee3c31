import CairnCore
import XCTest

final class ByteSizeTests: XCTestCase {
    func testParsesBinaryAndDecimalUnits() throws {
        XCTAssertEqual(try ByteSize.parse("512MiB"), 512 << 20)
        XCTAssertEqual(try ByteSize.parse("10GiB"), 10 << 30)
        XCTAssertEqual(try ByteSize.parse("4096"), 4096)
        XCTAssertEqual(try ByteSize.parse("1.5GiB"), 1_610_612_736)
        XCTAssertEqual(try ByteSize.parse("1.5TiB"), 3 << 39)
        XCTAssertEqual(try ByteSize.parse("2G"), 2 << 30, "single-letter units are binary")
        XCTAssertEqual(try ByteSize.parse("2GB"), 2_000_000_000)
        XCTAssertEqual(try ByteSize.parse("10MB"), 10_000_000)
        XCTAssertEqual(try ByteSize.parse("3KiB"), 3072)
        XCTAssertEqual(try ByteSize.parse("7B"), 7)
        XCTAssertEqual(try ByteSize.parse("0"), 0)
    }

    func testToleratesSurroundingAndInnerSpaces() throws {
        XCTAssertEqual(try ByteSize.parse("  10 GiB "), 10 << 30)
    }

    func testRefusesWhatIsNotASize() {
        for text in ["", "garbage", "GiB", "-1GiB", "1.5", "10 XiB", "nanGiB", "infGiB", "1,5GiB"] {
            assertInvalidArgument(try ByteSize.parse(text), "input '\(text)'")
        }
    }

    func testRefusesSizesThatOverflow() {
        // 2^64 bytes, 2e7 TiB (above 2^64) and a fraction above the guarded range.
        for text in ["18446744073709551616", "20000000TiB", "16777216TiB", "9000000.5TiB"] {
            assertInvalidArgument(try ByteSize.parse(text), "input '\(text)'")
        }
        XCTAssertEqual(try ByteSize.parse("18446744073709551615"), UInt64.max)
    }

    func testFormats() {
        XCTAssertEqual(ByteSize.format(0), "0 B")
        XCTAssertEqual(ByteSize.format(1023), "1023 B")
        XCTAssertEqual(ByteSize.format(1024), "1 KiB")
        XCTAssertEqual(ByteSize.format(1536), "1.5 KiB")
        XCTAssertEqual(ByteSize.format(512 << 20), "512 MiB")
        XCTAssertEqual(ByteSize.format(1_610_612_736), "1.5 GiB")
        XCTAssertEqual(ByteSize.format(10 << 40), "10 TiB")
        XCTAssertEqual(ByteSize.format(3 << 50), "3 PiB")
        XCTAssertEqual(ByteSize.format(UInt64.max), "16384 PiB", "PiB is the largest unit")
    }

    func testFormatThenParseGivesTheSameSize() throws {
        for bytes: UInt64 in [1024, 1536, 512 << 20, 1_610_612_736, 10 << 40] {
            let text = ByteSize.format(bytes).replacingOccurrences(of: " ", with: "")
            XCTAssertEqual(try ByteSize.parse(text), bytes, text)
        }
    }
}

func assertInvalidArgument<T>(_ body: @autoclosure () throws -> T, _ message: String = "",
                              file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertThrowsError(try body(), message, file: file, line: line) { error in
        guard case CairnError.invalidArgument? = error as? CairnError else {
            return XCTFail("expected invalidArgument, got \(error) (\(message))", file: file, line: line)
        }
    }
}
