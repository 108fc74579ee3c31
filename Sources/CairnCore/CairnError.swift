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

    public var description: String {
        switch self {
        case .invalidArgument(let m): return m
        case .notFound(let m): return m
        case .alreadyExists(let m): return m
        case .staleEpoch(let e): return "stale epoch: the volume's current epoch is \(e)"
        case .checksumMismatch(let b): return "checksum mismatch in block \(b)"
        case .io(let m): return "I/O error: \(m)"
        case .noSpace(let m): return "no space: \(m)"
        case .unavailable(let m): return m
        case .unauthenticated(let m): return m
        case .conflict(let m): return m
        case .insufficientNodes(let m): return m
        case .protocolError(let m): return "protocol error: \(m)"
        case .internalError(let m): return "internal error: \(m)"
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

    /// Rebuilds an error from its code and message (the inverse of `code`/`description`).
    public static func from(code: String, message: String, epoch: Epoch = 0) -> CairnError {
        switch code {
        case "invalid_argument": return .invalidArgument(message)
        case "not_found": return .notFound(message)
        case "already_exists": return .alreadyExists(message)
        case "stale_epoch": return .staleEpoch(current: epoch)
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
