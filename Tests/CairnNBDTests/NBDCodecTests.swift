import CairnNBD
import NIOCore
import XCTest

/// Feeds `bytes` to a decoder one byte at a time (and, separately, all at once) and returns
/// the messages; both ways must agree.
func dripFeed(_ bytes: [UInt8], mode: NBDDecoder.Mode) throws -> [NBDInbound] {
    func run(_ step: Int) throws -> [NBDInbound] {
        var decoder = NBDDecoder(mode: mode)
        var input = ByteBuffer()
        var out: [NBDInbound] = []
        var i = 0
        while i < bytes.count {
            input.writeBytes(bytes[i..<min(bytes.count, i + step)])
            i += step
            while let m = try decoder.decode(&input) { out.append(m) }
        }
        return out
    }
    let one = try run(1)
    let all = try run(max(1, bytes.count))
    XCTAssertEqual(one, all)
    return one
}

func request(flags: UInt16 = 0, type: NBDCommand, cookie: UInt64, offset: UInt64, length: UInt32, payload: [UInt8] = []) -> [UInt8] {
    var b = ByteBuffer()
    b.writeInteger(NBDMagic.request)
    b.writeInteger(flags)
    b.writeInteger(type.rawValue)
    b.writeInteger(cookie)
    b.writeInteger(offset)
    b.writeInteger(length)
    b.writeBytes(payload)
    return Array(b.readableBytesView)
}

func option(_ code: UInt32, _ data: [UInt8] = []) -> [UInt8] {
    var b = ByteBuffer()
    b.writeInteger(NBDMagic.ihaveopt)
    b.writeInteger(code)
    b.writeInteger(UInt32(data.count))
    b.writeBytes(data)
    return Array(b.readableBytesView)
}

final class NBDCodecTests: XCTestCase {
    func testGreetingBytes() {
        var b = ByteBuffer()
        NBDEncoder.greeting(into: &b)
        XCTAssertEqual(Array(b.readableBytesView), Array("NBDMAGIC".utf8) + Array("IHAVEOPT".utf8) + [0x00, 0x03])
    }

    func testClientFlagsThenOptions() throws {
        let msgs = try dripFeed([0, 0, 0, 3], mode: .clientFlags)
        XCTAssertEqual(msgs, [.clientFlags(3)])
        let opts = try dripFeed(option(8) + option(3, []) + option(1, Array("v1".utf8)), mode: .options)
        XCTAssertEqual(opts, [
            .option(NBDOptionRequest(option: 8, data: ByteBuffer())),
            .option(NBDOptionRequest(option: 3, data: ByteBuffer())),
            .option(NBDOptionRequest(option: 1, data: ByteBuffer(string: "v1"))),
        ])
    }

    func testRequestsWithAndWithoutPayload() throws {
        let bytes = request(type: .read, cookie: 7, offset: 4096, length: 512)
            + request(flags: NBDCommandFlag.fua, type: .write, cookie: 8, offset: 1, length: 3, payload: [1, 2, 3])
            + request(type: .disc, cookie: 9, offset: 0, length: 0)
        // Byte fixture of the first header, written out by hand.
        XCTAssertEqual(Array(bytes[0..<28]), [0x25, 0x60, 0x95, 0x13, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7,
                                              0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0, 2, 0])
        let msgs = try dripFeed(bytes, mode: .transmission)
        XCTAssertEqual(msgs, [
            .request(NBDRequest(flags: 0, type: 0, cookie: 7, offset: 4096, length: 512)),
            .request(NBDRequest(flags: 1, type: 1, cookie: 8, offset: 1, length: 3, payload: ByteBuffer(bytes: [1, 2, 3]))),
            .request(NBDRequest(flags: 0, type: 2, cookie: 9, offset: 0, length: 0)),
        ])
    }

