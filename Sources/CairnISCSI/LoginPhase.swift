// The login phase of one connection (RFC 7143 sections 6.3 and 11.12-11.13): security
// negotiation (AuthMethod None or CHAP, one-way or mutual), operational negotiation, and
// the move to full feature phase. A state machine: login request PDUs in, actions out.
// It never touches the network or the cluster; whether a target exists is asked by the
// handler when the login completes.
//
// Invariants: a login response is always answered with the ISID, TSIH and ITT of the
// request; StatSN grows by one per response; a failed login always ends the connection.
import NIOCore

public let iscsiTargetPrefix = "iqn.2026-11.io.cairn:"

/// The target of an export: the snapshot export `VOLUME@SNAPSHOT` is the target
/// `...:VOLUME:SNAPSHOT` ('@' is not allowed in iSCSI names, ':' is and never appears in
/// volume names).
public func iscsiTargetName(export: String) -> String {
    iscsiTargetPrefix + String(export.map { $0 == "@" ? ":" : $0 })
}

/// The export a target name (without the prefix) stands for; the inverse of `iscsiTargetName`.
func exportName(targetSuffix: Substring) -> String {
    String(targetSuffix.map { $0 == ":" ? "@" : $0 })
}

public enum ISCSISessionType: Equatable, Sendable { case discovery, normal }

/// Everything the full feature phase needs from the login.
public struct ISCSILoginResult: Equatable, Sendable {
    public var sessionType: ISCSISessionType
    public var initiatorName: String
    public var targetName: String?
    public var volume: String?
    public var isid: UInt64
    public var tsih: UInt16
    public var parameters: ISCSISessionParameters
    /// The next StatSN to send after the final login response, and the command window.
    public var statSN: UInt32
    public var expCmdSN: UInt32
}

public struct LoginPhase {
    public enum Action: Equatable {
        case send(ISCSIPDU)
        /// The login failed: send the response and close.
        case fail(ISCSIPDU, reason: String)
        /// Open the target (normal session), then send the response and enter full feature phase.
        case complete(ISCSIPDU, ISCSILoginResult)
        /// Not a login PDU, or an unusable one: close without an answer.
        case close(reason: String)
    }

    enum Stage: UInt8 { case security = 0, operational = 1, fullFeature = 3 }
    enum CHAPStep: Equatable { case none, offered, challenged(id: UInt8, challenge: [UInt8]), done }

    public static let statusSuccess: UInt16 = 0x0000
    public static let statusInitiatorError: UInt16 = 0x0200
    public static let statusAuthenticationFailure: UInt16 = 0x0201
    public static let statusAuthorizationFailure: UInt16 = 0x0202
    public static let statusNotFound: UInt16 = 0x0203
    public static let statusUnsupportedVersion: UInt16 = 0x0205
    public static let statusMissingParameter: UInt16 = 0x0207
    public static let statusSessionDoesNotExist: UInt16 = 0x020a
    public static let statusTargetError: UInt16 = 0x0300

    let auth: ISCSIAuthConfig
    let portalGroupTag: UInt16
    let newTSIH: UInt16
    var random: () -> [UInt8]

    var started = false
    var isid: UInt64 = 0
    var itt: UInt32 = 0
    var statSN: UInt32 = 1
    var expCmdSN: UInt32 = 0
    var initiatorName: String?
    var targetName: String?
    var sessionType = ISCSISessionType.normal
    var authMethodChosen: String?
    var chap = CHAPStep.none
    var authenticated = false
    var declared = false
    var declaredRecvLength = false
    var negotiation = OperationalNegotiation()
    var pendingText: [UInt8] = []

    /// `random` returns fresh CHAP challenge bytes (injected so tests can fix them).
    public init(auth: ISCSIAuthConfig, portalGroupTag: UInt16 = 1, newTSIH: UInt16, random: @escaping () -> [UInt8]) {
        self.auth = auth; self.portalGroupTag = portalGroupTag; self.newTSIH = newTSIH; self.random = random
    }

