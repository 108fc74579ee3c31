// Full feature phase of one connection (RFC 7143 sections 3.2, 4.2, 11): the command
// numbering window, SCSI commands with immediate data, unsolicited Data-Out and R2T,
// Data-In with status and residual counts, NOP-Out/NOP-In, text (SendTargets), task
// management, logout and Reject. A state machine: PDUs and command results in, actions out.
//
// Invariants: StatSN grows by one for every status-carrying PDU sent; MaxCmdSN never
// shrinks (it is ExpCmdSN plus the free command slots); at most one R2T is outstanding per
// command (MaxOutstandingR2T=1); a task's response is sent at most once, never after the
// task was aborted. Error recovery level 0: a broken data sequence ends the connection.
import NIOCore

/// One SCSI command ready to run.
public struct ISCSITask: Equatable, Sendable {
    public var itt: UInt32
    public var lun: UInt64
    public var cdb: [UInt8]
    public var dataOut: ByteBuffer
}

public struct FullFeaturePhase {
    public enum Action: Equatable {
        case send(ISCSIPDU)
        case execute(ISCSITask)
        /// Answer SendTargets: call `sendTargets(itt:targets:)` with the target names to list.
        case listTargets(itt: UInt32, all: Bool)
        /// LUN reset or target reset: release what SPC-2 reservations the LUN holds.
        case resetLogicalUnit
        /// Send the Logout Response once every running command has ended, then close.
        case logout(ISCSIPDU)
        case close(reason: String)
    }

    public static let rejectDataDigest: UInt8 = 0x02, rejectProtocolError: UInt8 = 0x04
    public static let rejectCommandNotSupported: UInt8 = 0x05, rejectImmediateCommand: UInt8 = 0x06
    public static let rejectInvalidPDUField: UInt8 = 0x09

    struct PendingWrite {
        var task: ISCSITask
        var expectedLength: Int       // EDTL
        var collectEnd: Int           // bytes we keep: min(EDTL, what the CDB transfers)
        var unsolicitedEnd: Int
        var unsolicitedNext: Int
        var unsolicitedDone: Bool
        var unsolicitedDataSN: UInt32 = 0
        var r2tNext: Int              // next offset to solicit
        var outstanding: (ttt: UInt32, offset: Int, end: Int, next: Int, dataSN: UInt32)?
        var r2tSN: UInt32 = 0
        /// Bytes this command asked for with R2Ts (counted in `solicitedBytes`).
        var solicited = 0
    }
    struct Running {
        var expectedLength: Int
        var read: Bool
        var transferLength: Int?      // what the CDB moves (writes), for residuals
        var r2ts: UInt32
        var solicited = 0
        var aborted = false
    }
    struct PendingTMF { var response: ISCSIPDU; var waiting: Set<UInt32> }

    public let session: ISCSILoginResult
    public let blockSize: Int
    var params: ISCSISessionParameters { session.parameters }
    var statSN: UInt32
    var expCmdSN: UInt32
    var nextTTT: UInt32 = 1
    var writes: [UInt32: PendingWrite] = [:]
    var running: [UInt32: Running] = [:]
    var tmfs: [PendingTMF] = []
    var textContinuations: [UInt32: ByteBuffer] = [:]
    var nopInOutstanding: Set<UInt32> = []
    /// Write data asked for with R2Ts and not yet written; bounded by `writeBufferBytesMax`.
    var solicitedBytes = 0
    /// Writes whose next R2T waits for buffer space, in arrival order.
    var r2tQueue: [UInt32] = []
    public private(set) var loggingOut = false

    public init(session: ISCSILoginResult, blockSize: Int) {
        self.session = session; self.blockSize = blockSize
        statSN = session.statSN; expCmdSN = session.expCmdSN
    }

    /// Commands accepted and not yet answered.
    public var inFlight: Int { writes.count + running.count }
    /// Commands still waiting for their Data-Out (nothing of theirs runs).
    public var pendingWrites: Int { writes.count }
    var maxCmdSN: UInt32 {
        let free = max(0, Int(ISCSILimits.queueDepth) - inFlight)
        return expCmdSN &+ UInt32(free) &- 1
    }

    // MARK: - Input

