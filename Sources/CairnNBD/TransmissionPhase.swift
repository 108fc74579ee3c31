// The transmission phase as a state machine: it validates each request (command, flags,
// range, size, read-only), decides whether it is answered at once or run on the device,
// counts what is in flight against the connection's limits, and encodes the replies.
// Replies may leave in any order; each carries its request's cookie.
import CairnCore
import CairnClient
import NIOCore

/// Work for the device; the handler runs it and calls `completed`.
public enum NBDOperation: Equatable, Sendable {
    case read(offset: UInt64, length: Int, df: Bool)
    case write(offset: UInt64, data: ByteBuffer, fua: Bool)
    case flush
    case trim(offset: UInt64, length: Int, fua: Bool)
    case writeZeroes(offset: UInt64, length: Int, mayTrim: Bool, fua: Bool)
    case blockStatus(offset: UInt64, length: Int, reqOne: Bool)

    /// Payload bytes the operation holds in memory (counted against the in-flight byte limit).
    var payloadBytes: Int {
        switch self {
        case .read(_, let n, _): return n
        case .write(_, let d, _): return d.readableBytes
        default: return 0
        }
    }
}

/// What the device returned.
public enum NBDOutcome: Sendable {
    case done
    case data(ByteBuffer)
    case extents([Extent])
}

/// Encoded reply: a header and, for READ, the data after it (kept apart so it is not copied).
public struct NBDReply: Equatable, Sendable {
    public var header: ByteBuffer
    public var data: ByteBuffer?
}

public struct TransmissionPhase: Sendable {
    public enum Decision: Equatable {
        case reply(NBDReply)
        case execute(cookie: UInt64, NBDOperation)
        /// NBD_CMD_DISC: finish what is in flight, then close.
        case disconnect
    }

    public let config: NBDTransmissionConfig
    public private(set) var inFlight = 0
    public private(set) var inFlightBytes = 0
    public private(set) var disconnecting = false

    public init(config: NBDTransmissionConfig) { self.config = config }

    /// Whether another request may be decoded and started now.
    public var acceptsRequests: Bool {
        !disconnecting && (inFlight == 0 || (inFlight < NBDLimits.inFlightPerConnectionMax
            && inFlightBytes < NBDLimits.inFlightBytesPerConnectionMax))
    }

    public mutating func receive(_ message: NBDInbound) -> Decision {
        precondition(!disconnecting, "request decoded after NBD_CMD_DISC")
        switch message {
        case .request(let r):
            let decision = decide(r)
            if case .execute(_, let op) = decision {
                inFlight += 1
                inFlightBytes += op.payloadBytes
            }
            if case .disconnect = decision { disconnecting = true }
            return decision
        case .oversizedWrite(let r):
            return .reply(error(r, .einval, "write of \(r.length) bytes is above the maximum block size \(NBDLimits.payloadMax)"))
        case .clientFlags, .option:
            preconditionFailure("option message in the transmission phase")
        }
    }

    private func decide(_ r: NBDRequest) -> Decision {
        guard let command = NBDCommand(rawValue: r.type) else {
            return .reply(error(r, .einval, "unknown command \(r.type)"))
        }
        if command == .disc { return .disconnect }
        let allowed = allowedFlags(command)
        guard r.flags & ~allowed == 0 else {
            return .reply(error(r, .einval, "flags 0x\(String(r.flags & ~allowed, radix: 16)) are not valid for \(command)"))
        }
        let writes = command == .write || command == .trim || command == .writeZeroes
        if writes && config.export.readOnly {
            return .reply(error(r, .eperm, "export '\(config.export.name)' is read-only"))
        }
        if command == .flush { return .execute(cookie: r.cookie, .flush) }
        if command == .read && r.length > NBDLimits.payloadMax {
            return .reply(error(r, .eoverflow, "read of \(r.length) bytes is above the maximum block size \(NBDLimits.payloadMax)"))
        }
        let size = config.export.sizeBytes
        guard r.offset <= size, UInt64(r.length) <= size - r.offset else {
            let e: NBDError = (command == .write || command == .writeZeroes) ? .enospc : .einval
            return .reply(error(r, e, "range \(r.offset)+\(r.length) is past the end of the export (\(size) bytes)"))
        }
        let fua = r.flags & NBDCommandFlag.fua != 0
        let length = Int(r.length)
        switch command {
        case .read:
            if length == 0 { return .reply(success(r)) }
            return .execute(cookie: r.cookie, .read(offset: r.offset, length: length, df: r.flags & NBDCommandFlag.df != 0))
        case .write:
            if length == 0 { return .reply(success(r)) }
            return .execute(cookie: r.cookie, .write(offset: r.offset, data: r.payload ?? ByteBuffer(), fua: fua))
        case .trim:
            if length == 0 { return .reply(success(r)) }
            return .execute(cookie: r.cookie, .trim(offset: r.offset, length: length, fua: fua))
        case .writeZeroes:
            let noHole = r.flags & NBDCommandFlag.noHole != 0
            if noHole && r.flags & NBDCommandFlag.fastZero != 0 {
                // Writing zeroes block by block is no faster than a WRITE: fail fast.
                return .reply(error(r, .enotsup, "zeroing without holes is not faster than writing"))
            }
            if length == 0 { return .reply(success(r)) }
            return .execute(cookie: r.cookie, .writeZeroes(offset: r.offset, length: length, mayTrim: !noHole, fua: fua))
        case .blockStatus:
            guard config.allocationContextID != nil else {
                return .reply(error(r, .einval, "BLOCK_STATUS needs the base:allocation metadata context"))
            }
            guard length > 0 else { return .reply(error(r, .einval, "BLOCK_STATUS of length 0")) }
            let span = Int(min(UInt64(length), NBDLimits.blockStatusSpanMax))
            return .execute(cookie: r.cookie, .blockStatus(offset: r.offset, length: span,
                                                           reqOne: r.flags & NBDCommandFlag.reqOne != 0))
        case .cache:
            // Every read goes to a replica; there is no cache to warm.
            return .reply(success(r))
        case .disc, .flush:
            preconditionFailure("handled above")
        }
    }

