// Who may log in: CHAP credentials (one-way: the initiator proves it knows the secret;
// mutual: the target proves it too), whether AuthMethod=None is allowed, and per-target
// lists of allowed initiator names. CHAP values are hex (0x...) or base64 (0b...).
import Foundation

public struct CHAPCredential: Equatable, Sendable {
    public var user: String
    public var secret: [UInt8]
    public init(user: String, secret: [UInt8]) { self.user = user; self.secret = secret }
}

public struct ISCSIAuthConfig: Sendable {
    /// Logins without authentication are accepted only when this is set.
    public var allowNone = false
    /// What an initiator must answer the target's challenge with.
    public var chap: CHAPCredential?
    /// What the target answers an initiator's challenge with (mutual CHAP).
    public var mutualCHAP: CHAPCredential?
    /// Allowed initiator names by target name; the key "*" applies to every target.
    /// No entry for a target (and no "*") means every initiator is allowed.
    public var allowedInitiators: [String: Set<String>] = [:]
    public init() {}

    public func initiatorAllowed(_ initiator: String, target: String) -> Bool {
        let lists = [allowedInitiators[target], allowedInitiators["*"]].compactMap { $0 }
        guard !lists.isEmpty else { return true }
        return lists.contains { $0.contains(initiator) }
    }
}

enum CHAP {
    static let algorithmMD5 = "5"

    /// CHAP response: MD5(identifier byte, secret, challenge).
    static func response(identifier: UInt8, secret: [UInt8], challenge: [UInt8]) -> [UInt8] {
        MD5.digest([identifier] + secret + challenge)
    }

    static func hex(_ bytes: [UInt8]) -> String {
        "0x" + bytes.map { String(format: "%02x", $0) }.joined()
    }

    /// Decodes a CHAP binary value: 0x/0X hex or 0b/0B base64.
    static func decode(_ text: String) -> [UInt8]? {
        let lower = text.prefix(2).lowercased()
        let body = text.dropFirst(2)
        if lower == "0x" {
            var out: [UInt8] = []
            var chars = Array(body.utf8)
            if chars.count % 2 == 1 { chars.insert(UInt8(ascii: "0"), at: 0) }
            guard !chars.isEmpty else { return nil }
            for i in stride(from: 0, to: chars.count, by: 2) {
                guard let hi = nibble(chars[i]), let lo = nibble(chars[i + 1]) else { return nil }
                out.append(hi << 4 | lo)
            }
            return out
        }
        if lower == "0b" { return Data(base64Encoded: String(body)).map { [UInt8]($0) } }
        return nil
    }

    private static func nibble(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
        default: return nil
        }
    }

    /// Constant-time comparison of two digests.
    static func equal(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var diff: UInt8 = 0
        for i in 0..<a.count { diff |= a[i] ^ b[i] }
        return diff == 0
    }
}