    public mutating func receive(_ pdu: ISCSIPDU) -> [Action] {
        guard let opcode = pdu.opcode else { return [reject(pdu, Self.rejectCommandNotSupported)] }
        if loggingOut && opcode != .nopOut { return [] }
        switch opcode {
        case .scsiCommand: return scsiCommand(pdu)
        case .dataOut: return dataOut(pdu)
        case .nopOut: return nopOut(pdu)
        case .textRequest: return text(pdu)
        case .taskManagementRequest: return taskManagement(pdu)
        case .logoutRequest: return logout(pdu)
        case .snackRequest: return [reject(pdu, Self.rejectCommandNotSupported)]
        case .loginRequest: return [reject(pdu, Self.rejectProtocolError)]
        default: return [reject(pdu, Self.rejectProtocolError)]
        }
    }

    /// Applies CmdSN rules; false when the PDU is to be ignored (outside the window).
    private mutating func acceptCmdSN(_ pdu: ISCSIPDU) -> Bool {
        let cmdSN = pdu.u32(24)
        if pdu.immediate { return true }
        // Serial number arithmetic (RFC 1982): ExpCmdSN <= CmdSN <= MaxCmdSN.
        let fromExp = cmdSN &- expCmdSN
        guard fromExp <= maxCmdSN &- expCmdSN, Int32(bitPattern: maxCmdSN &- expCmdSN) >= 0 else { return false }
        expCmdSN = cmdSN &+ 1
        return true
    }

    private mutating func scsiCommand(_ pdu: ISCSIPDU) -> [Action] {
        if session.sessionType == .discovery { return [reject(pdu, Self.rejectProtocolError)] }
        if pdu.immediate && inFlight >= 2 * Int(ISCSILimits.queueDepth) { return [reject(pdu, Self.rejectImmediateCommand)] }
        guard acceptCmdSN(pdu) else { return [] }
        let itt = pdu.itt
        if writes[itt] != nil || running[itt] != nil || itt == ISCSILimits.reservedTag {
            return [reject(pdu, Self.rejectInvalidPDUField)]
        }
        var cdb = Array(pdu.bhs[32..<48])
        if pdu.ahs.count >= 4, pdu.ahs[2] == 0x01 {        // extended CDB AHS
            let length = Int(pdu.ahs[0]) << 8 | Int(pdu.ahs[1])
            if length >= 1, 3 + length <= pdu.ahs.count { cdb += pdu.ahs[4..<(3 + length)] }
        }
        if let n = SCSIOpcode.cdbLength(cdb[0]), n <= cdb.count { cdb = Array(cdb.prefix(n)) }
        let readFlag = pdu.flags & 0x40 != 0, writeFlag = pdu.flags & 0x20 != 0
        let edtl = Int(pdu.u32(20))
        let immediateData = pdu.data
        var task = ISCSITask(itt: itt, lun: pdu.lun, cdb: cdb, dataOut: ByteBuffer())
        if immediateData.readableBytes > 0 && (!writeFlag || !params.immediateData
            || immediateData.readableBytes > min(params.firstBurstLength, edtl)) {
            return [reject(pdu, Self.rejectProtocolError)]
        }
        let parsed = try? SCSICommand.parse(cdb)
        let needed = parsed?.dataOutLength(blockSize: blockSize) ?? 0
        let transferLength: Int? = needed > 0 ? needed : nil
        // COMPARE AND WRITE and WRITE SAME take exactly their data or nothing.
        if let parsed, parsed.needsExactDataOut, !writeFlag || edtl != needed {
            running[itt] = Running(expectedLength: edtl, read: false, transferLength: transferLength, r2ts: 0)
            return completed(itt, .check(.invalidFieldInCDB))
        }
        guard writeFlag, edtl > 0 else {
            running[itt] = Running(expectedLength: edtl, read: readFlag, transferLength: transferLength, r2ts: 0)
            return [.execute(task)]
        }
        // Data comes: immediate, then unsolicited Data-Out, then what R2Ts solicit. When the
        // EDTL is below what the CDB transfers, only the EDTL is taken (residual overflow).
        let collectEnd = needed > ISCSILimits.transferBytesMax ? 0 : min(needed, edtl)
        task.dataOut = ByteBuffer()
        let immediateLength = immediateData.readableBytes
        var write = PendingWrite(
            task: task, expectedLength: edtl, collectEnd: collectEnd,
            unsolicitedEnd: params.initialR2T ? immediateLength : min(params.firstBurstLength, edtl),
            unsolicitedNext: 0, unsolicitedDone: false, r2tNext: 0, outstanding: nil)
        write.r2tNext = write.unsolicitedEnd
        Self.store(&write, immediateData, at: 0)
        write.unsolicitedNext = immediateLength
        write.unsolicitedDone = write.unsolicitedNext >= write.unsolicitedEnd
        writes[itt] = write
        return advance(itt)
    }

