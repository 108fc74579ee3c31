// CairnNBD: the NBD frontend. Every block volume is an NBD export named after the volume.
//
// Layout (the source tree follows the protocol):
//   NBDProtocol.swift       constants and limits of the wire protocol (fixed newstyle only)
//   NBDCodec.swift          pure decoder of client bytes and encoders of server messages
//   OptionPhase.swift       state machine of the handshake / option haggling phase
//   TransmissionPhase.swift state machine of the transmission phase (validation, replies)
//   NBDDevice.swift         what an export is (a byte-addressed device) and where exports come from
//   VolumeExports.swift     exports backed by VolumeClient, one shared client per volume
//   NBDConnectionHandler.swift, NBDServer.swift   the only files that touch NIO channels
//
// Invariants:
//  - Client input never crashes the server: it becomes an error reply or a closed
//    connection. `precondition` guards our own invariants only.
//  - Every queue has a named bound (`NBDLimits`); at the bound the connection stops
//    reading (back-pressure), it never grows.
//  - Every acknowledged write is durable on all replicas of its chunk (VolumeClient), so
//    FLUSH and FUA add nothing and the multi-conn guarantee holds across connections that
//    share an export's VolumeClient.
import NIOCore

public enum NBDMagic {
    /// "NBDMAGIC", the first 8 bytes the server sends.
    public static let initPassword: UInt64 = 0x4e42_444d_4147_4943
    /// "IHAVEOPT": newstyle negotiation marker, also the magic of every option request.
    public static let ihaveopt: UInt64 = 0x4948_4156_454f_5054
    public static let optionReply: UInt64 = 0x0003_e889_0455_65a9
    public static let request: UInt32 = 0x2560_9513
    public static let simpleReply: UInt32 = 0x6744_6698
    public static let structuredReply: UInt32 = 0x668e_33ef
}

/// Handshake flags (server, 16 bits) and client flags (32 bits).
public enum NBDHandshakeFlag {
    public static let fixedNewstyle: UInt16 = 1 << 0
    public static let noZeroes: UInt16 = 1 << 1
    public static let clientFixedNewstyle: UInt32 = 1 << 0
    public static let clientNoZeroes: UInt32 = 1 << 1
    public static let clientKnown: UInt32 = clientFixedNewstyle | clientNoZeroes
}

public enum NBDOption: UInt32, Sendable {
    case exportName = 1
    case abort = 2
    case list = 3
    case peekExport = 4
    case startTLS = 5
    case info = 6
    case go = 7
    case structuredReply = 8
    case listMetaContext = 9
    case setMetaContext = 10
    case extendedHeaders = 11
}

public enum NBDReplyType {
    public static let ack: UInt32 = 1
    public static let server: UInt32 = 2
    public static let info: UInt32 = 3
    public static let metaContext: UInt32 = 4
    static let error: UInt32 = 1 << 31
    public static let errUnsup: UInt32 = error + 1
    public static let errPolicy: UInt32 = error + 2
    public static let errInvalid: UInt32 = error + 3
    public static let errPlatform: UInt32 = error + 4
    public static let errTLSRequired: UInt32 = error + 5
    public static let errUnknown: UInt32 = error + 6
    public static let errShutdown: UInt32 = error + 7
    public static let errBlockSizeRequired: UInt32 = error + 8
    public static let errTooBig: UInt32 = error + 9
}

public enum NBDInfoType: UInt16, Sendable {
    case export = 0
    case name = 1
    case description = 2
    case blockSize = 3
}

/// Transmission flags (16 bits).
public enum NBDTransmissionFlag {
    public static let hasFlags: UInt16 = 1 << 0
    public static let readOnly: UInt16 = 1 << 1
    public static let sendFlush: UInt16 = 1 << 2
    public static let sendFUA: UInt16 = 1 << 3
    public static let rotational: UInt16 = 1 << 4
    public static let sendTrim: UInt16 = 1 << 5
    public static let sendWriteZeroes: UInt16 = 1 << 6
    public static let sendDF: UInt16 = 1 << 7
    public static let canMultiConn: UInt16 = 1 << 8
    public static let sendResize: UInt16 = 1 << 9
    public static let sendCache: UInt16 = 1 << 10
    public static let sendFastZero: UInt16 = 1 << 11
}

public enum NBDCommand: UInt16, Sendable {
    case read = 0
    case write = 1
    case disc = 2
    case flush = 3
    case trim = 4
    case cache = 5
    case writeZeroes = 6
    case blockStatus = 7
}

/// Command flags (16 bits).
public enum NBDCommandFlag {
    public static let fua: UInt16 = 1 << 0
    public static let noHole: UInt16 = 1 << 1
    public static let df: UInt16 = 1 << 2
    public static let reqOne: UInt16 = 1 << 3
    public static let fastZero: UInt16 = 1 << 4
}

public enum NBDStructuredType {
    public static let none: UInt16 = 0
    public static let offsetData: UInt16 = 1
    public static let offsetHole: UInt16 = 2
    public static let blockStatus: UInt16 = 5
    public static let error: UInt16 = (1 << 15) + 1
    public static let errorOffset: UInt16 = (1 << 15) + 2
    public static let flagDone: UInt16 = 1 << 0
}

/// Error values of replies (the spec's fixed subset of errno).
public enum NBDError: UInt32, Sendable, Error {
    case eperm = 1
    case eio = 5
    case enomem = 12
    case einval = 22
    case enospc = 28
    case eoverflow = 75
    case enotsup = 95
    case eshutdown = 108
}

/// `base:allocation` status flags.
public enum NBDAllocationState {
    public static let hole: UInt32 = 1 << 0
    public static let zero: UInt32 = 1 << 1
}

public let nbdBaseAllocation = "base:allocation"

/// The gateway's limits, named once. See docs/nbd.md.
public enum NBDLimits {
    /// Largest READ or WRITE payload, advertised as the maximum block size. The spec's
    /// default, so clients that do not ask for block sizes stay within it.
    public static let payloadMax = 32 << 20
    /// Advertised minimum and preferred block sizes: any byte alignment works (the volume
    /// client does read-modify-write inside 4 KiB blocks), 4 KiB avoids that.
    public static let blockSizeMin: UInt32 = 1
    public static let blockSizePreferred: UInt32 = 4096
    /// Largest option payload; options are small (names and queries of at most 4 KiB).
    public static let optionDataMax = 64 << 10
    /// Longest string (export name, query) the spec allows.
    public static let stringMax = 4096
    /// A WRITE above `payloadMax` up to this size has its payload read and dropped and gets
    /// EINVAL; beyond it the connection is closed (a client this far off is not an NBD client).
    public static let oversizedWriteDiscardMax = 64 << 20
    /// Requests being served at once on one connection; beyond it the connection stops reading.
    public static let inFlightPerConnectionMax = 64
    /// Bytes of READ/WRITE payload being served at once on one connection (one request is
    /// always admitted, so a single maximum-size request still runs).
    public static let inFlightBytesPerConnectionMax = 128 << 20
    /// BLOCK_STATUS looks at most this far past its offset per request (the spec allows
    /// shorter answers; clients continue from where the answer ends).
    public static let blockStatusSpanMax: UInt64 = 1 << 30
    /// Open connections per gateway; more are closed at once.
    public static let connectionsMax = 256
}
