// One iSCSI connection: feeds bytes to the PDU decoder and the phase state machines and
// carries out what they return (send PDUs, open a target, run SCSI commands, list targets,
// close). All state lives on the channel's event loop; SCSI commands run as tasks whose
// results hop back to the loop.
//
// Back-pressure: while a target is being opened, or the full feature phase has as many
// commands in flight as its window allows, nothing more is decoded and the channel is not read.
import CairnClient
import CairnNBD
import Logging
import NIOCore

final class ISCSIConnectionHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    enum Phase {
        case login(LoginPhase)
        case fullFeature(FullFeaturePhase, SCSILogicalUnit?)
        case closed
    }

    private let server: ISCSIServerContext
    private let logger: Logger
    private var phase: Phase
    private var decoder = ISCSIPDUDecoder()
    private var digests = ISCSIDigests()
    private var received = ReceiveBuffer()
    private var waiting = false
    private var readPending = false
    private var flushScheduled = false
    private var channelOpen = true
    private var heldExport: String?
    private var nexus: ITNexus?
    private var pendingLogout: ISCSIPDU?
    private var pingTask: Scheduled<Void>?
    /// A target-originated NOP-In when the connection was idle this long.
    static let pingInterval = TimeAmount.seconds(30)
    /// How long a volume stays open after its last session ends.
    static let releaseDelay = Duration.seconds(2)

    init(server: ISCSIServerContext, tsih: UInt16, logger: Logger) {
        self.server = server; self.logger = logger
        let auth = server.auth
        phase = .login(LoginPhase(auth: auth, newTSIH: tsih, random: {
            var g = SystemRandomNumberGenerator()
            return (0..<17).map { _ in UInt8.random(in: 0...255, using: &g) }
        }))
    }

    func channelInactive(context: ChannelHandlerContext) {
        channelOpen = false
        pingTask?.cancel()
        finishIfIdle()
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        received.append(&bytes)
        process(context)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        close(context, reason: "\(error)")
    }

    func read(context: ChannelHandlerContext) {
        if acceptsInput { context.read() } else { readPending = true }
    }

    private var acceptsInput: Bool {
        switch phase {
        case .login: return !waiting
        // Writes waiting for their Data-Out do not count: their data must still be read.
        case .fullFeature(let f, _): return !waiting && f.inFlight - f.pendingWrites < Int(ISCSILimits.queueDepth) * 2
        case .closed: return false
        }
    }

    private func resume(_ context: ChannelHandlerContext) {
        process(context)
        if readPending && acceptsInput {
            readPending = false
            context.read()
        }
    }

    // MARK: - Input

    private func process(_ context: ChannelHandlerContext) {
        var decoded = false
        while channelOpen && acceptsInput {
            let pdu: ISCSIPDU?
            do {
                pdu = try decoder.decode(&received.bytes)
            } catch ISCSIDecodeError.dataDigest(let bhs) {
                // The header is sound: reject the PDU and carry on (a lost Data-Out then
                // fails its command at ERL 0 when the sequence check trips).
                if case .fullFeature(var f, let unit) = phase {
                    let action = f.rejectDataDigest(bhs)
                    phase = .fullFeature(f, unit)
                    perform([action], context)
                    continue
                }
                return close(context, reason: "data digest error during login")
            } catch {
                logger.notice("closing connection on malformed input", metadata: ["error": "\(error)"])
                return close(context, reason: "\(error)")
            }
            guard let pdu else { break }
            decoded = true
            switch phase {
            case .login(var machine):
                let action = machine.receive(pdu)
                phase = .login(machine)
                perform(action, context)
            case .fullFeature(var machine, let unit):
                let actions = machine.receive(pdu)
                phase = .fullFeature(machine, unit)
                perform(actions, context)
            case .closed:
                return
            }
        }
        received.passEnded(decoded: decoded, allocator: context.channel.allocator)
    }

    // MARK: - Login

    private func perform(_ action: LoginPhase.Action, _ context: ChannelHandlerContext) {
        switch action {
        case .send(let pdu):
            send(pdu, context)
        case .fail(let pdu, let reason):
            logger.notice("login refused", metadata: ["reason": "\(reason)"])
            send(pdu, context)
            phase = .closed
            context.flush()
            context.close(promise: nil)
        case .close(let reason):
            close(context, reason: reason)
        case .complete(let pdu, let result):
            guard result.sessionType == .normal, let volume = result.volume, let target = result.targetName else {
                return enterFullFeature(pdu, result, unit: nil, context)
            }
            waiting = true
            let exports = server.exports
            let registry = server.reservations
            answer(context, { try await exports.open(volume) }) { handler, context, opened in
                handler.waiting = false
                switch opened {
                case .success(let (export, device)):
                    handler.heldExport = volume
                    guard handler.channelOpen else { return handler.finishIfIdle() }
                    let unit = SCSILogicalUnit(name: volume, targetName: target, device: device, sizeBytes: export.sizeBytes,
                                               readOnly: export.readOnly, reservations: registry.reservations(for: volume))
                    handler.enterFullFeature(pdu, result, unit: unit, context)
                case .failure(let error):
                    var refusal = pdu
                    refusal.flags = pdu.flags & 0x0c       // T=0, NSG=0, same CSG
                    refusal.set16(14, 0)
                    let notFound = (error as? NBDExportError).map { if case .unknown = $0 { return true } else { return false } } ?? false
                    refusal.set16(36, notFound ? LoginPhase.statusNotFound : LoginPhase.statusTargetError)
                    handler.logger.notice("login refused", metadata: ["target": "\(target)", "error": "\(error)"])
                    handler.send(refusal, context)
                    handler.phase = .closed
                    context.flush()
                    context.close(promise: nil)
                }
                handler.resume(context)
            }
        }
    }

    private func enterFullFeature(_ pdu: ISCSIPDU, _ result: ISCSILoginResult, unit: SCSILogicalUnit?, _ context: ChannelHandlerContext) {
        send(pdu, context)
        // Digests and the data segment limit apply from the first PDU after the login.
        digests = ISCSIDigests(header: result.parameters.headerDigest, data: result.parameters.dataDigest)
        decoder.digests = digests
        decoder.dataSegmentMax = ISCSILimits.recvDataSegmentMax
        nexus = ITNexus(initiator: result.initiatorName, isid: result.isid)
        phase = .fullFeature(FullFeaturePhase(session: result, blockSize: SCSILogicalUnit.blockSize), unit)
        logger.info("session started", metadata: [
            "initiator": "\(result.initiatorName)", "target": "\(result.targetName ?? "discovery")",
            "headerDigest": "\(digests.header)", "dataDigest": "\(digests.data)"])
        schedulePing(context)
    }

    private func schedulePing(_ context: ChannelHandlerContext) {
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        pingTask = context.eventLoop.scheduleTask(in: Self.pingInterval) {
            let (handler, context) = bound.value
            guard handler.channelOpen, case .fullFeature(var f, let unit) = handler.phase else { return }
            guard let ping = f.ping() else { return handler.close(context, reason: "NOP-In pings unanswered") }
            handler.phase = .fullFeature(f, unit)
            handler.send(ping, context)
            handler.schedulePing(context)
        }
    }

    // MARK: - Full feature phase

    private func perform(_ actions: [FullFeaturePhase.Action], _ context: ChannelHandlerContext) {
        for action in actions {
            switch action {
            case .send(let pdu):
                send(pdu, context)
            case .execute(let task):
                execute(task, context)
            case .listTargets(let itt, let all):
                listTargets(itt, all: all, context)
            case .resetLogicalUnit:
                if case .fullFeature(_, let unit?) = phase { unit.reservations.reset() }
            case .logout(let pdu):
                pendingLogout = pdu
                finishLogoutIfIdle(context)
            case .close(let reason):
                close(context, reason: reason)
                return
            }
        }
    }

    private func execute(_ task: ISCSITask, _ context: ChannelHandlerContext) {
        guard case .fullFeature(_, let unit) = phase, let unit, let nexus else { return }
        let cdb = task.cdb
        if task.lun != 0 && cdb.first != SCSIOpcode.reportLUNs {
            // Only LUN 0 exists: INQUIRY says "no device here", everything else is refused.
            let result: SCSIResult = cdb.first == SCSIOpcode.inquiry
                ? .good([0x7f] + [UInt8](repeating: 0, count: 35), allocationLength: Int(cdb[3]) << 8 | Int(cdb[4]))
                : .check(.logicalUnitNotSupported)
            return completed(task.itt, result, context)
        }
        answer(context, { await unit.execute(cdb, dataOut: task.dataOut, nexus: nexus) }) { handler, context, result in
            guard case .success(let r) = result else { return }
            handler.completed(task.itt, r, context)
        }
    }

    private func completed(_ itt: UInt32, _ result: SCSIResult, _ context: ChannelHandlerContext) {
        guard case .fullFeature(var f, let unit) = phase else { return finishIfIdle() }
        let actions = f.completed(itt, result)
        phase = .fullFeature(f, unit)
        if channelOpen { perform(actions, context) }
        if !channelOpen { return finishIfIdle() }
        finishLogoutIfIdle(context)
        resume(context)
    }

    private func listTargets(_ itt: UInt32, all: Bool, _ context: ChannelHandlerContext) {
        guard case .fullFeature(let f, _) = phase else { return }
        let own = f.session.targetName
        let exports = server.exports
        let address = context.channel.localAddress.map { a -> String in
            let ip = a.ipAddress ?? "127.0.0.1"
            return (ip.contains(":") ? "[\(ip)]" : ip) + ":\(a.port ?? 3260)"
        } ?? "127.0.0.1:3260"
        waiting = true
        answer(context, { () async throws -> [String] in
            if !all, let own { return [own] }
            return try await exports.list().map { iscsiTargetName(export: $0.name) }.sorted()
        }) { handler, context, result in
            handler.waiting = false
            guard case .fullFeature(var f, let unit) = handler.phase else { return }
            let names: [String]
            switch result {
            case .success(let n): names = n.filter { handler.server.auth.initiatorAllowed(f.session.initiatorName, target: $0) }
            case .failure(let e):
                handler.logger.warning("cannot list targets", metadata: ["error": "\(e)"])
                names = []
            }
            let actions = f.sendTargets(itt: itt, targets: names, address: address)
            handler.phase = .fullFeature(f, unit)
            handler.perform(actions, context)
            handler.resume(context)
        }
    }

    private func finishLogoutIfIdle(_ context: ChannelHandlerContext) {
        guard let pdu = pendingLogout, case .fullFeature(let f, let unit) = phase, f.inFlight == 0 else { return }
        pendingLogout = nil
        // The nexus ends with the logout: its RESERVE(6) is gone before the initiator hears so.
        if let unit, let nexus { unit.reservations.nexusLost(nexus) }
        send(pdu, context)
        context.flush()
        phase = .closed
        context.close(promise: nil)
    }

    private func send(_ pdu: ISCSIPDU, _ context: ChannelHandlerContext) {
        context.write(wrapOutboundOut(ISCSIPDUEncoder.encode(pdu, digests: digests)), promise: nil)
        guard !flushScheduled else { return }
        flushScheduled = true
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        context.eventLoop.execute {
            let (handler, context) = bound.value
            handler.flushScheduled = false
            context.flush()
        }
    }

    // MARK: - Ending

    /// Once the channel is closed and nothing runs: release the reservation nexus and the export.
    private func finishIfIdle() {
        guard !channelOpen, !waiting else { return }
        if case .fullFeature(let f, let unit) = phase {
            guard f.inFlight == 0 || f.inFlight == f.pendingWrites else { return }
            if let unit, let nexus { unit.reservations.nexusLost(nexus) }
        }
        phase = .closed
        guard let name = heldExport else { return }
        heldExport = nil
        let exports = server.exports
        // Initiators often log in again right away (a test tool, a path check): keeping the
        // volume open a moment spares them a detach and attach.
        Task {
            try? await Task.sleep(for: ISCSIConnectionHandler.releaseDelay)
            await exports.release(name)
        }
    }

    private func close(_ context: ChannelHandlerContext, reason: String) {
        guard channelOpen else { return }
        logger.debug("closing connection", metadata: ["reason": "\(reason)"])
        if case .login = phase { phase = .closed }
        context.close(promise: nil)
    }

    /// Runs `work` as a task and delivers its result on the event loop.
    private func answer<T>(_ context: ChannelHandlerContext, _ work: @escaping @Sendable () async throws -> T,
                           _ deliver: @escaping (ISCSIConnectionHandler, ChannelHandlerContext, Result<T, Error>) -> Void) {
        runAndDeliver(self, context, work, deliver)
    }
}