    private static func store(_ w: inout PendingWrite, _ data: ByteBuffer, at offset: Int) {
        guard offset < w.collectEnd else { return }
        let n = min(data.readableBytes, w.collectEnd - offset)
        guard n > 0 else { return }
        if w.task.dataOut.capacity < offset + n { w.task.dataOut.reserveCapacity(minimumWritableBytes: offset + n - w.task.dataOut.writerIndex) }
        w.task.dataOut.setBuffer(data.getSlice(at: data.readerIndex, length: n)!, at: offset)
    }

    /// Sends the next R2T, or runs the command once all its data is in.
    private mutating func advance(_ itt: UInt32) -> [Action] {
        guard var w = writes[itt], w.unsolicitedDone, w.outstanding == nil else { return [] }
        // Unsolicited data may end early (F bit): solicit from where it ended.
        if w.r2tSN == 0 { w.r2tNext = min(w.r2tNext, max(w.unsolicitedNext, 0)) }
        if w.r2tNext < w.collectEnd {
            let length = min(params.maxBurstLength, w.collectEnd - w.r2tNext)
            // Buffer space: one write may always proceed; others wait their turn.
            if solicitedBytes > 0 && solicitedBytes + length > ISCSILimits.writeBufferBytesMax {
                writes[itt] = w
                if !r2tQueue.contains(itt) { r2tQueue.append(itt) }
                return []
            }
            solicitedBytes += length
            w.solicited += length
            let ttt = nextTTT
            nextTTT = nextTTT &+ 1 == ISCSILimits.reservedTag ? 1 : nextTTT &+ 1
            var r2t = ISCSIPDU(opcode: .r2t)
            r2t.lun = w.task.lun
            r2t.itt = itt
            r2t.set32(20, ttt)
            r2t.set32(24, statSN)
            r2t.set32(28, expCmdSN)
            r2t.set32(32, maxCmdSN)
            r2t.set32(36, w.r2tSN)
            r2t.set32(40, UInt32(w.r2tNext))
            r2t.set32(44, UInt32(length))
            w.outstanding = (ttt, w.r2tNext, w.r2tNext + length, w.r2tNext, 0)
            w.r2tSN &+= 1
            w.r2tNext += length
            writes[itt] = w
            return [.send(r2t)]
        }
        writes[itt] = nil
        let transfer = (try? SCSICommand.parse(w.task.cdb))?.dataOutLength(blockSize: blockSize) ?? 0
        running[itt] = Running(expectedLength: w.expectedLength, read: false, transferLength: transfer > 0 ? transfer : nil,
                               r2ts: w.r2tSN, solicited: w.solicited)
        precondition(w.task.dataOut.capacity >= w.collectEnd || w.collectEnd == 0, "write data fully received")
        w.task.dataOut.moveWriterIndex(to: w.collectEnd)
        return [.execute(w.task)]
    }

    /// Buffer space came free: R2Ts for the writes that waited for it.
    private mutating func resumeQueuedWrites() -> [Action] {
        var actions: [Action] = []
        let queued = r2tQueue
        r2tQueue = []
        for itt in queued where writes[itt] != nil { actions += advance(itt) }
        return actions
    }

