/// Every error that crosses a module or process boundary. Each case carries a message
/// written for the person who will read it on one line.
public enum CairnError: Error, Equatable, Sendable, CustomStringConvertible {
    case invalidArgument(String)
    case notFound(String)
    case alreadyExists(String)
    case staleEpoch(current: Epoch)
    case checksumMismatch(block: UInt32)
    case io(String)
    case noSpace(String)
    case unavailable(String)
    case unauthenticated(String)
    case conflict(String)
    case insufficientNodes(String)
    case protocolError(String)
    case internalError(String)

    /// The message without the prefix `description` adds; what crosses the API.
    public var message: String {
        switch self {
        case .invalidArgument(let m), .notFound(let m), .alreadyExists(let m), .io(let m), .noSpace(let m),
             .unavailable(let m), .unauthenticated(let m), .conflict(let m), .insufficientNodes(let m),
             .protocolError(let m), .internalError(let m):
            return m
        case .staleEpoch(let e): return "stale epoch: the volume's current epoch is \(e)"
        case .checksumMismatch(let b): return "checksum mismatch in block \(b)"
        }
    }

    public var description: String {
        switch self {
        case .io: return "I/O error: \(message)"
        case .noSpace: return "no space: \(message)"
        case .protocolError: return "protocol error: \(message)"
        case .internalError: return "internal error: \(message)"
        default: return message
        }
    }

    /// Stable code used on the wire and in HTTP error bodies.
    public var code: String {
        switch self {
        case .invalidArgument: return "invalid_argument"
        case .notFound: return "not_found"
        case .alreadyExists: return "already_exists"
        case .staleEpoch: return "stale_epoch"
        case .checksumMismatch: return "checksum_mismatch"
        case .io: return "io"
        case .noSpace: return "no_space"
        case .unavailable: return "unavailable"
        case .unauthenticated: return "unauthenticated"
        case .conflict: return "conflict"
        case .insufficientNodes: return "insufficient_nodes"
        case .protocolError: return "protocol"
        case .internalError: return "internal"
        }
    }

    /// Rebuilds an error from its code and message (the inverse of `code`/`message`);
    /// `number` carries the epoch of `stale_epoch` and the block of `checksum_mismatch`.
    public static func from(code: String, message: String, epoch number: UInt64 = 0) -> CairnError {
        switch code {
        case "invalid_argument": return .invalidArgument(message)
        case "not_found": return .notFound(message)
        case "already_exists": return .alreadyExists(message)
        case "stale_epoch": return .staleEpoch(current: number)
        case "checksum_mismatch": return .checksumMismatch(block: UInt32(truncatingIfNeeded: number))
        case "io": return .io(message)
        case "no_space": return .noSpace(message)
        case "unavailable": return .unavailable(message)
        case "unauthenticated": return .unauthenticated(message)
        case "conflict": return .conflict(message)
        case "insufficient_nodes": return .insufficientNodes(message)
        case "protocol": return .protocolError(message)
        default: return .internalError(message)
        }
    }
}
