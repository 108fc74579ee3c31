import CairnClient
import CairnNBD
import NIOCore
import XCTest

final class TransmissionPhaseTests: XCTestCase {
    func phase(structured: Bool = true, readOnly: Bool = false, context: UInt32? = 1) -> TransmissionPhase {
        let e = NBDExportDescription(name: "v1", sizeBytes: 1 << 20, readOnly: readOnly, description: "")
        return TransmissionPhase(config: NBDTransmissionConfig(
            export: e, flags: OptionPhase.transmissionFlags(e, structuredReplies: structured),
            structuredReplies: structured, allocationContextID: context))
    }

    func req(_ type: UInt16, flags: UInt16 = 0, offset: UInt64 = 0, length: UInt32 = 512, payload: ByteBuffer? = nil) -> NBDInbound {
        .request(NBDRequest(flags: flags, type: type, cookie: 42, offset: offset, length: length, payload: payload))
    }

    /// The error code of an immediate reply (simple or structured error chunk).
    func errorOf(_ d: TransmissionPhase.Decision) -> UInt32? {
        guard case .reply(let r) = d else { return nil }
        let magic = r.header.getInteger(at: 0, as: UInt32.self)
        if magic == NBDMagic.simpleReply { return r.header.getInteger(at: 4, as: UInt32.self) }
        XCTAssertEqual(r.header.getInteger(at: 6, as: UInt16.self), NBDStructuredType.error)
        return r.header.getInteger(at: 20, as: UInt32.self)
    }

    func testValidation() {
        var p = phase()
        XCTAssertEqual(errorOf(p.receive(req(99))), NBDError.einval.rawValue)
        XCTAssertEqual(errorOf(p.receive(req(NBDCommand.read.rawValue, flags: 1 << 9))), NBDError.einval.rawValue)
        XCTAssertEqual(errorOf(p.receive(req(NBDCommand.read.rawValue, offset: 1 << 20, length: 1))), NBDError.einval.rawValue)
        XCTAssertEqual(errorOf(p.receive(req(NBDCommand.read.rawValue, offset: UInt64.max, length: 2))), NBDError.einval.rawValue)
        XCTAssertEqual(errorOf(p.receive(req(NBDCommand.write.rawValue, offset: (1 << 20) - 1, length: 2,
                                             payload: ByteBuffer(bytes: [1, 2])))), NBDError.enospc.rawValue)
        XCTAssertEqual(errorOf(p.receive(req(NBDCommand.read.rawValue, length: UInt32(NBDLimits.payloadMax) + 1))),
                       NBDError.eoverflow.rawValue)
        XCTAssertEqual(errorOf(p.receive(req(NBDCommand.writeZeroes.rawValue, flags: NBDCommandFlag.noHole | NBDCommandFlag.fastZero))),
                       NBDError.enotsup.rawValue)
        XCTAssertEqual(errorOf(p.receive(.oversizedWrite(NBDRequest(flags: 0, type: 1, cookie: 1, offset: 0, length: 1 << 26)))),
                       NBDError.einval.rawValue)
        XCTAssertEqual(p.inFlight, 0)
        var simple = phase(structured: false, context: nil)
        XCTAssertEqual(errorOf(simple.receive(req(NBDCommand.read.rawValue, flags: NBDCommandFlag.df))), NBDError.einval.rawValue)
        XCTAssertEqual(errorOf(simple.receive(req(NBDCommand.blockStatus.rawValue))), NBDError.einval.rawValue)
        var ro = phase(readOnly: true)
        for c in [NBDCommand.write, .trim, .writeZeroes] {
            XCTAssertEqual(errorOf(ro.receive(req(c.rawValue, payload: c == .write ? ByteBuffer(repeating: 0, count: 512) : nil))),
                           NBDError.eperm.rawValue)
        }
        XCTAssertEqual(ro.receive(req(NBDCommand.disc.rawValue)), .disconnect)
    }

    func testReadRepliesAndLimits() {
        var p = phase()
        guard case .execute(let cookie, let op) = p.receive(req(NBDCommand.read.rawValue, offset: 512, length: 4)) else { return XCTFail() }
        XCTAssertEqual(p.inFlight, 1)
        let data = p.completed(cookie: cookie, op, .success(.data(ByteBuffer(bytes: [1, 2, 3, 4]))))
        XCTAssertEqual(data.header.getInteger(at: 6, as: UInt16.self), NBDStructuredType.offsetData)
        XCTAssertEqual(data.header.getInteger(at: 16, as: UInt32.self), 12)
        XCTAssertEqual(data.data, ByteBuffer(bytes: [1, 2, 3, 4]))
        guard case .execute(_, let op2) = p.receive(req(NBDCommand.read.rawValue, length: 4)) else { return XCTFail() }
        let hole = p.completed(cookie: 42, op2, .success(.data(ByteBuffer(repeating: 0, count: 4))))
        XCTAssertEqual(hole.header.getInteger(at: 6, as: UInt16.self), NBDStructuredType.offsetHole)
        guard case .execute(_, let op3) = p.receive(req(NBDCommand.read.rawValue, length: 4)) else { return XCTFail() }
        let failed = p.completed(cookie: 42, op3, .failure(NBDError.eio))
        XCTAssertEqual(failed.header.getInteger(at: 20, as: UInt32.self), NBDError.eio.rawValue)
        XCTAssertEqual(p.inFlight, 0)
        for _ in 0..<NBDLimits.inFlightPerConnectionMax { _ = p.receive(req(NBDCommand.flush.rawValue, length: 0)) }
        XCTAssertFalse(p.acceptsRequests)
    }

    func testBlockStatusDescriptors() {
        var p = phase()
        guard case .execute(_, let op) = p.receive(req(NBDCommand.blockStatus.rawValue, flags: NBDCommandFlag.reqOne, length: 8192))
        else { return XCTFail() }
        let extents = [Extent(offset: 0, length: 65536, hole: true), Extent(offset: 65536, length: 4096, hole: false)]
        var r = p.completed(cookie: 42, op, .success(.extents(extents))).header
        r.moveReaderIndex(forwardBy: 16)
        XCTAssertEqual(r.readInteger(as: UInt32.self), 12)
        XCTAssertEqual(r.readInteger(as: UInt32.self), 1)
        XCTAssertEqual(r.readInteger(as: UInt32.self), 8192, "REQ_ONE: one descriptor, no longer than the request")
        XCTAssertEqual(r.readInteger(as: UInt32.self), NBDAllocationState.hole | NBDAllocationState.zero)
    }
}
