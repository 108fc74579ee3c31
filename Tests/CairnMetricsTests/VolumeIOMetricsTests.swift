import CairnMetrics
import XCTest

final class VolumeIOMetricsTests: XCTestCase {
    func testOneObjectPerVolumeAndFrontend() {
        let r = MetricsRegistry()
        let a = VolumeIOMetrics.of(volume: "v1", frontend: "nbd", registry: r)
        XCTAssertTrue(a === VolumeIOMetrics.of(volume: "v1", frontend: "nbd", registry: r))
        XCTAssertFalse(a === VolumeIOMetrics.of(volume: "v1", frontend: "iscsi", registry: r))
    }

    func testMeasureCountsOperationsBytesErrorsAndLatency() async throws {
        let r = MetricsRegistry()
        let m = VolumeIOMetrics.of(volume: "v1", frontend: "nbd", registry: r)
        try await m.measure(.write, bytes: 4096) {}
        try await m.measure(.write, bytes: 8192) {}
        let n = try await m.measure(.read, bytes: 512) { 7 }
        XCTAssertEqual(n, 7)
        do {
            try await m.measure(.read, bytes: 512) { throw TestError.refused }
            XCTFail("the error must come through")
        } catch {}
        let out = String(decoding: await r.scrape(), as: UTF8.self)
        let l = #"volume="v1",frontend="nbd""#
        XCTAssertTrue(out.contains(#"cairn_volume_io_operations_total{\#(l),op="write"} 2"#), out)
        XCTAssertTrue(out.contains(#"cairn_volume_io_bytes_total{\#(l),op="write"} 12288"#), out)
        XCTAssertTrue(out.contains(#"cairn_volume_io_operations_total{\#(l),op="read"} 1"#), out)
        XCTAssertTrue(out.contains(#"cairn_volume_io_bytes_total{\#(l),op="read"} 512"#), out)
        XCTAssertTrue(out.contains(#"cairn_volume_io_errors_total{\#(l),op="read"} 1"#), out)
        XCTAssertTrue(out.contains(#"cairn_volume_io_duration_seconds_count{\#(l),op="write"} 2"#), out)
        XCTAssertTrue(out.contains(#"cairn_volume_io_in_flight{\#(l)} 0.0"#), out)
    }
}