    private mutating func dataOut(_ pdu: ISCSIPDU) -> [Action] {
        let itt = pdu.itt, ttt = pdu.u32(20), offset = Int(pdu.u32(40)), dataSN = pdu.u32(36)
        // Data for a command already answered (its overflow was refused) or aborted: dropped.
        guard var w = writes[itt] else { return [] }
        let length = pdu.data.readableBytes
        if ttt == ISCSILimits.reservedTag {
            guard !w.unsolicitedDone, offset == w.unsolicitedNext, offset + length <= w.unsolicitedEnd,
                  dataSN == w.unsolicitedDataSN else {
                return [.close(reason: "unsolicited Data-Out out of sequence (offset \(offset), DataSN \(dataSN))")]
            }
            w.unsolicitedDataSN &+= 1
            Self.store(&w, pdu.data, at: offset)
            w.unsolicitedNext += length
            if pdu.final || w.unsolicitedNext >= w.unsolicitedEnd { w.unsolicitedDone = true }
            writes[itt] = w
            return advance(itt)
        }
        guard var r = w.outstanding, r.ttt == ttt else { return [.close(reason: "Data-Out for unknown TTT \(ttt)")] }
        guard dataSN == r.dataSN else { return [.close(reason: "Data-Out DataSN \(dataSN), expected \(r.dataSN)")] }
        guard offset == r.next, offset + length <= r.end else {
            return [.close(reason: "Data-Out offset \(offset)+\(length) outside the R2T \(r.offset)..<\(r.end)")]
        }
        Self.store(&w, pdu.data, at: offset)
        r.next += length
        r.dataSN &+= 1
        w.outstanding = r.next >= r.end ? nil : r
        if pdu.final && w.outstanding != nil { return [.close(reason: "Data-Out F bit before the R2T's end")] }
        writes[itt] = w
        return advance(itt)
    }

    // MARK: - Results

    /// A command finished: Data-In PDUs (the last with status when it succeeded) and/or a SCSI Response.
    public mutating func completed(_ itt: UInt32, _ result: SCSIResult) -> [Action] {
        guard let r = running.removeValue(forKey: itt) else { return [] }
        var actions = finishTMFs(after: itt)
        if r.solicited > 0 {
            solicitedBytes -= r.solicited
            actions += resumeQueuedWrites()
        }
        if r.aborted { return actions }
        var data = result.data
        let produced = r.transferLength ?? data.readableBytes
        let expected = r.expectedLength
        var residualFlags: UInt8 = 0
        var residual = 0
        if produced > expected { residualFlags = 0x04; residual = produced - expected }
        else if produced < expected { residualFlags = 0x02; residual = expected - produced }
        if !r.read || r.transferLength != nil { data = ByteBuffer() }
        if data.readableBytes > expected { data = data.getSlice(at: data.readerIndex, length: expected)! }

        let collapse = result.status == .good && result.sense == nil && data.readableBytes > 0
        var dataSN: UInt32 = 0
        var offset = 0
        let total = data.readableBytes
        let segmentMax = max(512, params.sendDataSegmentMax)
        while offset < total {
            let n = min(segmentMax, total - offset)
            let last = offset + n == total
            var pdu = ISCSIPDU(opcode: .dataIn, final: false)
            let burstEnd = (offset + n) % params.maxBurstLength == 0
            pdu.flags = (last || burstEnd ? 0x80 : 0)
            pdu.lun = 0
            pdu.itt = itt
            pdu.set32(20, ISCSILimits.reservedTag)
            if last && collapse {
                pdu.flags |= 0x01 | residualFlags
                pdu.bhs[3] = result.status.rawValue
                pdu.set32(24, statSN); statSN &+= 1
                pdu.set32(44, UInt32(residual))
            }
            pdu.set32(28, expCmdSN)
            pdu.set32(32, maxCmdSN)
            pdu.set32(36, dataSN)
            pdu.set32(40, UInt32(offset))
            pdu.data = data.getSlice(at: data.readerIndex + offset, length: n)!
            actions.append(.send(pdu))
            dataSN &+= 1
            offset += n
        }
        if collapse { return actions }
        var resp = ISCSIPDU(opcode: .scsiResponse)
        resp.flags = 0x80 | residualFlags
        resp.bhs[2] = 0x00
        resp.bhs[3] = result.status.rawValue
        resp.itt = itt
        resp.set32(24, statSN); statSN &+= 1
        resp.set32(28, expCmdSN)
        resp.set32(32, maxCmdSN)
        resp.set32(36, r.read ? dataSN : r.r2ts)
        resp.set32(44, UInt32(residual))
        if let sense = result.sense {
            let bytes = sense.fixedFormat
            var d = ByteBuffer()
            d.writeInteger(UInt16(bytes.count))
            d.writeBytes(bytes)
            resp.data = d
        }
        actions.append(.send(resp))
        return actions
    }

