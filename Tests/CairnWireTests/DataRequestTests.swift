import CairnCore
import CairnWire
import NIOCore
import XCTest

final class DataRequestTests: XCTestCase {
    func testEveryRequestRoundTripsThroughTheCodec() throws {
        for request in Fixtures.requests {
            var buffer = Fixtures.encoded(request.frame(id: 3))
            let frame = try XCTUnwrap(try FrameCodec.decodeRequest(&buffer))
            XCTAssertEqual(try DataRequest(frame: frame), request, "\(request.opcode)")
        }
    }

    func testEveryOpcodeIsCovered() {
        XCTAssertEqual(Set(Fixtures.requests.map(\.opcode)), Set(Opcode.allCases))
    }

    // MARK: - Payload fixtures

    func testReadPayloadLayout() {
        let frame = DataRequest.read(ChunkAddress(volume: 1, chunk: 2, epoch: 3), offset: 4, length: 5).frame(id: 0)
        XCTAssertEqual(frame.payload.bytes, [
            0, 0, 0, 0, 0, 0, 0, 1,  // volume
            0, 0, 0, 2,  // chunk
            0, 0, 0, 0, 0, 0, 0, 3,  // epoch
            0, 0, 0, 4,  // offset
            0, 0, 0, 5,  // length
        ])
    }

    func testHelloPayloadLayout() {
        XCTAssertEqual(DataRequest.hello(secret: "ab", client: "c").frame(id: 0).payload.bytes,
                       [0, 2, 0x61, 0x62, 0, 1, 0x63])
    }

    func testRebuildPayloadLayout() {
        let order = RebuildOrder(address: ChunkAddress(volume: 1, chunk: 2, epoch: 3), sinceEpoch: 4,
                                 bytesPerSecond: 5, sources: ["h:1"])
        XCTAssertEqual(DataRequest.rebuild(order).frame(id: 0).payload.bytes, [
            0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 3,  // address
            0, 0, 0, 0, 0, 0, 0, 4,  // sinceEpoch
            0, 0, 0, 0, 0, 0, 0, 5,  // bytesPerSecond
            0, 1,  // source count
            0, 3, 0x68, 0x3A, 0x31,  // "h:1"
        ])
    }

    func testBlockEntryLayout() throws {
        let entry = BlockEntry(state: .data, crc: 0xAABB_CCDD, version: BlockVersion(epoch: 0x0102, seq: 0x0304))
        var b = ByteBuffer()
        b.writeBlockEntry(entry)
        XCTAssertEqual(b.bytes, [
            1, 0, 0, 0,  // state, padding
            0xAA, 0xBB, 0xCC, 0xDD,  // crc
            0, 0, 0, 0, 0, 0, 0x01, 0x02,  // epoch
            0, 0, 0, 0, 0, 0, 0x03, 0x04,  // seq
        ])
        XCTAssertEqual(b.readableBytes, BlockEntry.encodedSize)
        XCTAssertEqual(try b.readBlockEntry(), entry)
        XCTAssertNil(try b.readBlockEntry(), "fewer than 24 bytes is nil, not an error")
    }

    func testPutBlocksPayloadCarriesDataOnlyForDataBlocks() {
        guard case .putBlocks(let a, let blocks) = Fixtures.requests[8] else { return XCTFail("fixture order changed") }
        let payload = DataRequest.putBlocks(a, blocks).frame(id: 0).payload
        XCTAssertEqual(payload.readableBytes, 20 + 4 + (4 + 24 + blockSize) + (4 + 24))
    }

    // MARK: - Malformed payloads

    func testEveryTruncatedPayloadIsAProtocolError() {
        for request in Fixtures.requests {
            let frame = request.frame(id: 1)
            let full = frame.payload.bytes
            // A WRITE's data is the rest of the payload, so only its fixed part can be cut short.
            let cut = request.opcode == .write ? Fixtures.writeFixedBytes : full.count
            for length in 0..<cut {
                let truncated = RequestFrame(opcode: frame.opcode, id: 1, payload: ByteBuffer(bytes: full.prefix(length)))
                assertProtocolError(try DataRequest(frame: truncated), "\(request.opcode) cut to \(length) of \(full.count)")
            }
        }
    }

