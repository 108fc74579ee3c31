import CairnCore
import CairnWire
import NIOCore
import XCTest

final class FrameCodecTests: XCTestCase {
    // MARK: - Byte fixtures

    func testRequestHeaderLayoutIsBigEndian() {
        let frame = DataRequest.fence(volume: 0x1122_3344_5566_7788, epoch: 0x99).frame(id: 0x0102_0304_0506_0708)
        XCTAssertEqual(Fixtures.encoded(frame).bytes, [
            0x43, 0x52, 0x4E, 0x51,  // magic "CRNQ"
            0x01,  // version
            0x07,  // opcode FENCE
            0x00, 0x00,  // flags
            0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,  // id
            0x00, 0x00, 0x00, 0x10,  // payload length
            0x00, 0x00, 0x00, 0x00,  // reserved
            0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88,  // volume
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x99,  // epoch
        ])
    }

    func testRequestFlagsAreEncoded() {
        let frame = RequestFrame(opcode: .ping, flags: 0xBEEF, id: 1, payload: ByteBuffer())
        XCTAssertEqual(Fixtures.encoded(frame).bytes, [
            0x43, 0x52, 0x4E, 0x51, 0x01, 0x0B, 0xBE, 0xEF,
            0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0,
        ])
    }

    func testResponseHeaderLayoutIsBigEndian() {
        let frame = ResponseFrame(opcode: .read, status: .staleEpoch, id: 5, payload: DataResponse.u64(9))
        var out = ByteBuffer()
        FrameCodec.encode(frame, into: &out)
        XCTAssertEqual(out.bytes, [
            0x43, 0x52, 0x4E, 0x52,  // magic "CRNR"
            0x01, 0x02,  // version, opcode READ
            0x00, 0x01,  // status STALE_EPOCH
            0, 0, 0, 0, 0, 0, 0, 5,  // id
            0, 0, 0, 8,  // payload length
            0, 0, 0, 0,  // reserved
            0, 0, 0, 0, 0, 0, 0, 9,
        ])
    }

    func testOpcodeAndStatusNumbersAreStable() {
        XCTAssertEqual(Opcode.allCases.map(\.rawValue), Array(1...13))
        XCTAssertEqual(WireStatus.internalError.rawValue, 9)
        XCTAssertEqual(WireLimits.headerSize, 24)
        XCTAssertEqual(WireLimits.payloadLengthMax, (16 << 20) + 4096)
    }

    // MARK: - Decoding whole frames

    func testEveryRequestDecodesToTheSameFrame() throws {
        for (i, request) in Fixtures.requests.enumerated() {
            let frame = request.frame(id: UInt64(i) + 100)
            var buffer = Fixtures.encoded(frame)
            let decoded = try XCTUnwrap(try FrameCodec.decodeRequest(&buffer), "\(request.opcode)")
            XCTAssertEqual(buffer.readableBytes, 0)
            XCTAssertEqual(decoded.opcode, request.opcode)
            XCTAssertEqual(decoded.id, UInt64(i) + 100)
            XCTAssertEqual(decoded.flags, 0)
            var sent = frame.payload
            sent.writeImmutableBuffer(frame.data)  // a write's data follows its fields in the payload
            XCTAssertEqual(decoded.payload, sent)
        }
    }

    func testDripFedBytesGiveNothingUntilTheFrameIsComplete() throws {
        for request in Fixtures.requests {
            let frame = request.frame(id: 7)
            let bytes = Fixtures.encoded(frame).bytes
            var buffer = ByteBuffer()
            for (i, byte) in bytes.enumerated() {
                buffer.writeInteger(byte)
                let decoded = try FrameCodec.decodeRequest(&buffer)
                if i < bytes.count - 1 {
                    XCTAssertNil(decoded, "\(request.opcode) after \(i + 1) of \(bytes.count) bytes")
                    XCTAssertEqual(buffer.readableBytes, i + 1, "an incomplete frame consumes nothing")
                } else {
                    let frame2 = try XCTUnwrap(decoded)
                    XCTAssertEqual(try DataRequest(frame: frame2), request)
                    XCTAssertEqual(frame2.id, 7)
                    XCTAssertEqual(buffer.readableBytes, 0)
                }
            }
        }
    }

    func testSeveralFramesBackToBack() throws {
        var buffer = ByteBuffer()
        for (i, request) in Fixtures.requests.enumerated() {
            FrameCodec.encode(request.frame(id: UInt64(i)), into: &buffer)
        }
        // Leave half a header of a further frame at the end.
        buffer.writeBytes(Fixtures.encoded(DataRequest.ping.frame(id: 999)).bytes.prefix(12))
        var decoded: [RequestFrame] = []
        while let frame = try FrameCodec.decodeRequest(&buffer) { decoded.append(frame) }
        XCTAssertEqual(try decoded.map { try DataRequest(frame: $0) }, Fixtures.requests)
        XCTAssertEqual(decoded.map(\.id), (0..<UInt64(Fixtures.requests.count)).map { $0 })
        XCTAssertEqual(buffer.readableBytes, 12)
    }

