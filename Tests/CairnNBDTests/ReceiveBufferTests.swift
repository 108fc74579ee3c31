import CairnNBD
import NIOCore
import XCTest

final class ReceiveBufferTests: XCTestCase {
    /// A decoded slice keeps its bytes while later reads arrive; the unread tail moves to
    /// storage of its own once per pass, and the bytes come out in order.
    func testSlicesSurviveAndTheTailMovesToItsOwnStorage() {
        let allocator = ByteBufferAllocator()
        var r = ReceiveBuffer()
        var first = ByteBuffer(bytes: Array(0..<100).map { UInt8($0) })
        r.append(&first)
        let slice = r.bytes.readSlice(length: 60)!           // a decoded payload, still in use
        r.passEnded(decoded: true, allocator: allocator)
        XCTAssertEqual(r.bytes.readableBytes, 40)
        var base = 0
        r.bytes.withUnsafeReadableBytes { base = Int(bitPattern: $0.baseAddress) }
        var more = ByteBuffer(bytes: Array(100..<140).map { UInt8($0) })
        r.append(&more)
        r.passEnded(decoded: false, allocator: allocator)
        var after = 0
        r.bytes.withUnsafeReadableBytes { after = Int(bitPattern: $0.baseAddress) }
        XCTAssertEqual(base, after, "appending to the tail's own storage did not copy it")
        XCTAssertEqual(Array(slice.readableBytesView), Array(0..<60).map { UInt8($0) })
        XCTAssertEqual(r.bytes.readBytes(length: 80), Array(60..<140).map { UInt8($0) })
        r.passEnded(decoded: true, allocator: allocator)
        XCTAssertEqual(r.bytes.readableBytes, 0)
    }
}