    private func allowedFlags(_ command: NBDCommand) -> UInt16 {
        // FUA is valid on every command once SEND_FUA is advertised; accepting it always is harmless.
        switch command {
        case .read: return NBDCommandFlag.fua | (config.structuredReplies ? NBDCommandFlag.df : 0)
        case .writeZeroes: return NBDCommandFlag.fua | NBDCommandFlag.noHole | NBDCommandFlag.fastZero
        case .blockStatus: return NBDCommandFlag.fua | NBDCommandFlag.reqOne
        default: return NBDCommandFlag.fua
        }
    }

    /// The device finished `operation`; returns the reply to send.
    public mutating func completed(cookie: UInt64, _ operation: NBDOperation, _ result: Result<NBDOutcome, Error>) -> NBDReply {
        precondition(inFlight > 0, "completion without a request in flight")
        inFlight -= 1
        inFlightBytes -= operation.payloadBytes
        let header = NBDRequest(flags: 0, type: 0, cookie: cookie, offset: 0, length: 0)
        switch result {
        case .failure(let e):
            return error(header, NBDError.from(e), "\(e)")
        case .success(.data(let data)):
            guard case .read(let offset, let length, let df) = operation, data.readableBytes == length else {
                return error(header, .eio, "device returned \(data.readableBytes) bytes for \(operation)")
            }
            return readReply(cookie: cookie, offset: offset, data: data, df: df)
        case .success(.extents(let extents)):
            guard case .blockStatus(let offset, let length, let reqOne) = operation else {
                preconditionFailure("extents for \(operation)")
            }
            return blockStatusReply(cookie: cookie, offset: offset, length: length, reqOne: reqOne, extents: extents)
        case .success(.done):
            return success(header)
        }
    }

    private func readReply(cookie: UInt64, offset: UInt64, data: ByteBuffer, df: Bool) -> NBDReply {
        var b = ByteBuffer()
        guard config.structuredReplies else {
            NBDEncoder.simpleReply(error: 0, cookie: cookie, into: &b)
            return NBDReply(header: b, data: data)
        }
        if !df && data.withUnsafeReadableBytes { isAllZero($0) } {
            NBDEncoder.offsetHole(cookie: cookie, offset: offset, length: UInt32(data.readableBytes), done: true, into: &b)
            return NBDReply(header: b, data: nil)
        }
        NBDEncoder.offsetDataHeader(cookie: cookie, offset: offset, dataLength: data.readableBytes, done: true, into: &b)
        return NBDReply(header: b, data: data)
    }

    private func blockStatusReply(cookie: UInt64, offset: UInt64, length: Int, reqOne: Bool, extents: [Extent]) -> NBDReply {
        var descriptors: [(length: UInt32, flags: UInt32)] = []
        var covered: UInt64 = 0
        for e in extents where e.length > 0 && covered < UInt64(length) {
            let n = min(e.length, UInt64(length) - covered)
            descriptors.append((UInt32(n), e.hole ? NBDAllocationState.hole | NBDAllocationState.zero : 0))
            covered += n
            if reqOne { break }
        }
        // Nothing known is reported as allocated data (status 0 is always safe).
        if descriptors.isEmpty { descriptors = [(UInt32(length), 0)] }
        var b = ByteBuffer()
        NBDEncoder.blockStatus(cookie: cookie, contextID: config.allocationContextID!, descriptors: descriptors,
                               done: true, into: &b)
        return NBDReply(header: b, data: nil)
    }

    private func success(_ r: NBDRequest) -> NBDReply {
        var b = ByteBuffer()
        if config.structuredReplies && r.type == NBDCommand.read.rawValue {
            NBDEncoder.noneChunk(cookie: r.cookie, into: &b)
        } else {
            NBDEncoder.simpleReply(error: 0, cookie: r.cookie, into: &b)
        }
        return NBDReply(header: b, data: nil)
    }

    private func error(_ r: NBDRequest, _ e: NBDError, _ message: String) -> NBDReply {
        var b = ByteBuffer()
        if config.structuredReplies {
            NBDEncoder.errorChunk(cookie: r.cookie, error: e, message: message, into: &b)
        } else {
            NBDEncoder.simpleReply(error: e.rawValue, cookie: r.cookie, into: &b)
        }
        return NBDReply(header: b, data: nil)
    }
}