    func testTrailingBytesAfterARequestAreAProtocolError() {
        for request in Fixtures.requests where request.opcode != .write {
            var frame = request.frame(id: 1)
            frame.payload.writeInteger(UInt8(0))
            assertProtocolError(try DataRequest(frame: frame), "\(request.opcode)")
        }
    }

    func testWriteDataIsTheRestOfThePayload() throws {
        var wire = Fixtures.encoded(DataRequest.write(Fixtures.address, seq: 1, offset: 0, data: ByteBuffer(bytes: [1, 2])).frame(id: 1))
        var frame = try XCTUnwrap(try FrameCodec.decodeRequest(&wire))
        frame.payload.writeInteger(UInt8(3))
        XCTAssertEqual(try DataRequest(frame: frame),
                       .write(Fixtures.address, seq: 1, offset: 0, data: ByteBuffer(bytes: [1, 2, 3])))
    }

    /// A write's data travels as the frame's own buffer (sent without a copy), yet the
    /// bytes on the wire are the fixed fields followed by the data, as one payload.
    func testWriteDataIsSentAfterTheFieldsWithoutBeingCopiedIntoThePayload() throws {
        let data = ByteBuffer(bytes: [9, 8, 7])
        let frame = DataRequest.write(Fixtures.address, seq: 5, offset: 6, data: data).frame(id: 1)
        XCTAssertEqual(frame.payload.readableBytes, Fixtures.writeFixedBytes)
        XCTAssertEqual(frame.data, data)
        XCTAssertEqual(frame.wireLength, Fixtures.writeFixedBytes + 3)
        var wire = Fixtures.encoded(frame)
        XCTAssertEqual(wire.readableBytes, WireLimits.headerSize + Fixtures.writeFixedBytes + 3)
        XCTAssertEqual(Array(wire.readableBytesView.suffix(3)), [9, 8, 7])
        let decoded = try XCTUnwrap(try FrameCodec.decodeRequest(&wire))
        XCTAssertEqual(decoded.data.readableBytes, 0)
        XCTAssertEqual(try DataRequest(frame: decoded), .write(Fixtures.address, seq: 5, offset: 6, data: data))
    }

    func testPutBlocksAboveTheBlockLimitIsAProtocolError() {
        let limit = UInt32(WireLimits.ioLengthMax / blockSize)
        for count in [limit + 1, UInt32.max] {
            var payload = ByteBuffer()
            payload.writeBytes(DataRequest.deleteChunk(Fixtures.address).frame(id: 0).payload.bytes)  // the address
            payload.writeInteger(count)
            assertProtocolError(try DataRequest(frame: RequestFrame(opcode: .putBlocks, id: 1, payload: payload)), "\(count)")
        }
    }

    func testPutBlocksAtTheBlockLimitDecodes() throws {
        let holes = (0..<UInt32(WireLimits.ioLengthMax / blockSize)).map { BlockPut(index: $0, entry: .hole, data: nil) }
        let request = DataRequest.putBlocks(Fixtures.address, holes)
        XCTAssertEqual(try DataRequest(frame: request.frame(id: 1)), request)
    }

    func testPutBlocksWithAnUnknownBlockStateIsAProtocolError() {
        var frame = DataRequest.putBlocks(Fixtures.address, [BlockPut(index: 0, entry: .hole, data: nil)]).frame(id: 1)
        // address 20 | count 4 | index 4 | state at 28
        frame.payload.setInteger(UInt8(2), at: frame.payload.readerIndex + 28)
        assertProtocolError(try DataRequest(frame: frame))
    }

    func testRebuildWithMoreThanSixteenSourcesIsAProtocolError() {
        let order = RebuildOrder(address: Fixtures.address, sinceEpoch: 0, bytesPerSecond: 1,
                                 sources: (0..<17).map { "node-\($0):9500" })
        assertProtocolError(try DataRequest(frame: DataRequest.rebuild(order).frame(id: 1)))
    }
}
