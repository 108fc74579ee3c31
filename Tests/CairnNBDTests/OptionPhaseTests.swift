import CairnNBD
import NIOCore
import XCTest

/// Splits option replies into (option, type, data) triples.
func optionReplies(_ b: ByteBuffer) -> [(UInt32, UInt32, ByteBuffer)] {
    var b = b
    var out: [(UInt32, UInt32, ByteBuffer)] = []
    while b.readableBytes > 0 {
        XCTAssertEqual(b.readInteger(as: UInt64.self), NBDMagic.optionReply)
        let o = b.readInteger(as: UInt32.self)!, t = b.readInteger(as: UInt32.self)!, n = b.readInteger(as: UInt32.self)!
        out.append((o, t, b.readSlice(length: Int(n))!))
    }
    return out
}

func sent(_ a: OptionPhase.Action) -> ByteBuffer {
    guard case .send(let b) = a else { XCTFail("expected send, got \(a)"); return ByteBuffer() }
    return b
}

let export1 = NBDExportDescription(name: "v1", sizeBytes: 1 << 20, readOnly: false, description: "test")

final class OptionPhaseTests: XCTestCase {
    func opt(_ code: NBDOption, _ data: ByteBuffer = ByteBuffer()) -> NBDInbound {
        .option(NBDOptionRequest(option: code.rawValue, data: data))
    }

    func ready(_ tls: NBDTLSMode = .off) -> OptionPhase {
        var m = OptionPhase(tlsMode: tls)
        _ = m.receive(.clientFlags(3))
        return m
    }

    func infoData(_ name: String, _ infos: [UInt16]) -> ByteBuffer {
        var d = ByteBuffer()
        d.writeInteger(UInt32(name.utf8.count)); d.writeString(name); d.writeInteger(UInt16(infos.count))
        for i in infos { d.writeInteger(i) }
        return d
    }

    func metaData(_ name: String, _ queries: [String]) -> ByteBuffer {
        var d = ByteBuffer()
        d.writeInteger(UInt32(name.utf8.count)); d.writeString(name); d.writeInteger(UInt32(queries.count))
        for q in queries { d.writeInteger(UInt32(q.utf8.count)); d.writeString(q) }
        return d
    }

    func testUnknownClientFlagsAndOldClientsAreDisconnected() {
        var m = OptionPhase(tlsMode: .off)
        guard case .sendAndClose = m.receive(.clientFlags(1 << 5)) else { return XCTFail() }
        var m2 = OptionPhase(tlsMode: .off)
        guard case .sendAndClose = m2.receive(.clientFlags(0)) else { return XCTFail() }
    }

    func testGoWithMetaContextEntersTransmission() {
        var m = ready()
        XCTAssertEqual(optionReplies(sent(m.receive(opt(.structuredReply)))).map(\.1), [NBDReplyType.ack])
        let set = optionReplies(sent(m.receive(opt(.setMetaContext, metaData("v1", ["base:allocation", "qemu:dirty"])))))
        XCTAssertEqual(set.map(\.1), [NBDReplyType.metaContext, NBDReplyType.ack])
        XCTAssertEqual(set[0].2.getInteger(at: 0, as: UInt32.self), OptionPhase.allocationContextID)
        let action = m.receive(opt(.go, infoData("v1", [NBDInfoType.blockSize.rawValue, NBDInfoType.name.rawValue])))
        guard case .resolve(let r) = action else { return XCTFail("\(action)") }
        XCTAssertEqual(r.name, "v1")
        XCTAssertTrue(r.opens)
        guard case .enterTransmission(let bytes, let config) = m.resolved(r, .success(export1)) else { return XCTFail() }
        let replies = optionReplies(bytes)
        XCTAssertEqual(replies.map(\.1), [3, 3, 3, NBDReplyType.ack])
        XCTAssertEqual(replies[0].2.getInteger(at: 2, as: UInt64.self), 1 << 20)
        XCTAssertTrue(config.structuredReplies)
        XCTAssertEqual(config.allocationContextID, 1)
        XCTAssertNotEqual(config.flags & NBDTransmissionFlag.canMultiConn, 0)
        XCTAssertNotEqual(config.flags & NBDTransmissionFlag.sendDF, 0)
        XCTAssertEqual(config.flags & NBDTransmissionFlag.readOnly, 0)
    }