    public mutating func receive(_ pdu: ISCSIPDU) -> Action {
        guard pdu.opcode == .loginRequest else { return .close(reason: "PDU opcode \(pdu.rawOpcode) during login") }
        let transit = pdu.flags & 0x80 != 0
        let cont = pdu.flags & 0x40 != 0
        guard let csg = Stage(rawValue: (pdu.flags >> 2) & 0x03), let nsg = Stage(rawValue: pdu.flags & 0x03) else {
            return fail(pdu, Self.statusInitiatorError, "reserved login stage")
        }
        let requestISID = pdu.u64(8) >> 16
        if !started {
            started = true
            isid = requestISID
            itt = pdu.itt
            expCmdSN = pdu.u32(24)
            if pdu.bhs[3] > 0 { return fail(pdu, Self.statusUnsupportedVersion, "version-min \(pdu.bhs[3])") }
            if pdu.u16(14) != 0 { return fail(pdu, Self.statusSessionDoesNotExist, "TSIH \(pdu.u16(14)): no session reinstatement or MC/S") }
        } else if requestISID != isid {
            return fail(pdu, Self.statusInitiatorError, "ISID changed during login")
        }
        if transit && cont { return fail(pdu, Self.statusInitiatorError, "T and C both set") }
        if transit && nsg.rawValue <= csg.rawValue { return fail(pdu, Self.statusInitiatorError, "login stage goes backwards") }
        if csg == .fullFeature { return fail(pdu, Self.statusInitiatorError, "CSG is full feature phase") }

        pendingText += pdu.data.getBytes(at: pdu.data.readerIndex, length: pdu.data.readableBytes) ?? []
        guard pendingText.count <= ISCSILimits.textMax else { return fail(pdu, Self.statusInitiatorError, "login text too long") }
        if cont { return .send(response(pdu, transit: false, csg: csg, nsg: nsg, status: Self.statusSuccess, keys: [])) }
        let text = pendingText
        pendingText = []
        let pairs: [(key: String, value: String)]
        do { pairs = try ISCSIText.parse(text) } catch {
            return fail(pdu, Self.statusInitiatorError, "malformed login text")
        }
        return handle(pdu, pairs, transit: transit, csg: csg, nsg: nsg)
    }

    private mutating func handle(_ pdu: ISCSIPDU, _ pairs: [(key: String, value: String)], transit: Bool,
                                 csg: Stage, nsg: Stage) -> Action {
        var answers: [(String, String)] = []
        var chapKeys: [String: String] = [:]
        for (key, value) in pairs {
            switch key {
            case "InitiatorName": initiatorName = value
            case "TargetName": targetName = value
            case "SessionType":
                switch value {
                case "Discovery": sessionType = .discovery
                case "Normal": sessionType = .normal
                default: return fail(pdu, Self.statusInitiatorError, "SessionType=\(value)")
                }
            case "InitiatorAlias", "TargetAlias", "TargetAddress", "TargetPortalGroupTag":
                break
            case "AuthMethod":
                guard csg == .security else { return fail(pdu, Self.statusInitiatorError, "AuthMethod outside security negotiation") }
                let choice = chooseAuthMethod(value.split(separator: ",").map(String.init))
                answers.append(("AuthMethod", choice ?? "Reject"))
                guard let choice else { return fail(pdu, Self.statusAuthenticationFailure, "no acceptable AuthMethod in \(value)") }
                authMethodChosen = choice
                if choice == "None" { authenticated = true } else { chap = .offered }
            case _ where key.hasPrefix("CHAP_"):
                chapKeys[key] = value
            default:
                if let answer = negotiation.respond(key, value) {
                    answers.append((key, answer))
                } else if key != "MaxRecvDataSegmentLength" {
                    answers.append((key, "NotUnderstood"))
                }
            }
        }
        guard let initiator = initiatorName else { return fail(pdu, Self.statusMissingParameter, "no InitiatorName") }
        if sessionType == .normal {
            guard let target = targetName else { return fail(pdu, Self.statusMissingParameter, "no TargetName") }
            guard target.hasPrefix(iscsiTargetPrefix), target.count > iscsiTargetPrefix.count else {
                return fail(pdu, Self.statusNotFound, "no target \(target)")
            }
            guard auth.initiatorAllowed(initiator, target: target) else {
                return fail(pdu, Self.statusAuthorizationFailure, "initiator \(initiator) is not allowed on \(target)")
            }
        }
        if !chapKeys.isEmpty || chap == .offered && csg == .security {
            switch chapStep(chapKeys, &answers) {
            case .failure(let f): return fail(pdu, Self.statusAuthenticationFailure, f.reason)
            case .success: break
            }
        }
        if !declared {
            declared = true
            if sessionType == .normal { answers.append(("TargetPortalGroupTag", String(portalGroupTag))) }
        }
        if !declaredRecvLength && (csg == .operational || nsg == .fullFeature) {
            declaredRecvLength = true
            answers.append(("MaxRecvDataSegmentLength", String(ISCSILimits.recvDataSegmentMax)))
        }
        // Leaving the security stage, or skipping it, needs authentication settled: without
        // any AuthMethod only when None is allowed; a CHAP exchange still running holds the
        // transit back (T=0), except in the operational stage where it is too late.
        if (transit || csg == .operational) && !authenticated {
            if authMethodChosen == nil && auth.allowNone {
                authenticated = true
            } else if authMethodChosen == nil || csg == .operational {
                return fail(pdu, Self.statusAuthenticationFailure, "authentication required")
            }
        }
        let canTransit = transit && authenticated
        let resp = response(pdu, transit: canTransit, csg: csg, nsg: nsg, status: Self.statusSuccess, keys: answers)
        guard canTransit && nsg == .fullFeature else { return .send(resp) }
        var final = resp
        final.set16(14, newTSIH)
        let result = ISCSILoginResult(
            sessionType: sessionType, initiatorName: initiator, targetName: targetName,
            volume: sessionType == .normal ? targetName.map { exportName(targetSuffix: $0.dropFirst(iscsiTargetPrefix.count)) } : nil,
            isid: isid, tsih: newTSIH, parameters: negotiation.params, statSN: statSN, expCmdSN: expCmdSN)
        return .complete(final, result)
    }


