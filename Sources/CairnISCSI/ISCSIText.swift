// Text keys (RFC 7143 section 6): `key=value` pairs, each ended by a NUL byte, carried in
// login and text PDUs; and the negotiation of the operational keys this target knows.
import NIOCore

public enum ISCSIText {
    /// Parses `key=value\0...`. Order is kept; a key without '=' or an empty key is an error.
    public static func parse(_ bytes: [UInt8]) throws -> [(key: String, value: String)] {
        var pairs: [(key: String, value: String)] = []
        for part in bytes.split(separator: 0, omittingEmptySubsequences: true) {
            guard let eq = part.firstIndex(of: UInt8(ascii: "=")), eq > part.startIndex else {
                throw ISCSITextError.malformed(String(decoding: part, as: UTF8.self))
            }
            let key = String(decoding: part[part.startIndex..<eq], as: UTF8.self)
            let value = String(decoding: part[(eq + 1)...], as: UTF8.self)
            guard key.utf8.count <= 63, value.utf8.count <= 8192 else { throw ISCSITextError.malformed(key) }
            pairs.append((key, value))
        }
        return pairs
    }

    public static func encode(_ pairs: [(String, String)]) -> ByteBuffer {
        var out = ByteBuffer()
        for (k, v) in pairs {
            out.writeString(k); out.writeString("="); out.writeString(v); out.writeInteger(UInt8(0))
        }
        return out
    }
}

public enum ISCSITextError: Error, Equatable {
    case malformed(String)
}

/// What a session runs with after negotiation (the RFC's defaults until then).
public struct ISCSISessionParameters: Equatable, Sendable {
    public var headerDigest = false
    public var dataDigest = false
    /// The initiator's MaxRecvDataSegmentLength: the largest data segment we may send.
    public var sendDataSegmentMax = 8192
    public var maxBurstLength = 262_144
    public var firstBurstLength = 65_536
    public var immediateData = true
    public var initialR2T = true
    public var maxOutstandingR2T = 1
    public var defaultTime2Wait = 2
    public var defaultTime2Retain = 20
    public var maxConnections = 1
    public init() {}
}

/// Answers operational keys; `respond` returns nil for keys that are not operational.
struct OperationalNegotiation {
    var params = ISCSISessionParameters()

    /// The value to answer `key=value` with, updating `params`; nil if the key is not one of ours.
    mutating func respond(_ key: String, _ value: String) -> String? {
        switch key {
        case "HeaderDigest", "DataDigest":
            let offered = value.split(separator: ",").map(String.init)
            guard let pick = offered.first(where: { $0 == "None" || $0 == "CRC32C" }) else { return "Reject" }
            if key == "HeaderDigest" { params.headerDigest = pick == "CRC32C" } else { params.dataDigest = pick == "CRC32C" }
            return pick
        case "MaxRecvDataSegmentLength":
            // Declarative: the initiator's limit for what we send; we answer with ours.
            guard let n = Int(value), (512...16_777_215).contains(n) else { return "Reject" }
            params.sendDataSegmentMax = n
            return nil
        case "MaxBurstLength":
            guard let n = Int(value), (512...16_777_215).contains(n) else { return "Reject" }
            params.maxBurstLength = min(n, ISCSILimits.burstMax)
            params.firstBurstLength = min(params.firstBurstLength, params.maxBurstLength)
            return String(params.maxBurstLength)
        case "FirstBurstLength":
            guard let n = Int(value), (512...16_777_215).contains(n) else { return "Reject" }
            params.firstBurstLength = min(n, ISCSILimits.firstBurstMax, params.maxBurstLength)
            return String(params.firstBurstLength)
        case "ImmediateData":
            guard let b = Self.bool(value) else { return "Reject" }
            params.immediateData = b   // AND with our Yes
            return b ? "Yes" : "No"
        case "InitialR2T":
            guard let b = Self.bool(value) else { return "Reject" }
            params.initialR2T = b      // OR with our No
            return b ? "Yes" : "No"
        case "DataPDUInOrder", "DataSequenceInOrder":
            guard Self.bool(value) != nil else { return "Reject" }
            return "Yes"               // OR with our Yes
        case "MaxOutstandingR2T":
            guard let n = Int(value), (1...65535).contains(n) else { return "Reject" }
            params.maxOutstandingR2T = 1
            return "1"
        case "MaxConnections":
            guard let n = Int(value), (1...65535).contains(n) else { return "Reject" }
            return "1"
        case "DefaultTime2Wait":
            guard let n = Int(value), (0...3600).contains(n) else { return "Reject" }
            params.defaultTime2Wait = max(n, 2)
            return String(params.defaultTime2Wait)
        case "DefaultTime2Retain":
            guard let n = Int(value), (0...3600).contains(n) else { return "Reject" }
            params.defaultTime2Retain = min(n, 20)
            return String(params.defaultTime2Retain)
        case "ErrorRecoveryLevel":
            guard let n = Int(value), (0...2).contains(n) else { return "Reject" }
            return "0"
        case "IFMarker", "OFMarker":
            return "No"
        case "OFMarkInt", "IFMarkInt":
            return "Reject"
        default:
            return nil
        }
    }

    static func bool(_ v: String) -> Bool? {
        switch v {
        case "Yes": return true
        case "No": return false
        default: return nil
        }
    }
}
