import CairnCore
@testable import CairnISCSI
import NIOCore
import XCTest

final class ISCSIPDUTests: XCTestCase {
    func nopOut(data: [UInt8]) -> ISCSIPDU {
        var p = ISCSIPDU(opcode: .nopOut, immediate: true)
        p.itt = 0x1234_5678
        p.set32(20, ISCSILimits.reservedTag)
        p.data = ByteBuffer(bytes: data)
        return p
    }

    func testRoundTripPadsAndSetsLength() throws {
        let pdu = nopOut(data: [1, 2, 3, 4, 5])
        var bytes = ISCSIPDUEncoder.encode(pdu, digests: ISCSIDigests())
        XCTAssertEqual(bytes.readableBytes, 48 + 8)
        XCTAssertEqual(bytes.getBytes(at: 5, length: 3), [0, 0, 5])
        XCTAssertEqual(bytes.getBytes(at: 53, length: 3), [0, 0, 0])
        var decoder = ISCSIPDUDecoder()
        decoder.dataSegmentMax = 8192
        let decoded = try XCTUnwrap(try decoder.decode(&bytes))
        XCTAssertEqual(decoded.opcode, .nopOut)
        XCTAssertTrue(decoded.immediate)
        XCTAssertEqual(decoded.itt, 0x1234_5678)
        XCTAssertEqual(decoded.data.readableBytes, 5)
        XCTAssertEqual(bytes.readableBytes, 0)
    }

    func testDecodesOneByteAtATimeWithDigests() throws {
        let digests = ISCSIDigests(header: true, data: true)
        let pdu = nopOut(data: Array(0..<37))
        let encoded = ISCSIPDUEncoder.encode(pdu, digests: digests)
        XCTAssertEqual(encoded.readableBytes, 48 + 4 + 40 + 4)
        var decoder = ISCSIPDUDecoder()
        decoder.digests = digests
        var input = ByteBuffer()
        var result: ISCSIPDU?
        for i in 0..<encoded.readableBytes {
            XCTAssertNil(result, "decoded before the last byte")
            input.writeBytes(encoded.getBytes(at: i, length: 1)!)
            result = try decoder.decode(&input)
        }
        XCTAssertEqual(result?.data.getBytes(at: result!.data.readerIndex, length: 37), Array(0..<37))
    }

    func testCRC32CIsSentLittleEndian() {
        // RFC 3720 appendix B.4: 32 bytes of zeroes have the CRC32C bytes aa 36 91 8a.
        let crc = CRC32C.checksum([UInt8](repeating: 0, count: 32))
        var b = ByteBuffer()
        b.writeInteger(crc, endianness: .little)
        XCTAssertEqual(b.getBytes(at: 0, length: 4), [0xaa, 0x36, 0x91, 0x8a])
    }

    func testBadHeaderDigestIsAnError() {
        let digests = ISCSIDigests(header: true, data: false)
        var bytes = ISCSIPDUEncoder.encode(nopOut(data: []), digests: digests)
        bytes.setInteger(UInt8(0x00), at: 16)
        var decoder = ISCSIPDUDecoder()
        decoder.digests = digests
        XCTAssertThrowsError(try decoder.decode(&bytes)) { XCTAssertEqual($0 as? ISCSIDecodeError, .headerDigest) }
    }

    func testBadDataDigestConsumesThePDUAndKeepsTheHeader() {
        let digests = ISCSIDigests(header: false, data: true)
        var bytes = ISCSIPDUEncoder.encode(nopOut(data: [9, 9, 9, 9]), digests: digests)
        bytes.setInteger(UInt8(0), at: 48)
        var decoder = ISCSIPDUDecoder()
        decoder.digests = digests
        XCTAssertThrowsError(try decoder.decode(&bytes)) { error in
            guard case .dataDigest(let bhs)? = error as? ISCSIDecodeError else { return XCTFail("\(error)") }
            XCTAssertEqual(bhs.count, 48)
        }
        XCTAssertEqual(bytes.readableBytes, 0)
    }

    func testOversizedDataSegmentIsRefusedBeforeItArrives() {
        var header = [UInt8](repeating: 0, count: 48)
        header[5] = 0x01                      // 64 KiB, above the login limit of 8 KiB
        var bytes = ByteBuffer(bytes: header)
        XCTAssertThrowsError(try ISCSIPDUDecoder().decode(&bytes)) {
            XCTAssertEqual($0 as? ISCSIDecodeError, .dataSegmentTooLong(65536))
        }
    }

    func testTextKeys() throws {
        let pairs = try ISCSIText.parse(Array("A=1\0B=x=y\0".utf8))
        XCTAssertEqual(pairs.map(\.key), ["A", "B"])
        XCTAssertEqual(pairs.map(\.value), ["1", "x=y"])
        XCTAssertThrowsError(try ISCSIText.parse(Array("novalue\0".utf8)))
        XCTAssertThrowsError(try ISCSIText.parse(Array("=v\0".utf8)))
        let encoded = ISCSIText.encode([("K", "V")])
        XCTAssertEqual(encoded.getBytes(at: 0, length: encoded.readableBytes), Array("K=V\0".utf8))
    }

    func testMD5KnownAnswers() {
        XCTAssertEqual(CHAP.hex(MD5.digest([])), "0xd41d8cd98f00b204e9800998ecf8427e")
        XCTAssertEqual(CHAP.hex(MD5.digest(Array("abc".utf8))), "0x900150983cd24fb0d6963f7d28e17f72")
        XCTAssertEqual(CHAP.hex(MD5.digest(Array(String(repeating: "a", count: 1000).utf8))),
                       "0xcabe45dcc9ae5b66ba86600cca6b8ba8")
    }

    func testCHAPValueEncodings() {
        XCTAssertEqual(CHAP.decode("0x0aFF"), [0x0a, 0xff])
        XCTAssertEqual(CHAP.decode("0XABC"), [0x0a, 0xbc])
        XCTAssertEqual(CHAP.decode("0bAQI="), [1, 2])
        XCTAssertNil(CHAP.decode("0xzz"))
        XCTAssertNil(CHAP.decode("abc"))
    }
}
