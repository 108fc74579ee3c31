// The handshake and option haggling phase as a state machine: it takes decoded client
// messages and the results of export lookups, and returns what to send and do. Fixed
// newstyle only; oldstyle and non-fixed newstyle clients are disconnected.
//
// TLS modes: `off` refuses STARTTLS (ERR_POLICY); `on` offers it and allows everything
// without it; `require` answers every option but STARTTLS and ABORT with ERR_TLS_REQD and
// closes on EXPORT_NAME until TLS is up (the spec's FORCEDTLS).
import NIOCore

public enum NBDTLSMode: String, Sendable, CaseIterable {
    case off, on, require
}

/// What the transmission phase needs from the negotiation.
public struct NBDTransmissionConfig: Equatable, Sendable {
    public var export: NBDExportDescription
    public var flags: UInt16
    public var structuredReplies: Bool
    /// Context id of `base:allocation` when it was selected for this export.
    public var allocationContextID: UInt32?
    public init(export: NBDExportDescription, flags: UInt16, structuredReplies: Bool, allocationContextID: UInt32?) {
        self.export = export; self.flags = flags; self.structuredReplies = structuredReplies
        self.allocationContextID = allocationContextID
    }
}

public struct OptionPhase: Sendable {
    public enum Action: Equatable {
        /// Send these bytes and go on reading options.
        case send(ByteBuffer)
        /// Send these bytes (possibly none), then close the connection.
        case sendAndClose(ByteBuffer, reason: String)
        /// Send the ACK, then start TLS as the server, then call `tlsStarted()`.
        case startTLS(ByteBuffer)
        /// Ask the provider for the exports, then call `listed(_:)`.
        case list
        /// Look up (INFO) or open (GO, EXPORT_NAME) the export, then call `resolved(_:)`.
        case resolve(Resolution)
        /// Send these bytes, then switch to the transmission phase.
        case enterTransmission(ByteBuffer, NBDTransmissionConfig)
    }

    public struct Resolution: Equatable, Sendable {
        public enum Kind: Equatable, Sendable { case info, go, exportName }
        public var kind: Kind
        public var option: UInt32
        public var name: String
        public var infos: [UInt16]
        /// True when the export must be opened for I/O (GO, EXPORT_NAME), not only described.
        public var opens: Bool { kind != .info }
    }

    enum State: Equatable { case awaitingClientFlags, haggling, waiting, done }

    public let tlsMode: NBDTLSMode
    private(set) var state: State = .awaitingClientFlags
    public private(set) var tlsActive = false
    private var noZeroes = false
    private var structuredReplies = false
    /// The export `base:allocation` was selected for, with its context id.
    private var allocationContext: (export: String, id: UInt32)?

    public static let allocationContextID: UInt32 = 1

    public init(tlsMode: NBDTLSMode) { self.tlsMode = tlsMode }

    /// The greeting the server sends first.
    public static func greeting() -> ByteBuffer {
        var b = ByteBuffer()
        NBDEncoder.greeting(into: &b)
        return b
    }

    public mutating func receive(_ message: NBDInbound) -> Action {
        switch (state, message) {
        case (.awaitingClientFlags, .clientFlags(let flags)):
            guard flags & ~NBDHandshakeFlag.clientKnown == 0 else {
                return close("unknown client flags 0x\(String(flags, radix: 16))")
            }
            guard flags & NBDHandshakeFlag.clientFixedNewstyle != 0 else {
                return close("client does not speak fixed newstyle negotiation")
            }
            noZeroes = flags & NBDHandshakeFlag.clientNoZeroes != 0
            state = .haggling
            return .send(ByteBuffer())
        case (.haggling, .option(let request)):
            return option(request)
        default:
            preconditionFailure("option phase fed \(message) in state \(state)")
        }
    }