    // MARK: - NOP, text, logout

    private mutating func nopOut(_ pdu: ISCSIPDU) -> [Action] {
        if pdu.itt == ISCSILimits.reservedTag {
            // The answer to our NOP-In ping; it must be immediate and carries no CmdSN.
            nopInOutstanding.remove(pdu.u32(20))
            return []
        }
        guard acceptCmdSN(pdu) else { return [] }
        var nop = ISCSIPDU(opcode: .nopIn)
        nop.lun = pdu.lun
        nop.itt = pdu.itt
        nop.set32(20, ISCSILimits.reservedTag)
        nop.set32(24, statSN); statSN &+= 1
        nop.set32(28, expCmdSN)
        nop.set32(32, maxCmdSN)
        let n = min(pdu.data.readableBytes, params.sendDataSegmentMax)
        nop.data = pdu.data.getSlice(at: pdu.data.readerIndex, length: n)!
        return [.send(nop)]
    }

    /// A target-originated ping (NOP-In with a TTT, ITT reserved); nil when too many are unanswered.
    public mutating func ping() -> ISCSIPDU? {
        guard nopInOutstanding.count < 3 else { return nil }
        let ttt = nextTTT
        nextTTT = nextTTT &+ 1 == ISCSILimits.reservedTag ? 1 : nextTTT &+ 1
        nopInOutstanding.insert(ttt)
        var nop = ISCSIPDU(opcode: .nopIn)
        nop.itt = ISCSILimits.reservedTag
        nop.set32(20, ttt)
        nop.set32(24, statSN)
        nop.set32(28, expCmdSN)
        nop.set32(32, maxCmdSN)
        return nop
    }

    private mutating func text(_ pdu: ISCSIPDU) -> [Action] {
        guard acceptCmdSN(pdu) else { return [] }
        let ttt = pdu.u32(20)
        if ttt != ISCSILimits.reservedTag {
            // The initiator asks for the next part of a long answer.
            guard let rest = textContinuations.removeValue(forKey: ttt) else { return [reject(pdu, Self.rejectInvalidPDUField)] }
            return [.send(textResponse(pdu.itt, rest))]
        }
        let bytes = pdu.data.getBytes(at: pdu.data.readerIndex, length: pdu.data.readableBytes) ?? []
        guard let pairs = try? ISCSIText.parse(bytes) else { return [reject(pdu, Self.rejectProtocolError)] }
        var answers: [(String, String)] = []
        var listing: Bool?
        for (key, value) in pairs {
            if key == "SendTargets" {
                listing = value == "All"
                if value != "All" && value != "" && value != session.targetName { listing = nil; answers.append((key, "Reject")) }
            } else {
                answers.append((key, "NotUnderstood"))
            }
        }
        if let all = listing { return [.listTargets(itt: pdu.itt, all: all && session.sessionType == .discovery)] }
        return [.send(textResponse(pdu.itt, ISCSIText.encode(answers)))]
    }

    /// The SendTargets answer for the given target names.
    public mutating func sendTargets(itt: UInt32, targets: [String], address: String) -> [Action] {
        var pairs: [(String, String)] = []
        for t in targets { pairs += [("TargetName", t), ("TargetAddress", "\(address),1")] }
        return [.send(textResponse(itt, ISCSIText.encode(pairs)))]
    }

    private mutating func textResponse(_ itt: UInt32, _ text: ByteBuffer) -> ISCSIPDU {
        var pdu = ISCSIPDU(opcode: .textResponse)
        pdu.itt = itt
        var body = text
        let limit = params.sendDataSegmentMax
        if body.readableBytes > limit {
            let ttt = nextTTT
            nextTTT = nextTTT &+ 1 == ISCSILimits.reservedTag ? 1 : nextTTT &+ 1
            textContinuations = [ttt: body.getSlice(at: body.readerIndex + limit, length: body.readableBytes - limit)!]
            body = body.getSlice(at: body.readerIndex, length: limit)!
            pdu.flags = 0x40              // C: more follows
            pdu.set32(20, ttt)
        } else {
            pdu.set32(20, ISCSILimits.reservedTag)
        }
        pdu.set32(24, statSN); statSN &+= 1
        pdu.set32(28, expCmdSN)
        pdu.set32(32, maxCmdSN)
        pdu.data = body
        return pdu
    }