    private func chooseAuthMethod(_ offered: [String]) -> String? {
        if auth.chap != nil && offered.contains("CHAP") { return "CHAP" }
        if auth.allowNone && offered.contains("None") { return "None" }
        return nil
    }

    private mutating func chapStep(_ keys: [String: String], _ answers: inout [(String, String)]) -> Result<Void, CHAPFailure> {
        guard let credential = auth.chap, authMethodChosen == "CHAP" else { return .failure(CHAPFailure("CHAP keys without AuthMethod=CHAP")) }
        switch chap {
        case .offered:
            guard let algorithms = keys["CHAP_A"] else {
                return keys.isEmpty ? .success(()) : .failure(CHAPFailure("CHAP_A expected"))
            }
            guard algorithms.split(separator: ",").contains(Substring(CHAP.algorithmMD5)) else {
                answers.append(("CHAP_A", "Reject"))
                return .failure(CHAPFailure("no CHAP algorithm 5 (MD5) offered"))
            }
            let bytes = random()
            precondition(bytes.count >= 17, "CHAP needs an identifier and a 16-byte challenge")
            let id = bytes[0]
            let challenge = Array(bytes[1...])
            chap = .challenged(id: id, challenge: challenge)
            answers += [("CHAP_A", CHAP.algorithmMD5), ("CHAP_I", String(id)), ("CHAP_C", CHAP.hex(challenge))]
            return .success(())
        case .challenged(let id, let challenge):
            guard let name = keys["CHAP_N"], let responseText = keys["CHAP_R"], let response = CHAP.decode(responseText) else {
                return .failure(CHAPFailure("CHAP_N and CHAP_R expected"))
            }
            let expected = CHAP.response(identifier: id, secret: credential.secret, challenge: challenge)
            guard name == credential.user, CHAP.equal(response, expected) else {
                return .failure(CHAPFailure("CHAP response of '\(name)' does not match"))
            }
            if let idText = keys["CHAP_I"], let challengeText = keys["CHAP_C"] {
                guard let mutual = auth.mutualCHAP else { return .failure(CHAPFailure("mutual CHAP asked but not configured")) }
                guard let theirID = UInt8(idText), let theirChallenge = CHAP.decode(challengeText),
                      !theirChallenge.isEmpty, theirChallenge.count <= 1024, theirChallenge != challenge else {
                    return .failure(CHAPFailure("unusable mutual CHAP challenge"))
                }
                answers += [("CHAP_N", mutual.user),
                            ("CHAP_R", CHAP.hex(CHAP.response(identifier: theirID, secret: mutual.secret, challenge: theirChallenge)))]
            } else if keys["CHAP_I"] != nil || keys["CHAP_C"] != nil {
                return .failure(CHAPFailure("CHAP_I and CHAP_C must come together"))
            }
            chap = .done
            authenticated = true
            return .success(())
        case .none, .done:
            return .failure(CHAPFailure("unexpected CHAP keys"))
        }
    }

    struct CHAPFailure: Error { let reason: String; init(_ r: String) { reason = r } }

    private mutating func response(_ req: ISCSIPDU, transit: Bool, csg: Stage, nsg: Stage, status: UInt16,
                                   keys: [(String, String)]) -> ISCSIPDU {
        var r = ISCSIPDU(opcode: .loginResponse, final: false)
        r.flags = (transit ? 0x80 : 0) | csg.rawValue << 2 | (transit ? nsg.rawValue : 0)
        r.bhs[2] = 0; r.bhs[3] = 0
        r.set64(8, isid << 16)
        r.itt = req.itt
        r.set32(24, statSN)
        statSN &+= 1
        r.set32(28, expCmdSN)
        r.set32(32, expCmdSN &+ ISCSILimits.queueDepth &- 1)
        r.set16(36, status)
        r.data = ISCSIText.encode(keys)
        return r
    }

    private mutating func fail(_ req: ISCSIPDU, _ status: UInt16, _ reason: String) -> Action {
        let csg = Stage(rawValue: (req.flags >> 2) & 0x03) ?? .security
        return .fail(response(req, transit: false, csg: csg, nsg: .security, status: status, keys: []), reason: reason)
    }
}