    private mutating func option(_ request: NBDOptionRequest) -> Action {
        let code = request.option
        let option = NBDOption(rawValue: code)
        if tlsMode == .require && !tlsActive {
            switch option {
            case .startTLS?, .abort?: break
            case .exportName?: return close("EXPORT_NAME before STARTTLS on a server that requires TLS")
            default: return error(code, NBDReplyType.errTLSRequired, "this server requires TLS: send STARTTLS first")
            }
        }
        switch option {
        case .abort?:
            return .sendAndClose(reply(code, NBDReplyType.ack), reason: "client aborted the negotiation")
        case .exportName?:
            guard let name = request.data.getString(at: request.data.readerIndex, length: request.data.readableBytes),
                  request.data.readableBytes <= NBDLimits.stringMax else {
                return close("EXPORT_NAME with an invalid name")
            }
            state = .waiting
            return .resolve(Resolution(kind: .exportName, option: code, name: name, infos: []))
        case .list?:
            guard request.data.readableBytes == 0 else { return error(code, NBDReplyType.errInvalid, "LIST takes no data") }
            state = .waiting
            return .list
        case .startTLS?:
            return startTLS(request)
        case .info?, .go?:
            do {
                let r = try NBDOptionParser.info(request.data)
                state = .waiting
                return .resolve(Resolution(kind: option == .go ? .go : .info, option: code, name: r.name, infos: r.infos))
            } catch let e as NBDOptionDataError {
                return error(code, NBDReplyType.errInvalid, e.message)
            } catch {
                preconditionFailure("unexpected parser error \(error)")
            }
        case .structuredReply?:
            guard request.data.readableBytes == 0 else {
                return error(code, NBDReplyType.errInvalid, "STRUCTURED_REPLY takes no data")
            }
            guard !structuredReplies else {
                return error(code, NBDReplyType.errInvalid, "structured replies are already negotiated")
            }
            structuredReplies = true
            return .send(reply(code, NBDReplyType.ack))
        case .listMetaContext?, .setMetaContext?:
            return metaContext(code, set: option == .setMetaContext, data: request.data)
        case .peekExport?, .extendedHeaders?, nil:
            return error(code, NBDReplyType.errUnsup, "option \(code) is not supported")
        }
    }

    private mutating func startTLS(_ request: NBDOptionRequest) -> Action {
        let code = NBDOption.startTLS.rawValue
        guard tlsMode != .off else { return error(code, NBDReplyType.errPolicy, "TLS is not enabled on this server") }
        guard !tlsActive else { return error(code, NBDReplyType.errInvalid, "TLS is already active") }
        guard request.data.readableBytes == 0 else { return error(code, NBDReplyType.errInvalid, "STARTTLS takes no data") }
        return .startTLS(reply(code, NBDReplyType.ack))
    }

    /// TLS is up: nothing negotiated before it survives (the spec's rule).
    public mutating func tlsStarted() {
        tlsActive = true
        structuredReplies = false
        allocationContext = nil
    }

    private mutating func metaContext(_ code: UInt32, set: Bool, data: ByteBuffer) -> Action {
        if set { allocationContext = nil }
        guard structuredReplies else {
            return error(code, NBDReplyType.errInvalid, "negotiate structured replies before metadata contexts")
        }
        let request: NBDMetaContextRequest
        do {
            request = try NBDOptionParser.metaContext(data)
        } catch let e as NBDOptionDataError {
            return error(code, NBDReplyType.errInvalid, e.message)
        } catch {
            preconditionFailure("unexpected parser error \(error)")
        }
        guard request.queries.allSatisfy({ $0.contains(":") }) else {
            return error(code, NBDReplyType.errInvalid, "a metadata context query must start with a namespace and a colon")
        }
        // LIST with no queries lists everything; "base:" is the namespace wildcard. SET
        // selects exact names only.
        let matches = set
            ? request.queries.contains(nbdBaseAllocation)
            : request.queries.isEmpty || request.queries.contains { $0 == nbdBaseAllocation || $0 == "base:" }
        var out = ByteBuffer()
        if matches {
            let id = set ? Self.allocationContextID : 0
            NBDEncoder.optionReply(option: code, type: NBDReplyType.metaContext,
                                   data: NBDEncoder.metaContext(id: id, name: nbdBaseAllocation), into: &out)
            if set { allocationContext = (request.name, id) }
        }
        NBDEncoder.optionReply(option: code, type: NBDReplyType.ack, into: &out)
        return .send(out)
    }

