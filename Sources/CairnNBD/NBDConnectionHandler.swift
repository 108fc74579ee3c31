// One NBD connection: feeds bytes to the decoder and the phase state machines and carries
// out what they return (send, look up or open an export, start TLS, run an operation on the
// device, close). All state lives on the channel's event loop; device calls run as tasks
// that prefer the loop as their executor (see runAndDeliver).
//
// Back-pressure: while an export lookup is pending, or the transmission phase is at its
// in-flight limits, no further request is decoded and the channel is not read.
import CairnClient
import Logging
import NIOCore
import NIOSSL

final class NBDConnectionHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    enum Phase {
        case options(OptionPhase)
        case transmission(TransmissionPhase, NBDDevice)
        case closed
    }

    private let exports: NBDExportProvider
    private let tls: NIOSSLContext?
    private let logger: Logger
    private var phase: Phase
    private var decoder = NBDDecoder(mode: .clientFlags)
    private var received = ReceiveBuffer()
    /// An export lookup or open is pending: decode nothing until it answers.
    private var waiting = false
    private var readPending = false
    private var flushScheduled = false
    private var channelOpen = true
    /// The export this connection holds open (released once nothing is in flight on it).
    private var heldExport: String?

    init(exports: NBDExportProvider, tlsMode: NBDTLSMode, tls: NIOSSLContext?, logger: Logger) {
        precondition(tlsMode == .off || tls != nil, "TLS mode \(tlsMode) without a TLS context")
        self.exports = exports; self.tls = tls; self.logger = logger
        self.phase = .options(OptionPhase(tlsMode: tlsMode))
    }

    func channelActive(context: ChannelHandlerContext) {
        context.writeAndFlush(wrapOutboundOut(OptionPhase.greeting()), promise: nil)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        channelOpen = false
        finishIfIdle()
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        received.append(&bytes)
        process(context)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        logger.debug("connection error", metadata: ["error": "\(error)"])
        close(context, reason: "\(error)")
    }

    // MARK: - Back-pressure

    func read(context: ChannelHandlerContext) {
        if acceptsInput { context.read() } else { readPending = true }
    }

    private var acceptsInput: Bool {
        switch phase {
        case .options: return !waiting
        case .transmission(let t, _): return t.acceptsRequests
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
            let message: NBDInbound?
            do {
                message = try decoder.decode(&received.bytes)
            } catch {
                logger.notice("closing connection on malformed input", metadata: ["error": "\(error)"])
                close(context, reason: "\(error)")
                return
            }
            guard let message else { break }
            decoded = true
            switch phase {
            case .options(var machine):
                let action = machine.receive(message)
                phase = .options(machine)
                perform(action, context)
            case .transmission(var machine, let device):
                let decision = machine.receive(message)
                phase = .transmission(machine, device)
                perform(decision, device: device, context)
            case .closed:
                return
            }
        }
        received.passEnded(decoded: decoded, allocator: context.channel.allocator)
    }

    // MARK: - Option phase actions

    private func perform(_ action: OptionPhase.Action, _ context: ChannelHandlerContext) {
        switch action {
        case .send(let bytes):
            if bytes.readableBytes > 0 { context.writeAndFlush(wrapOutboundOut(bytes), promise: nil) }
            if decoder.mode == .clientFlags { decoder.mode = .options }
        case .sendAndClose(let bytes, let reason):
            logger.debug("closing connection", metadata: ["reason": "\(reason)"])
            let done = context.writeAndFlush(wrapOutboundOut(bytes))
            phase = .closed
            done.whenComplete { _ in context.close(promise: nil) }
        case .startTLS(let ack):
            startTLS(ack, context)
        case .list:
            waiting = true
            let exports = self.exports
            answer(context, { try await exports.list() }) { handler, context, result in
                handler.optionAnswer(context) { $0.listed(result) }
            }
        case .resolve(let r):
            waiting = true
            let exports = self.exports
            answer(context, { () async throws -> (NBDExportDescription, NBDDevice?) in
                if r.opens { return try await exports.open(r.name) }
                return (try await exports.describe(r.name), nil)
            }) { handler, context, result in
                handler.resolved(r, result, context)
            }
        case .enterTransmission:
            preconditionFailure("enterTransmission comes from resolved()")
        }
    }

    private func resolved(_ r: OptionPhase.Resolution, _ result: Result<(NBDExportDescription, NBDDevice?), Error>,
                          _ context: ChannelHandlerContext) {
        if case .success((_, let device?)) = result {
            heldExport = r.name
            // The connection ended while the export was opening.
            guard channelOpen, case .options = phase else { waiting = false; finishIfIdle(); return }
            optionAnswer(context) { machine in
                let action = machine.resolved(r, result.map(\.0))
                if case .enterTransmission(let bytes, let config) = action {
                    context.writeAndFlush(self.wrapOutboundOut(bytes), promise: nil)
                    self.phase = .transmission(TransmissionPhase(config: config), device)
                    self.decoder.mode = .transmission
                    self.logger.debug("transmission phase", metadata: ["export": "\(r.name)", "flags": "\(config.flags)"])
                    return nil
                }
                return action
            }
            return
        }
        if case .failure(let e) = result {
            logger.notice("export refused", metadata: ["export": "\(r.name)", "error": "\(e)"])
        }
        optionAnswer(context) { $0.resolved(r, result.map(\.0)) }
    }

    /// Runs the state machine's answer to an asynchronous result and carries it out.
    private func optionAnswer(_ context: ChannelHandlerContext, _ body: (inout OptionPhase) -> OptionPhase.Action?) {
        waiting = false
        guard case .options(var machine) = phase else { return }
        let action = body(&machine)
        if case .options = phase { phase = .options(machine) }
        if let action { perform(action, context) }
        resume(context)
    }

    private func startTLS(_ ack: ByteBuffer, _ context: ChannelHandlerContext) {
        guard let tls, case .options(var machine) = phase else { preconditionFailure("STARTTLS accepted without TLS") }
        context.writeAndFlush(wrapOutboundOut(ack), promise: nil)
        guard received.bytes.readableBytes == 0 else {
            // The client sent more before our ACK: those bytes cannot be TLS records.
            return close(context, reason: "data after STARTTLS before its reply")
        }
        do {
            try context.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls), position: .first)
        } catch {
            return close(context, reason: "cannot start TLS: \(error)")
        }
        machine.tlsStarted()
        phase = .options(machine)
    }

    // MARK: - Transmission phase

    private func perform(_ decision: TransmissionPhase.Decision, device: NBDDevice, _ context: ChannelHandlerContext) {
        switch decision {
        case .reply(let reply):
            send(reply, context)
        case .disconnect:
            logger.debug("client disconnected (NBD_CMD_DISC)")
            finishIfIdle(context)
        case .execute(let cookie, let op):
            answer(context, { try await Self.run(op, on: device) }) { handler, context, result in
                handler.completed(cookie, op, result, context)
            }
        }
    }

    private static func run(_ op: NBDOperation, on device: NBDDevice) async throws -> NBDOutcome {
        switch op {
        case .read(let offset, let length, _): return .data(try await device.read(offset: offset, length: length))
        case .write(let offset, let data, let fua): try await device.write(offset: offset, data: data, fua: fua)
        case .flush: try await device.flush()
        case .trim(let offset, let length, _): try await device.trim(offset: offset, length: length)
        case .writeZeroes(let offset, let length, let mayTrim, _):
            try await device.writeZeroes(offset: offset, length: length, mayTrim: mayTrim)
        case .blockStatus(let offset, let length, _): return .extents(try await device.blockStatus(offset: offset, length: length))
        }
        return .done
    }

    private func completed(_ cookie: UInt64, _ op: NBDOperation, _ result: Result<NBDOutcome, Error>,
                           _ context: ChannelHandlerContext) {
        guard case .transmission(var machine, let device) = phase else { return }
        if case .failure(let e) = result {
            logger.warning("request failed", metadata: ["operation": "\(op.kind)", "error": "\(e)"])
        }
        let reply = machine.completed(cookie: cookie, op, result)
        phase = .transmission(machine, device)
        if channelOpen { send(reply, context) }
        if machine.disconnecting || !channelOpen { finishIfIdle(context) } else { resume(context) }
    }

    private func send(_ reply: NBDReply, _ context: ChannelHandlerContext) {
        context.write(wrapOutboundOut(reply.header), promise: nil)
        if let data = reply.data { context.write(wrapOutboundOut(data), promise: nil) }
        // Replies finishing in the same loop turn leave in one flush.
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

    /// Once nothing is in flight after DISC or a closed channel: close and release the export.
    private func finishIfIdle(_ context: ChannelHandlerContext? = nil) {
        if case .transmission(let machine, _) = phase, machine.inFlight > 0 { return }
        if let context, channelOpen {
            context.flush()
            context.close(promise: nil)
        }
        guard !channelOpen, !waiting, let name = heldExport else { return }
        heldExport = nil
        phase = .closed
        let exports = self.exports
        Task { await exports.release(name) }
    }

    private func close(_ context: ChannelHandlerContext, reason: String) {
        guard channelOpen else { return }
        logger.debug("closing connection", metadata: ["reason": "\(reason)"])
        if case .options = phase { phase = .closed }
        context.close(promise: nil)
    }

    /// Runs `work` as a task and delivers its result on the event loop.
    private func answer<T>(_ context: ChannelHandlerContext, _ work: @escaping @Sendable () async throws -> T,
                           _ deliver: @escaping (NBDConnectionHandler, ChannelHandlerContext, Result<T, Error>) -> Void) {
        runAndDeliver(self, context, work, deliver)
    }
}

extension NBDOperation {
    var kind: String {
        switch self {
        case .read: return "read"
        case .write: return "write"
        case .flush: return "flush"
        case .trim: return "trim"
        case .writeZeroes: return "write_zeroes"
        case .blockStatus: return "block_status"
        }
    }
}