    func testOversizedWriteIsDiscardedThenDecodingGoesOn() throws {
        let n = NBDLimits.payloadMax + 1
        var bytes = request(type: .write, cookie: 1, offset: 0, length: UInt32(n))
        bytes += [UInt8](repeating: 0xab, count: n)
        bytes += request(type: .flush, cookie: 2, offset: 0, length: 0)
        var decoder = NBDDecoder(mode: .transmission)
        var input = ByteBuffer()
        var out: [NBDInbound] = []
        var i = 0
        while i < bytes.count {  // in 1 MiB pieces: byte-wise would take too long here
            input.writeBytes(bytes[i..<min(bytes.count, i + (1 << 20))])
            i += 1 << 20
            while let m = try decoder.decode(&input) { out.append(m) }
        }
        XCTAssertEqual(out, [
            .oversizedWrite(NBDRequest(flags: 0, type: 1, cookie: 1, offset: 0, length: UInt32(n))),
            .request(NBDRequest(flags: 0, type: 3, cookie: 2, offset: 0, length: 0)),
        ])
    }

    func testMalformedInputThrows() {
        XCTAssertThrowsError(try dripFeed([0xde, 0xad, 0xbe, 0xef] + [UInt8](repeating: 0, count: 24), mode: .transmission)) {
            XCTAssertEqual($0 as? NBDDecodeError, .badRequestMagic(0xdead_beef))
        }
        XCTAssertThrowsError(try dripFeed(Array("NOTMAGIC".utf8) + [UInt8](repeating: 0, count: 8), mode: .options)) {
            XCTAssertEqual($0 as? NBDDecodeError, .badOptionMagic(0x4e4f_544d_4147_4943))
        }
        var huge = option(7)
        huge.replaceSubrange(12..<16, with: [0xff, 0xff, 0xff, 0xff])
        XCTAssertThrowsError(try dripFeed(huge, mode: .options)) {
            XCTAssertEqual($0 as? NBDDecodeError, .optionTooLong(0xffff_ffff))
        }
        XCTAssertThrowsError(try dripFeed(request(type: .write, cookie: 1, offset: 0, length: 0xffff_ffff), mode: .transmission)) {
            XCTAssertEqual($0 as? NBDDecodeError, .writeTooLong(0xffff_ffff))
        }
    }

    func testTruncatedInputWaits() throws {
        XCTAssertEqual(try dripFeed(Array(request(type: .read, cookie: 1, offset: 0, length: 1).prefix(27)), mode: .transmission), [])
        XCTAssertEqual(try dripFeed(Array(request(type: .write, cookie: 1, offset: 0, length: 4, payload: [1, 2, 3])), mode: .transmission), [])
        XCTAssertEqual(try dripFeed(Array(option(1, [1, 2, 3]).dropLast()), mode: .options), [])
    }

    func testInfoAndMetaContextParsers() throws {
        var d = ByteBuffer()
        d.writeInteger(UInt32(2)); d.writeString("v1"); d.writeInteger(UInt16(2)); d.writeInteger(UInt16(3)); d.writeInteger(UInt16(1))
        XCTAssertEqual(try NBDOptionParser.info(d), NBDInfoRequest(name: "v1", infos: [3, 1]))
        var bad = ByteBuffer()
        bad.writeInteger(UInt32(100)); bad.writeString("v1")
        XCTAssertThrowsError(try NBDOptionParser.info(bad))
        var m = ByteBuffer()
        m.writeInteger(UInt32(2)); m.writeString("v1"); m.writeInteger(UInt32(1))
        m.writeInteger(UInt32(15)); m.writeString("base:allocation")
        XCTAssertEqual(try NBDOptionParser.metaContext(m), NBDMetaContextRequest(name: "v1", queries: ["base:allocation"]))
        var lying = ByteBuffer()
        lying.writeInteger(UInt32(0)); lying.writeInteger(UInt32(1_000_000))
        XCTAssertThrowsError(try NBDOptionParser.metaContext(lying))
    }

    func testStructuredChunkBytes() {
        var b = ByteBuffer()
        NBDEncoder.offsetHole(cookie: 5, offset: 4096, length: 512, done: true, into: &b)
        XCTAssertEqual(Array(b.readableBytesView), [0x66, 0x8e, 0x33, 0xef, 0, 1, 0, 2, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 12,
                                                    0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0, 2, 0])
        var e = ByteBuffer()
        NBDEncoder.errorChunk(cookie: 1, error: .eperm, message: "ro", into: &e)
        XCTAssertEqual(Array(e.readableBytesView), [0x66, 0x8e, 0x33, 0xef, 0, 1, 0x80, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 8,
                                                    0, 0, 0, 1, 0, 2, 0x72, 0x6f])
    }
}
