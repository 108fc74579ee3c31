import CairnCore
import CairnWire
import NIOCore
import XCTest

final class DataResponseTests: XCTestCase {
    private let request = DataRequest.read(Fixtures.address, offset: 0, length: 4096).frame(id: 4242)

    /// The error as the peer sees it: built, encoded, decoded and turned back into an error.
    private func overTheWire(_ error: Error) throws -> (ResponseFrame, CairnError?) {
        var buffer = ByteBuffer()
        FrameCodec.encode(DataResponse.error(error, for: request), into: &buffer)
        let frame = try XCTUnwrap(try FrameCodec.decodeResponse(&buffer))
        return (frame, DataResponse.error(from: frame))
    }

    func testErrorsRoundTrip() throws {
        let errors: [(CairnError, WireStatus)] = [
            (.staleEpoch(current: 0x0123_4567_89AB), .staleEpoch),
            (.checksumMismatch(block: 77), .checksumMismatch),
            (.io("disk failed"), .io),
            (.invalidArgument("offset not aligned"), .invalid),
            (.notFound("no chunk"), .notFound),
            (.noSpace("disk full"), .noSpace),
            (.unauthenticated("wrong secret"), .unauthenticated),
            (.unavailable("too many requests"), .busy),
        ]
        for (error, status) in errors {
            let (frame, back) = try overTheWire(error)
            XCTAssertEqual(frame.status, status, "\(error)")
            XCTAssertEqual(frame.opcode, .read)
            XCTAssertEqual(frame.id, 4242)
            XCTAssertEqual(back, error)
        }
    }

    func testStaleEpochAndChecksumPayloadsAreBinary() throws {
        XCTAssertEqual(try overTheWire(CairnError.staleEpoch(current: 9)).0.payload.bytes, [0, 0, 0, 0, 0, 0, 0, 9])
        XCTAssertEqual(try overTheWire(CairnError.checksumMismatch(block: 5)).0.payload.bytes, [0, 0, 0, 5])
    }

    func testErrorsWithoutTheirOwnStatus() throws {
        XCTAssertEqual(try overTheWire(CairnError.protocolError("bad")).1, .invalidArgument("bad"))
        XCTAssertEqual(try overTheWire(CairnError.conflict("busy writer")).1, .internalError("busy writer"))
        struct Foreign: Error, CustomStringConvertible { var description: String { "foreign failure" } }
        let (frame, back) = try overTheWire(Foreign())
        XCTAssertEqual(frame.status, .internalError)
        XCTAssertEqual(back, .internalError("foreign failure"))
    }

    func testOKIsNoError() {
        XCTAssertNil(DataResponse.error(from: ResponseFrame(opcode: .ping, status: .ok, id: 1, payload: ByteBuffer())))
    }

    // MARK: - Block tables

    private let entries = [
        BlockEntry.hole,
        BlockEntry(state: .data, crc: 0xDEAD_BEEF, version: BlockVersion(epoch: 3, seq: 9)),
        BlockEntry(state: .data, crc: CRC32C.zeroBlock, version: BlockVersion(epoch: .max, seq: .max)),
    ]

    func testEntriesRoundTrip() throws {
        XCTAssertEqual(try DataResponse.decodeEntries(DataResponse.encodeEntries(entries)), entries)
        XCTAssertEqual(try DataResponse.decodeEntries(DataResponse.encodeEntries([])), [])
        XCTAssertEqual(DataResponse.encodeEntries(entries).readableBytes, 4 + 3 * 24)
    }

    func testMalformedEntriesAreProtocolErrors() {
        let good = DataResponse.encodeEntries(entries).bytes
        assertProtocolError(try DataResponse.decodeEntries(ByteBuffer()), "empty")
        assertProtocolError(try DataResponse.decodeEntries(ByteBuffer(bytes: good.dropLast())), "short")
        assertProtocolError(try DataResponse.decodeEntries(ByteBuffer(bytes: good + [0])), "long")
        var countTooHigh = ByteBuffer(bytes: good)
        countTooHigh.setInteger(UInt32(4), at: 0)
        assertProtocolError(try DataResponse.decodeEntries(countTooHigh), "count above the entries")
        var countHuge = ByteBuffer(bytes: good)
        countHuge.setInteger(UInt32.max, at: 0)
        assertProtocolError(try DataResponse.decodeEntries(countHuge), "count of 2^32-1")
        var badState = ByteBuffer(bytes: good)
        badState.setInteger(UInt8(7), at: 4)
        assertProtocolError(try DataResponse.decodeEntries(badState), "unknown state")
    }

    // MARK: - Raw blocks

    private let rawBlocks = [
        BlockPut(index: 0, entry: Fixtures.dataEntry, data: Fixtures.dataBlock),
        BlockPut(index: 1, entry: .hole, data: nil),
        BlockPut(index: 2, entry: BlockEntry(state: .data, crc: CRC32C.zeroBlock, version: BlockVersion(epoch: 1, seq: 1)),
                 data: [UInt8](repeating: 0, count: blockSize)),
    ]

    func testRawBlocksRoundTrip() throws {
        XCTAssertEqual(try DataResponse.decodeRawBlocks(DataResponse.encodeRawBlocks(rawBlocks)), rawBlocks)
        XCTAssertEqual(try DataResponse.decodeRawBlocks(DataResponse.encodeRawBlocks([])), [])
        XCTAssertEqual(DataResponse.encodeRawBlocks(rawBlocks).readableBytes, 4 + 3 * 28 + 2 * blockSize)
    }

    func testTruncatedRawBlocksAreProtocolErrors() {
        let good = DataResponse.encodeRawBlocks(rawBlocks).bytes
        // Every cut short of the end, including inside a block's data and inside an entry.
        for length in [0, 2, 4, 6, 4 + 27, 4 + 28, 4 + 28 + 4095, good.count - 1] {
            assertProtocolError(try DataResponse.decodeRawBlocks(ByteBuffer(bytes: good.prefix(length))), "cut to \(length)")
        }
        var countTooHigh = ByteBuffer(bytes: good)
        countTooHigh.setInteger(UInt32.max, at: 0)
        assertProtocolError(try DataResponse.decodeRawBlocks(countTooHigh), "count of 2^32-1")
        var badState = ByteBuffer(bytes: good)
        badState.setInteger(UInt8(9), at: 4 + 4)
        assertProtocolError(try DataResponse.decodeRawBlocks(badState), "unknown state")
    }

    func testU64Replies() throws {
        XCTAssertEqual(try DataResponse.readU64(DataResponse.u64(0xFEDC_BA98_7654_3210)), 0xFEDC_BA98_7654_3210)
        assertProtocolError(try DataResponse.readU64(ByteBuffer(bytes: [0, 0, 0, 0, 0, 0, 1])))
    }
}
