@testable import CairnISCSI
import NIOCore
import XCTest

final class LoginPhaseTests: XCTestCase {
    static let initiator = "iqn.2026-01.test:initiator"
    static let target = iscsiTargetPrefix + "vol1"
    static let challengeBytes: [UInt8] = [7] + Array(100..<116)

    func request(csg: UInt8, nsg: UInt8, transit: Bool, _ keys: [(String, String)]) -> ISCSIPDU {
        var p = ISCSIPDU(opcode: .loginRequest, immediate: true, final: false)
        p.flags = (transit ? 0x80 : 0) | csg << 2 | nsg
        p.set64(8, 0x4000_0000_0001 << 16)
        p.itt = 1
        p.set32(24, 10)
        p.data = ISCSIText.encode(keys)
        return p
    }

    func machine(_ configure: (inout ISCSIAuthConfig) -> Void) -> LoginPhase {
        var auth = ISCSIAuthConfig()
        configure(&auth)
        return LoginPhase(auth: auth, newTSIH: 5, random: { Self.challengeBytes })
    }

    func keys(_ pdu: ISCSIPDU) -> [String: String] {
        let bytes = pdu.data.getBytes(at: pdu.data.readerIndex, length: pdu.data.readableBytes) ?? []
        return Dictionary((try? ISCSIText.parse(bytes))?.map { ($0.key, $0.value) } ?? [], uniquingKeysWith: { $1 })
    }

    func testNoneAllowedLogsStraightIntoFullFeature() {
        var m = machine { $0.allowNone = true }
        let action = m.receive(request(csg: 1, nsg: 3, transit: true, [
            ("InitiatorName", Self.initiator), ("TargetName", Self.target), ("SessionType", "Normal"),
            ("HeaderDigest", "CRC32C,None"), ("DataDigest", "None"), ("MaxBurstLength", "16776192"),
            ("FirstBurstLength", "262144"), ("InitialR2T", "No"), ("ImmediateData", "Yes"), ("ErrorRecoveryLevel", "0"),
            ("MaxRecvDataSegmentLength", "65536"), ("X-Unknown", "1"),
        ]))
        guard case .complete(let pdu, let result) = action else { return XCTFail("\(action)") }
        XCTAssertEqual(pdu.flags & 0x80, 0x80)
        XCTAssertEqual(pdu.flags & 0x03, 3)
        XCTAssertEqual(pdu.u16(14), 5)
        XCTAssertEqual(pdu.u16(36), 0)
        XCTAssertEqual(result.volume, "vol1")
        XCTAssertTrue(result.parameters.headerDigest)
        XCTAssertFalse(result.parameters.dataDigest)
        XCTAssertEqual(result.parameters.maxBurstLength, ISCSILimits.burstMax)
        XCTAssertFalse(result.parameters.initialR2T)
        XCTAssertEqual(result.parameters.sendDataSegmentMax, 65536)
        XCTAssertEqual(result.expCmdSN, 10)
        let k = keys(pdu)
        XCTAssertEqual(k["HeaderDigest"], "CRC32C")
        XCTAssertEqual(k["X-Unknown"], "NotUnderstood")
        XCTAssertEqual(k["TargetPortalGroupTag"], "1")
        XCTAssertEqual(k["MaxRecvDataSegmentLength"], String(ISCSILimits.recvDataSegmentMax))
    }

    func testNoneRefusedWithoutConfiguration() {
        var m = machine { $0.chap = CHAPCredential(user: "u", secret: Array("secretsecret".utf8)) }
        let action = m.receive(request(csg: 0, nsg: 1, transit: true, [
            ("InitiatorName", Self.initiator), ("TargetName", Self.target), ("AuthMethod", "None"),
        ]))
        guard case .fail(let pdu, _) = action else { return XCTFail("\(action)") }
        XCTAssertEqual(pdu.u16(36), LoginPhase.statusAuthenticationFailure)
        var skip = machine { $0.chap = CHAPCredential(user: "u", secret: Array("secretsecret".utf8)) }
        guard case .fail(let p2, _) = skip.receive(request(csg: 1, nsg: 3, transit: true, [
            ("InitiatorName", Self.initiator), ("TargetName", Self.target),
        ])) else { return XCTFail("operational stage without authentication was accepted") }
        XCTAssertEqual(p2.u16(36), LoginPhase.statusAuthenticationFailure)
    }

