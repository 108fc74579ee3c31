// What the protocol code needs from an export: a byte-addressed device, and a provider
// that lists, describes and opens exports by name. VolumeExports implements the provider
// with volume clients; tests can plug in anything else.
import CairnClient
import CairnCore
import NIOCore

public struct NBDExportDescription: Equatable, Sendable {
    public var name: String
    public var sizeBytes: UInt64
    public var readOnly: Bool
    /// One line for people (NBD_INFO_DESCRIPTION and the detail of NBD_REP_SERVER).
    public var description: String
    public init(name: String, sizeBytes: UInt64, readOnly: Bool, description: String) {
        self.name = name; self.sizeBytes = sizeBytes; self.readOnly = readOnly; self.description = description
    }
}

/// I/O on one export. Every method may be called concurrently; every acknowledged write is
/// durable (so `flush` may do nothing).
public protocol NBDDevice: AnyObject, Sendable {
    func read(offset: UInt64, length: Int) async throws -> ByteBuffer
    func write(offset: UInt64, data: ByteBuffer, fua: Bool) async throws
    func flush() async throws
    func trim(offset: UInt64, length: Int) async throws
    func writeZeroes(offset: UInt64, length: Int, mayTrim: Bool) async throws
    /// Consecutive extents covering at least a prefix of the range.
    func blockStatus(offset: UInt64, length: Int) async throws -> [Extent]
}

/// Why an export cannot be used; answered during option haggling.
public enum NBDExportError: Error, Equatable {
    /// No such export (NBD_REP_ERR_UNKNOWN).
    case unknown(String)
    /// It exists but may not be used now (NBD_REP_ERR_POLICY), e.g. another writer holds it.
    case refused(String)
    /// The cluster could not be asked (NBD_REP_ERR_SHUTDOWN is wrong here; ERR_UNKNOWN with the reason).
    case unavailable(String)

    public var message: String {
        switch self {
        case .unknown(let m), .refused(let m), .unavailable(let m): return m
        }
    }
}

public protocol NBDExportProvider: Sendable {
    func list() async throws -> [NBDExportDescription]
    func describe(_ name: String) async throws -> NBDExportDescription
    /// Opens (or shares) the export for a connection; pair each success with one `release`.
    func open(_ name: String) async throws -> (NBDExportDescription, NBDDevice)
    func release(_ name: String) async
}

extension NBDError {
    /// The reply error for a failure of the device, per the spec's errno subset.
    public static func from(_ error: Error) -> NBDError {
        if let e = error as? NBDError { return e }
        guard let e = error as? CairnError else { return .eio }
        switch e {
        case .invalidArgument: return .einval
        case .noSpace: return .enospc
        default: return .eio
        }
    }
}
