// The iSCSI part of `cairn gateway`: its options and starting the target (see docs/iscsi.md).
// Without --iscsi the target is tried on 127.0.0.1:3260 and the gateway goes on serving NBD
// when that is impossible (no credentials configured, port taken); with --iscsi every such
// problem is an error.
import ArgumentParser
import CairnCore
import CairnISCSI
import CairnNBD
import CairnNet
import Foundation
import Logging
import NIOCore

struct ISCSIGatewayOptions: ParsableArguments {
    static let defaultAddress = "127.0.0.1:3260"
    /// RFC 7143 asks for CHAP secrets of at least 96 bits.
    static let secretBytesMin = 12

    @Option(name: .customLong("iscsi"), help: "TCP address of the iSCSI target (default \(defaultAddress); 'none' for no iSCSI).")
    var address: String?
    @Flag(name: .customLong("iscsi-allow-no-auth"), help: "Accept iSCSI logins without authentication (AuthMethod=None).")
    var allowNoAuth = false
    @Option(name: .customLong("iscsi-chap-user"), help: "CHAP name initiators log in with.")
    var chapUser: String?
    @Option(name: .customLong("iscsi-chap-secret-file"), help: "File holding the initiators' CHAP secret (at least 12 bytes).")
    var chapSecretFile: String?
    @Option(name: .customLong("iscsi-mutual-chap-user"), help: "CHAP name the target answers with (mutual CHAP).")
    var mutualUser: String?
    @Option(name: .customLong("iscsi-mutual-chap-secret-file"), help: "File holding the target's CHAP secret (mutual CHAP).")
    var mutualSecretFile: String?
    @Option(name: .customLong("iscsi-allow-initiator"),
            help: "Initiator name allowed to log in, as IQN (every target) or VOLUME=IQN (one target); repeat it. Default: any.")
    var allowedInitiators: [String] = []

    func authConfig() throws -> ISCSIAuthConfig {
        var auth = ISCSIAuthConfig()
        auth.allowNone = allowNoAuth
        auth.chap = try credential(chapUser, chapSecretFile, "--iscsi-chap-user", "--iscsi-chap-secret-file")
        auth.mutualCHAP = try credential(mutualUser, mutualSecretFile, "--iscsi-mutual-chap-user", "--iscsi-mutual-chap-secret-file")
        if let m = auth.mutualCHAP, m.secret == auth.chap?.secret {
            throw CairnError.invalidArgument("the mutual CHAP secret must differ from the initiators' CHAP secret")
        }
        for entry in allowedInitiators {
            let parts = entry.split(separator: "=", maxSplits: 1).map(String.init)
            let (target, initiator) = parts.count == 2 ? (iscsiTargetPrefix + parts[0], parts[1]) : ("*", entry)
            guard !initiator.isEmpty, !target.hasSuffix(":") else {
                throw CairnError.invalidArgument("--iscsi-allow-initiator takes IQN or VOLUME=IQN, not '\(entry)'")
            }
            auth.allowedInitiators[target, default: []].insert(initiator)
        }
        return auth
    }

    private func credential(_ user: String?, _ file: String?, _ userFlag: String, _ fileFlag: String) throws -> CHAPCredential? {
        guard user != nil || file != nil else { return nil }
        guard let user, !user.isEmpty, let file else { throw CairnError.invalidArgument("\(userFlag) and \(fileFlag) go together") }
        guard let data = FileManager.default.contents(atPath: file) else { throw CairnError.invalidArgument("cannot read \(file)") }
        var secret = [UInt8](data)
        while let last = secret.last, last == 0x0a || last == 0x0d { secret.removeLast() }
        guard secret.count >= Self.secretBytesMin else {
            throw CairnError.invalidArgument("the CHAP secret in \(file) is shorter than \(Self.secretBytesMin) bytes")
        }
        return CHAPCredential(user: user, secret: secret)
    }

    /// Starts the target; nil when it is not served. Prints its endpoint.
    func start(exports: NBDExportProvider, group: EventLoopGroup, logger: Logger) async throws -> ISCSIServer? {
        let explicit = address != nil
        let text = address ?? Self.defaultAddress
        guard text != "none" else { return nil }
        do {
            let (host, port) = try parseHostPort(text)
            var config = ISCSIServerConfig()
            config.host = host
            config.port = port
            config.auth = try authConfig()
            guard config.auth.chap != nil || config.auth.allowNone else {
                throw CairnError.invalidArgument(
                    "iSCSI needs CHAP (--iscsi-chap-user, --iscsi-chap-secret-file) or --iscsi-allow-no-auth")
            }
            let server = try ISCSIServer(config: config, exports: exports, group: group, logger: logger)
            let endpoint = try await server.start()
            print("iSCSI target serving \(endpoint) (targets \(iscsiTargetPrefix)VOLUME, LUN 0)")
            return server
        } catch {
            if explicit { throw error }
            logger.warning("iSCSI not served", metadata: ["reason": "\(error)"])
            print("iSCSI not served: \(error)")
            return nil
        }
    }
}