    func chapLogin(secret: String, mutual: Bool) -> (LoginPhase.Action, [String: String]) {
        var m = machine {
            $0.chap = CHAPCredential(user: "alice", secret: Array("alicesecret1".utf8))
            $0.mutualCHAP = CHAPCredential(user: "target", secret: Array("targetsecret".utf8))
        }
        guard case .send(let r1) = m.receive(request(csg: 0, nsg: 1, transit: false, [
            ("InitiatorName", Self.initiator), ("TargetName", Self.target), ("AuthMethod", "CHAP,None"),
        ])) else { XCTFail("no answer to AuthMethod"); return (.close(reason: ""), [:]) }
        XCTAssertEqual(keys(r1)["AuthMethod"], "CHAP")
        guard case .send(let r2) = m.receive(request(csg: 0, nsg: 1, transit: false, [("CHAP_A", "5")])) else {
            XCTFail("no challenge"); return (.close(reason: ""), [:])
        }
        let k2 = keys(r2)
        XCTAssertEqual(k2["CHAP_I"], "7")
        XCTAssertEqual(k2["CHAP_C"], CHAP.hex(Array(100..<116)))
        let response = CHAP.response(identifier: 7, secret: Array(secret.utf8), challenge: Array(100..<116))
        var answer = [("CHAP_N", "alice"), ("CHAP_R", CHAP.hex(response))]
        if mutual { answer += [("CHAP_I", "9"), ("CHAP_C", "0x0102030405060708")] }
        let action = m.receive(request(csg: 0, nsg: 1, transit: true, answer))
        if case .send(let r3) = action { return (action, keys(r3)) }
        return (action, [:])
    }

    func testCHAPOneWay() {
        let (action, _) = chapLogin(secret: "alicesecret1", mutual: false)
        guard case .send(let pdu) = action else { return XCTFail("\(action)") }
        XCTAssertEqual(pdu.flags & 0x80, 0x80, "transit to the operational stage")
    }

    func testCHAPMutualAnswersTheInitiatorsChallenge() {
        let (action, k) = chapLogin(secret: "alicesecret1", mutual: true)
        guard case .send = action else { return XCTFail("\(action)") }
        XCTAssertEqual(k["CHAP_N"], "target")
        let expected = CHAP.response(identifier: 9, secret: Array("targetsecret".utf8), challenge: [1, 2, 3, 4, 5, 6, 7, 8])
        XCTAssertEqual(k["CHAP_R"], CHAP.hex(expected))
    }

    func testCHAPWrongSecretFails() {
        let (action, _) = chapLogin(secret: "wrong-secret", mutual: false)
        guard case .fail(let pdu, _) = action else { return XCTFail("\(action)") }
        XCTAssertEqual(pdu.u16(36), LoginPhase.statusAuthenticationFailure)
    }

    func testInitiatorNotOnTheListIsRefused() {
        var m = machine {
            $0.allowNone = true
            $0.allowedInitiators = [Self.target: ["iqn.2026-01.test:other"]]
        }
        guard case .fail(let pdu, _) = m.receive(request(csg: 1, nsg: 3, transit: true, [
            ("InitiatorName", Self.initiator), ("TargetName", Self.target),
        ])) else { return XCTFail("refused initiator logged in") }
        XCTAssertEqual(pdu.u16(36), LoginPhase.statusAuthorizationFailure)
    }

    func testMissingInitiatorNameAndUnknownTarget() {
        var m = machine { $0.allowNone = true }
        guard case .fail(let p1, _) = m.receive(request(csg: 1, nsg: 3, transit: true, [("TargetName", Self.target)])) else {
            return XCTFail("login without InitiatorName")
        }
        XCTAssertEqual(p1.u16(36), LoginPhase.statusMissingParameter)
        var m2 = machine { $0.allowNone = true }
        guard case .fail(let p2, _) = m2.receive(request(csg: 1, nsg: 3, transit: true, [
            ("InitiatorName", Self.initiator), ("TargetName", "iqn.2000-01.elsewhere:x"),
        ])) else { return XCTFail("foreign target name accepted") }
        XCTAssertEqual(p2.u16(36), LoginPhase.statusNotFound)
    }

    func testDiscoverySessionNeedsNoTarget() {
        var m = machine { $0.allowNone = true }
        guard case .complete(_, let result) = m.receive(request(csg: 1, nsg: 3, transit: true, [
            ("InitiatorName", Self.initiator), ("SessionType", "Discovery"),
        ])) else { return XCTFail("discovery login refused") }
        XCTAssertEqual(result.sessionType, .discovery)
    }

    func testNonLoginPDUClosesTheConnection() {
        var m = machine { $0.allowNone = true }
        guard case .close = m.receive(ISCSIPDU(opcode: .scsiCommand)) else { return XCTFail("SCSI command during login") }
    }
}
