@testable import CairnISCSI
import NIOCore
import XCTest

final class FullFeaturePhaseTests: XCTestCase {
    func phase(_ configure: (inout ISCSISessionParameters) -> Void = { _ in }) -> FullFeaturePhase {
        var p = ISCSISessionParameters()
        configure(&p)
        let login = ISCSILoginResult(sessionType: .normal, initiatorName: "iqn.test:i", targetName: iscsiTargetPrefix + "v",
                                     volume: "v", isid: 1, tsih: 1, parameters: p, statSN: 100, expCmdSN: 1)
        return FullFeaturePhase(session: login, blockSize: 512)
    }

    func command(cmdSN: UInt32, itt: UInt32, cdb: [UInt8], read: Bool, write: Bool, edtl: Int, data: [UInt8] = []) -> ISCSIPDU {
        var p = ISCSIPDU(opcode: .scsiCommand)
        p.flags = 0x80 | (read ? 0x40 : 0) | (write ? 0x20 : 0) | 0x01
        p.itt = itt
        p.set32(20, UInt32(edtl))
        p.set32(24, cmdSN)
        p.bhs.replaceSubrange(32..<(32 + cdb.count), with: cdb)
        p.data = ByteBuffer(bytes: data)
        return p
    }

    static let read1: [UInt8] = [0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0]
    static let write4: [UInt8] = [0x2a, 0, 0, 0, 0, 0, 0, 0, 4, 0]

    func sent(_ actions: [FullFeaturePhase.Action]) -> [ISCSIPDU] {
        actions.compactMap { if case .send(let p) = $0 { return p } else { return nil } }
    }

    func testReadCollapsesStatusIntoTheLastDataIn() {
        var f = phase { $0.sendDataSegmentMax = 512 }
        let read2: [UInt8] = [0x28, 0, 0, 0, 0, 0, 0, 0, 2, 0]
        let actions = f.receive(command(cmdSN: 1, itt: 7, cdb: read2, read: true, write: false, edtl: 1024))
        guard case .execute(let task)? = actions.first else { return XCTFail("\(actions)") }
        XCTAssertEqual(task.cdb, read2)
        let pdus = sent(f.completed(7, .good(ByteBuffer(repeating: 0xab, count: 1024))))
        XCTAssertEqual(pdus.map { $0.opcode }, [.dataIn, .dataIn], "two Data-In of 512 bytes")
        guard pdus.count == 2 else { return }
        XCTAssertEqual(pdus[0].flags & 0x01, 0)
        XCTAssertEqual(pdus[1].flags & 0x81, 0x81, "F and S on the last")
        XCTAssertEqual(pdus[1].u32(24), 100, "StatSN")
        XCTAssertEqual(pdus[1].u32(36), 1, "DataSN")
        XCTAssertEqual(pdus[1].u32(40), 512, "buffer offset")
        XCTAssertEqual(f.inFlight, 0)
    }

    func testReadResidualUnderflow() {
        var f = phase()
        _ = f.receive(command(cmdSN: 1, itt: 7, cdb: Self.read1, read: true, write: false, edtl: 1024))
        let pdus = sent(f.completed(7, .good(ByteBuffer(repeating: 1, count: 512))))
        XCTAssertEqual(pdus.last?.flags ?? 0 & 0x02, 0x83)
        XCTAssertEqual(pdus.last?.u32(44), 512)
    }

    func testWriteWithImmediateDataThenR2T() {
        var f = phase { $0.maxBurstLength = 1024; $0.firstBurstLength = 512 }
        let first = f.receive(command(cmdSN: 1, itt: 9, cdb: Self.write4, read: false, write: true, edtl: 2048,
                                      data: [UInt8](repeating: 1, count: 512)))
        let r2ts = sent(first)
        XCTAssertEqual(r2ts.count, 1)
        XCTAssertEqual(r2ts[0].opcode, .r2t)
        XCTAssertEqual(r2ts[0].u32(40), 512, "offset after the immediate data")
        XCTAssertEqual(r2ts[0].u32(44), 1024, "MaxBurstLength")
        let ttt = r2ts[0].u32(20)
        func dataOut(_ offset: Int, _ n: Int, dataSN: UInt32, final: Bool, ttt: UInt32) -> ISCSIPDU {
            var p = ISCSIPDU(opcode: .dataOut, final: final)
            p.itt = 9
            p.set32(20, ttt)
            p.set32(36, dataSN)
            p.set32(40, UInt32(offset))
            p.data = ByteBuffer(repeating: UInt8(offset / 512 + 1), count: n)
            return p
        }
        XCTAssertTrue(f.receive(dataOut(512, 512, dataSN: 0, final: false, ttt: ttt)).isEmpty)
        let second = sent(f.receive(dataOut(1024, 512, dataSN: 1, final: true, ttt: ttt)))
        XCTAssertEqual(second.first?.u32(40), 1536)
        XCTAssertEqual(second.first?.u32(44), 512)
        XCTAssertEqual(second.first?.u32(36), 1, "R2TSN")
        let done = f.receive(dataOut(1536, 512, dataSN: 0, final: true, ttt: second[0].u32(20)))
        guard case .execute(let task)? = done.first else { return XCTFail("\(done)") }
        XCTAssertEqual(task.dataOut.readableBytes, 2048)
        XCTAssertEqual(task.dataOut.getBytes(at: 1536, length: 1), [4])
        let resp = sent(f.completed(9, .good()))
        XCTAssertEqual(resp.first?.opcode, .scsiResponse)
        XCTAssertEqual(resp.first?.u32(36), 2, "ExpDataSN counts the R2Ts")
    }