    private mutating func logout(_ pdu: ISCSIPDU) -> [Action] {
        _ = acceptCmdSN(pdu)
        let reason = pdu.flags & 0x7f
        var resp = ISCSIPDU(opcode: .logoutResponse)
        resp.itt = pdu.itt
        switch reason {
        case 0: resp.bhs[2] = 0
        case 1: resp.bhs[2] = 0               // one connection per session: the same as closing it
        default: resp.bhs[2] = 2              // connection recovery is not supported
        }
        resp.set32(24, statSN); statSN &+= 1
        resp.set32(28, expCmdSN)
        resp.set32(32, maxCmdSN)
        if reason > 1 { return [.send(resp)] }
        loggingOut = true
        return [.logout(resp)]
    }

    // MARK: - Task management

    private mutating func taskManagement(_ pdu: ISCSIPDU) -> [Action] {
        _ = acceptCmdSN(pdu)
        let function = pdu.flags & 0x7f
        var resp = ISCSIPDU(opcode: .taskManagementResponse)
        resp.itt = pdu.itt
        var actions: [Action] = []
        var waiting: Set<UInt32> = []
        switch function {
        case 1:   // ABORT TASK
            let ref = pdu.u32(20)
            if let w = writes.removeValue(forKey: ref) {
                solicitedBytes -= w.solicited
                resp.bhs[2] = 0
            } else if running[ref] != nil {
                running[ref]!.aborted = true
                waiting.insert(ref)
                resp.bhs[2] = 0
            } else {
                resp.bhs[2] = 0                      // already finished: the abort has nothing to do
            }
        case 2, 4, 5, 6, 7:   // ABORT TASK SET, CLEAR TASK SET, LUN RESET, TARGET WARM/COLD RESET
            if function <= 5 && pdu.lun != 0 { resp.bhs[2] = 2; break }
            for w in writes.values { solicitedBytes -= w.solicited }
            writes = [:]
            for itt in running.keys { running[itt]!.aborted = true; waiting.insert(itt) }
            if function >= 5 { actions.append(.resetLogicalUnit) }
            resp.bhs[2] = 0
        case 8:
            resp.bhs[2] = 4                          // task reassignment needs ERL 2
        default:
            resp.bhs[2] = 5                          // function not supported (CLEAR ACA, others)
        }
        if waiting.isEmpty {
            actions.append(.send(stampTMF(resp)))
            if function == 7 { actions.append(.close(reason: "TARGET COLD RESET")) }
        } else {
            tmfs.append(PendingTMF(response: resp, waiting: waiting))
        }
        return actions
    }

    private mutating func stampTMF(_ pdu: ISCSIPDU) -> ISCSIPDU {
        var r = pdu
        r.set32(24, statSN); statSN &+= 1
        r.set32(28, expCmdSN)
        r.set32(32, maxCmdSN)
        return r
    }

    private mutating func finishTMFs(after itt: UInt32) -> [Action] {
        var actions: [Action] = []
        for i in tmfs.indices { tmfs[i].waiting.remove(itt) }
        while let i = tmfs.firstIndex(where: { $0.waiting.isEmpty }) {
            let tmf = tmfs.remove(at: i)
            actions.append(.send(stampTMF(tmf.response)))
        }
        return actions
    }

    // MARK: - Reject

    public mutating func reject(_ pdu: ISCSIPDU, _ reason: UInt8) -> Action {
        var r = ISCSIPDU(opcode: .reject)
        r.bhs[2] = reason
        r.itt = ISCSILimits.reservedTag
        r.set32(24, statSN); statSN &+= 1
        r.set32(28, expCmdSN)
        r.set32(32, maxCmdSN)
        var header = ByteBuffer()
        header.writeBytes(pdu.bhs)
        r.data = header
        return .send(r)
    }

    /// The rejected header of a PDU whose data digest failed.
    public mutating func rejectDataDigest(_ bhs: [UInt8]) -> Action {
        reject(ISCSIPDU(bhs: bhs), Self.rejectDataDigest)
    }
}