    /// The provider's answer to `.list`.
    public mutating func listed(_ result: Result<[NBDExportDescription], Error>) -> Action {
        precondition(state == .waiting, "listed() without a pending list")
        state = .haggling
        let code = NBDOption.list.rawValue
        switch result {
        case .success(let exports):
            var out = ByteBuffer()
            for e in exports {
                NBDEncoder.optionReply(option: code, type: NBDReplyType.server,
                                       data: NBDEncoder.serverEntry(name: e.name, description: e.description), into: &out)
            }
            NBDEncoder.optionReply(option: code, type: NBDReplyType.ack, into: &out)
            return .send(out)
        case .failure(let e):
            return error(code, NBDReplyType.errShutdown, "cannot list volumes: \(e)")
        }
    }

    /// The provider's answer to `.resolve`.
    public mutating func resolved(_ r: Resolution, _ result: Result<NBDExportDescription, Error>) -> Action {
        precondition(state == .waiting, "resolved() without a pending resolution")
        state = .haggling
        let export: NBDExportDescription
        switch result {
        case .success(let e):
            export = e
        case .failure(let e):
            if r.kind == .exportName { return close("export '\(r.name)' cannot be used: \(e)") }
            switch e {
            case NBDExportError.refused(let m): return error(r.option, NBDReplyType.errPolicy, m)
            case NBDExportError.unknown(let m), NBDExportError.unavailable(let m): return error(r.option, NBDReplyType.errUnknown, m)
            default: return error(r.option, NBDReplyType.errUnknown, "export '\(r.name)': \(e)")
            }
        }
        let flags = Self.transmissionFlags(export, structuredReplies: structuredReplies)
        let config = NBDTransmissionConfig(
            export: export, flags: flags, structuredReplies: structuredReplies,
            allocationContextID: allocationContext?.export == r.name ? allocationContext?.id : nil)
        var out = ByteBuffer()
        if r.kind == .exportName {
            NBDEncoder.exportNameReply(size: export.sizeBytes, flags: flags, zeroes: !noZeroes, into: &out)
            state = .done
            return .enterTransmission(out, config)
        }
        func info(_ data: ByteBuffer) { NBDEncoder.optionReply(option: r.option, type: NBDReplyType.info, data: data, into: &out) }
        info(NBDEncoder.infoExport(size: export.sizeBytes, flags: flags))
        if r.infos.contains(NBDInfoType.name.rawValue) { info(NBDEncoder.infoString(.name, export.name)) }
        if r.infos.contains(NBDInfoType.description.rawValue) { info(NBDEncoder.infoString(.description, export.description)) }
        info(NBDEncoder.infoBlockSize(minimum: NBDLimits.blockSizeMin, preferred: NBDLimits.blockSizePreferred,
                                      maximum: UInt32(NBDLimits.payloadMax)))
        NBDEncoder.optionReply(option: r.option, type: NBDReplyType.ack, into: &out)
        guard r.kind == .go else { return .send(out) }
        state = .done
        return .enterTransmission(out, config)
    }

    public static func transmissionFlags(_ export: NBDExportDescription, structuredReplies: Bool) -> UInt16 {
        var flags = NBDTransmissionFlag.hasFlags | NBDTransmissionFlag.sendFlush | NBDTransmissionFlag.canMultiConn
            | NBDTransmissionFlag.sendCache
        if export.readOnly {
            flags |= NBDTransmissionFlag.readOnly
        } else {
            flags |= NBDTransmissionFlag.sendFUA | NBDTransmissionFlag.sendTrim | NBDTransmissionFlag.sendWriteZeroes
                | NBDTransmissionFlag.sendFastZero
        }
        if structuredReplies { flags |= NBDTransmissionFlag.sendDF }
        return flags
    }

    // MARK: - Helpers

    private func reply(_ option: UInt32, _ type: UInt32) -> ByteBuffer {
        var b = ByteBuffer()
        NBDEncoder.optionReply(option: option, type: type, into: &b)
        return b
    }

    private func error(_ option: UInt32, _ type: UInt32, _ message: String) -> Action {
        var b = ByteBuffer()
        NBDEncoder.optionError(option: option, type: type, message: message, into: &b)
        return .send(b)
    }

    private mutating func close(_ reason: String) -> Action {
        state = .done
        return .sendAndClose(ByteBuffer(), reason: reason)
    }
}