    func testWriteEDTLBelowTransferLengthTakesOnlyTheEDTL() {
        var f = phase()
        let actions = f.receive(command(cmdSN: 1, itt: 3, cdb: Self.write4, read: false, write: true, edtl: 512,
                                        data: [UInt8](repeating: 1, count: 512)))
        guard case .execute(let task)? = actions.first else { return XCTFail("\(actions)") }
        XCTAssertEqual(task.dataOut.readableBytes, 512, "only the EDTL is taken")
        let pdus = sent(f.completed(3, .good()))
        XCTAssertEqual(pdus.first?.opcode, .scsiResponse)
        XCTAssertEqual(pdus.first.map { $0.flags & 0x04 }, 0x04, "residual overflow")
        XCTAssertEqual(pdus.first?.u32(44), 1536)
    }

    func testCompareAndWriteWithTheWrongLengthIsRefused() {
        var f = phase()
        var caw = [UInt8](repeating: 0, count: 16)
        caw[0] = 0x89; caw[13] = 1
        let pdus = sent(f.receive(command(cmdSN: 1, itt: 4, cdb: caw, read: false, write: true, edtl: 512,
                                          data: [UInt8](repeating: 0, count: 512))))
        XCTAssertEqual(pdus.first?.bhs[3], SCSIStatus.checkCondition.rawValue)
        XCTAssertEqual(f.inFlight, 0)
    }

    func testCmdSNOutsideTheWindowIsIgnored() {
        var f = phase()
        XCTAssertTrue(f.receive(command(cmdSN: 1 + ISCSILimits.queueDepth, itt: 1, cdb: Self.read1, read: true, write: false, edtl: 512)).isEmpty)
        XCTAssertTrue(f.receive(command(cmdSN: 0, itt: 1, cdb: Self.read1, read: true, write: false, edtl: 512)).isEmpty)
        XCTAssertFalse(f.receive(command(cmdSN: 1, itt: 1, cdb: Self.read1, read: true, write: false, edtl: 512)).isEmpty)
    }

    func testNopOutIsEchoed() {
        var f = phase()
        var nop = ISCSIPDU(opcode: .nopOut, immediate: true)
        nop.itt = 44
        nop.set32(20, ISCSILimits.reservedTag)
        nop.data = ByteBuffer(bytes: [1, 2, 3])
        let pdus = sent(f.receive(nop))
        XCTAssertEqual(pdus.first?.opcode, .nopIn)
        XCTAssertEqual(pdus.first?.itt, 44)
        XCTAssertEqual(pdus.first?.data.readableBytes, 3)
    }

    func testAbortTaskWaitsForTheRunningCommandAndSuppressesItsResponse() {
        var f = phase()
        _ = f.receive(command(cmdSN: 1, itt: 5, cdb: Self.read1, read: true, write: false, edtl: 512))
        var tmf = ISCSIPDU(opcode: .taskManagementRequest, immediate: true)
        tmf.flags = 0x80 | 1
        tmf.itt = 6
        tmf.set32(20, 5)
        tmf.set32(24, 2)
        XCTAssertTrue(sent(f.receive(tmf)).isEmpty, "the TMF response waits for the task")
        let after = sent(f.completed(5, .good(ByteBuffer(repeating: 0, count: 512))))
        XCTAssertEqual(after.map(\.opcode), [.taskManagementResponse])
        XCTAssertEqual(after.first?.bhs[2], 0)
    }

    func testUnknownOpcodeIsRejectedWithItsHeader() {
        var f = phase()
        var odd = ISCSIPDU(opcode: .nopOut)
        odd.bhs[0] = 0x1c
        let pdus = sent(f.receive(odd))
        XCTAssertEqual(pdus.first?.opcode, .reject)
        XCTAssertEqual(pdus.first?.data.readableBytes, 48)
    }
}