    func testResponsesDripFedAndBackToBack() throws {
        let frames = [
            ResponseFrame(opcode: .read, status: .ok, id: 1, payload: ByteBuffer(bytes: Fixtures.dataBlock)),
            ResponseFrame(opcode: .fence, status: .staleEpoch, id: 2, payload: DataResponse.u64(12)),
            ResponseFrame(opcode: .ping, status: .ok, id: 3, payload: ByteBuffer()),
        ]
        var all = ByteBuffer()
        for f in frames { FrameCodec.encode(f, into: &all) }
        var buffer = ByteBuffer()
        var decoded: [ResponseFrame] = []
        for byte in all.readableBytesView {
            buffer.writeInteger(byte)
            while let f = try FrameCodec.decodeResponse(&buffer) { decoded.append(f) }
        }
        XCTAssertEqual(decoded.map(\.id), [1, 2, 3])
        XCTAssertEqual(decoded.map(\.status), [.ok, .staleEpoch, .ok])
        XCTAssertEqual(decoded.map(\.opcode), [.read, .fence, .ping])
        XCTAssertEqual(decoded.map(\.payload), frames.map(\.payload))
    }

    // MARK: - Malformed headers

    func testWrongMagicThrowsAsSoonAsFourBytesArrive() throws {
        var buffer = ByteBuffer()
        for (i, byte) in Array("GET / HTTP/1.1\r\n\r\n".utf8).prefix(4).enumerated() {
            buffer.writeInteger(byte)
            if i < 3 {
                XCTAssertNil(try FrameCodec.decodeRequest(&buffer))
            } else {
                assertProtocolError(try FrameCodec.decodeRequest(&buffer))
            }
        }
    }

    func testResponseMagicIsNotARequestAndViceVersa() {
        var request = Fixtures.requestHeader(magic: ResponseFrame.magic)
        assertProtocolError(try FrameCodec.decodeRequest(&request))
        var response = Fixtures.requestHeader()
        assertProtocolError(try FrameCodec.decodeResponse(&response))
    }

    func testUnknownVersionThrows() {
        for version: UInt8 in [0, 2, 255] {
            var buffer = Fixtures.requestHeader(version: version)
            assertProtocolError(try FrameCodec.decodeRequest(&buffer), "version \(version)")
        }
    }

    func testUnknownOpcodeThrowsWithoutWaitingForThePayload() {
        for opcode: UInt8 in [0, 14, 255] {
            var buffer = Fixtures.requestHeader(opcode: opcode, length: 100)
            assertProtocolError(try FrameCodec.decodeRequest(&buffer), "opcode \(opcode)")
            var response = Fixtures.requestHeader(magic: ResponseFrame.magic, opcode: opcode, length: 100)
            assertProtocolError(try FrameCodec.decodeResponse(&response), "opcode \(opcode)")
        }
    }

    func testUnknownResponseStatusThrows() {
        var buffer = Fixtures.requestHeader(magic: ResponseFrame.magic, field: 10)
        assertProtocolError(try FrameCodec.decodeResponse(&buffer))
    }

    func testPayloadAboveTheLimitThrowsWithoutWaitingForIt() throws {
        for length in [UInt32(WireLimits.payloadLengthMax + 1), UInt32.max] {
            var buffer = Fixtures.requestHeader(opcode: Opcode.write.rawValue, length: length)
            assertProtocolError(try FrameCodec.decodeRequest(&buffer), "length \(length)")
            var response = Fixtures.requestHeader(magic: ResponseFrame.magic, opcode: Opcode.read.rawValue, length: length)
            assertProtocolError(try FrameCodec.decodeResponse(&response), "length \(length)")
        }
        var atLimit = Fixtures.requestHeader(opcode: Opcode.write.rawValue, length: UInt32(WireLimits.payloadLengthMax))
        XCTAssertNil(try FrameCodec.decodeRequest(&atLimit), "a payload at the limit is awaited")
    }

    func testPayloadAtTheLimitDecodes() throws {
        var buffer = Fixtures.requestHeader(opcode: Opcode.write.rawValue, length: UInt32(WireLimits.payloadLengthMax))
        buffer.writeRepeatingByte(0xAB, count: WireLimits.payloadLengthMax)
        let frame = try XCTUnwrap(try FrameCodec.decodeRequest(&buffer))
        XCTAssertEqual(frame.payload.readableBytes, WireLimits.payloadLengthMax)
    }
}