    func testMetaContextForAnotherExportIsNotUsed() {
        var m = ready()
        _ = m.receive(opt(.structuredReply))
        _ = m.receive(opt(.setMetaContext, metaData("other", ["base:allocation"])))
        guard case .resolve(let r) = m.receive(opt(.go, infoData("v1", []))),
              case .enterTransmission(_, let config) = m.resolved(r, .success(export1)) else { return XCTFail() }
        XCTAssertNil(config.allocationContextID)
    }

    func testErrorsAreRepliesNotDisconnects() {
        var m = ready()
        XCTAssertEqual(optionReplies(sent(m.receive(opt(.setMetaContext, metaData("v1", ["base:allocation"]))))).map(\.1),
                       [NBDReplyType.errInvalid], "SET_META_CONTEXT before STRUCTURED_REPLY")
        XCTAssertEqual(optionReplies(sent(m.receive(.option(NBDOptionRequest(option: 99, data: ByteBuffer())))))[0].1,
                       NBDReplyType.errUnsup)
        XCTAssertEqual(optionReplies(sent(m.receive(opt(.list, ByteBuffer(string: "x")))))[0].1, NBDReplyType.errInvalid)
        XCTAssertEqual(optionReplies(sent(m.receive(opt(.go, ByteBuffer(bytes: [0, 0, 0, 9]))))).map(\.1), [NBDReplyType.errInvalid])
        XCTAssertEqual(optionReplies(sent(m.receive(opt(.startTLS))))[0].1, NBDReplyType.errPolicy)
        guard case .resolve(let r) = m.receive(opt(.go, infoData("nope", []))) else { return XCTFail() }
        XCTAssertEqual(optionReplies(sent(m.resolved(r, .failure(NBDExportError.unknown("no volume named 'nope'")))))[0].1,
                       NBDReplyType.errUnknown)
        guard case .resolve(let r2) = m.receive(opt(.go, infoData("busy", []))) else { return XCTFail() }
        let refused = optionReplies(sent(m.resolved(r2, .failure(NBDExportError.refused("in use")))))
        XCTAssertEqual(refused[0].1, NBDReplyType.errPolicy)
        XCTAssertEqual(refused[0].2.getString(at: 0, length: refused[0].2.readableBytes), "in use")
        _ = m.receive(opt(.structuredReply))
        XCTAssertEqual(optionReplies(sent(m.receive(opt(.structuredReply))))[0].1, NBDReplyType.errInvalid)
    }

    func testListMetaContextWildcards() {
        var m = ready()
        _ = m.receive(opt(.structuredReply))
        for queries in [[], ["base:"], ["base:allocation"]] {
            XCTAssertEqual(optionReplies(sent(m.receive(opt(.listMetaContext, metaData("v1", queries))))).map(\.1),
                           [NBDReplyType.metaContext, NBDReplyType.ack])
        }
        XCTAssertEqual(optionReplies(sent(m.receive(opt(.listMetaContext, metaData("v1", ["x-other:thing"]))))).map(\.1),
                       [NBDReplyType.ack])
    }

    func testRequiredTLS() {
        var m = ready(.require)
        XCTAssertEqual(optionReplies(sent(m.receive(opt(.list))))[0].1, NBDReplyType.errTLSRequired)
        XCTAssertEqual(optionReplies(sent(m.receive(opt(.go, infoData("v1", [])))))[0].1, NBDReplyType.errTLSRequired)
        guard case .startTLS = m.receive(opt(.startTLS)) else { return XCTFail() }
        m.tlsStarted()
        guard case .list = m.receive(opt(.list)) else { return XCTFail() }
        var m2 = ready(.require)
        guard case .sendAndClose = m2.receive(opt(.exportName, ByteBuffer(string: "v1"))) else { return XCTFail() }
    }

    func testExportNameReplyHasZeroesUnlessRefused() {
        var m = OptionPhase(tlsMode: .off)
        _ = m.receive(.clientFlags(1))
        guard case .resolve(let r) = m.receive(opt(.exportName, ByteBuffer(string: "v1"))),
              case .enterTransmission(let bytes, _) = m.resolved(r, .success(export1)) else { return XCTFail() }
        XCTAssertEqual(bytes.readableBytes, 8 + 2 + 124)
        var m2 = ready()
        guard case .resolve(let r2) = m2.receive(opt(.exportName, ByteBuffer(string: "v1"))),
              case .sendAndClose = m2.resolved(r2, .failure(NBDExportError.unknown("x"))) else { return XCTFail() }
    }
}
