// CairnCSI: the Container Storage Interface plugin (Identity, Controller, Node).
//
// Layout: pure request -> answer logic (VolumeSpec, ControllerCore, NodeCore,
// MountInfo) works on the generated messages and on two seams, `ClusterBackend` (the
// manager) and `NodeSystem` (mounts, processes, devices), so unit tests run it against
// fakes; CSIServices.swift is the only gRPC glue.
//
// Invariants: every call is idempotent and every record lives outside the plugin
// process (the manager's /csi/ records for the controller, the node's state directory
// and /proc/self/mountinfo for the node), so a plugin killed between two calls answers
// the repeated call the same way. FUSE and attach daemons never run inside the plugin.
import CairnCore

/// The gRPC status codes the CSI specification assigns, with the message for the CO.
public struct CSIError: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable {
        case invalidArgument = "INVALID_ARGUMENT"
        case notFound = "NOT_FOUND"
        case alreadyExists = "ALREADY_EXISTS"
        case failedPrecondition = "FAILED_PRECONDITION"
        case outOfRange = "OUT_OF_RANGE"
        case aborted = "ABORTED"
        case deadlineExceeded = "DEADLINE_EXCEEDED"
        case resourceExhausted = "RESOURCE_EXHAUSTED"
        case unavailable = "UNAVAILABLE"
        case unimplemented = "UNIMPLEMENTED"
        case internalError = "INTERNAL"
    }
    public var code: Code
    public var message: String
    public init(_ code: Code, _ message: String) { self.code = code; self.message = message }
    public var description: String { "\(code.rawValue): \(message)" }

    static func invalid(_ m: String) -> CSIError { CSIError(.invalidArgument, m) }
    static func notFound(_ m: String) -> CSIError { CSIError(.notFound, m) }

    /// Maps an error of the cluster to the code the CO expects.
    public static func from(_ error: Error) -> CSIError {
        if let e = error as? CSIError { return e }
        guard let e = error as? CairnError else { return CSIError(.internalError, "\(error)") }
        switch e {
        case .invalidArgument(let m): return CSIError(.invalidArgument, m)
        case .notFound(let m): return CSIError(.notFound, m)
        case .alreadyExists(let m): return CSIError(.alreadyExists, m)
        case .noSpace(let m), .insufficientNodes(let m): return CSIError(.resourceExhausted, m)
        case .unavailable(let m): return CSIError(.unavailable, m)
        case .conflict(let m): return CSIError(.failedPrecondition, m)
        default: return CSIError(.internalError, e.description)
        }
    }
}
