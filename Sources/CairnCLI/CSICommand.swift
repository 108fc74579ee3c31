// `cairn csi`: the CSI plugin (Identity always; Controller and/or Node as asked).
import ArgumentParser
import CairnCSI
import CairnCore
import Foundation

struct CSICommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "csi",
        abstract: "Serve the Container Storage Interface (Identity, Controller, Node) on a unix socket.")
    @Option(help: "The socket to serve, e.g. unix:///var/lib/kubelet/plugins/cairn.csi.io/csi.sock.") var endpoint: String
    @Option(name: .customLong("node-id"), help: "This node's id, as the CO knows it.") var nodeID: String
    @Flag(help: "Serve the Controller service.") var controller = false
    @Flag(help: "Serve the Node service.") var node = false
    @Option(help: "Where the Node service keeps its records of staged volumes.") var stateDir = "/var/lib/cairn/csi"
    @Option(help: "This node's zone, reported as topology \(CSILimits.zoneKey).") var zone: String?
    @Option(help: "The gateway's NBD address, for the nbd attach method.") var nbdAddress = "127.0.0.1:10809"
    @Option(help: "The gateway's iSCSI portal, for the iscsi attach method.") var iscsiPortal = "127.0.0.1:3260"
    @OptionGroup var client: ClientOptions

    func run() async throws {
        try await runReporting {
            let c = try ClientConfig.resolve(manager: client.manager, secretFile: client.secretFile)
            let config = CSIPluginConfig(endpoint: endpoint, nodeID: nodeID, controller: controller, node: node,
                                         stateDirectory: stateDir, zone: zone, managers: c.manager, secret: c.secret,
                                         nbdAddress: nbdAddress, iscsiPortal: iscsiPortal)
            try await CSIPlugin.run(config, group: Runtime.group, logger: Runtime.logger("cairn.csi")) {
                _ = await Runtime.waitForTermination()
            }
        }
    }
}
