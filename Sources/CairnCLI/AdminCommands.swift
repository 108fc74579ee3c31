// Administration: `cairn status`, `cairn volume ...`, `cairn node ...`.
import ArgumentParser
import CairnClient
import CairnCore
import Foundation

extension ClientOptions {
    func managerClient() throws -> ManagerClient {
        let c = try ClientConfig.resolve(manager: manager, secretFile: secretFile)
        return ManagerClient(baseURL: c.manager, secret: c.secret, group: Runtime.group)
    }
}

func formatAge(_ seconds: Double) -> String {
    if seconds < 1 { return "now" }
    if seconds < 120 { return "\(Int(seconds))s ago" }
    if seconds < 7200 { return "\(Int(seconds / 60))m ago" }
    return "\(Int(seconds / 3600))h ago"
}

func healthText(_ s: VolumeStatus) -> String {
    switch s.health {
    case .healthy: return "healthy"
    case .degraded: return "degraded (\(s.chunksDegraded) chunks)"
    case .rebuilding:
        let pct = s.rebuildTotalBytes == 0 ? 0 : Int(Double(s.rebuildCopiedBytes) * 100 / Double(s.rebuildTotalBytes))
        return "rebuilding \(s.chunksRebuilding) chunks, \(pct)%"
    }
}

func printVolumes(_ volumes: [VolumeStatus]) {
    printTable(["NAME", "SIZE", "KIND", "REPLICAS", "ALLOCATED", "WRITER", "HEALTH"], volumes.map { s in
        [s.volume.name, ByteSize.format(s.volume.sizeBytes), s.volume.kind.rawValue,
         "\(s.volume.replicas) (min \(s.volume.replicasMin))",
         ByteSize.format(UInt64(s.chunksAllocated) * s.volume.chunkSizeBytes), s.volume.writer ?? "-", healthText(s)]
    })
}

func printNodes(_ nodes: [NodeRecord]) {
    let now = Date().timeIntervalSince1970
    printTable(["NODE", "ADDRESS", "ZONE", "STATE", "USED", "CAPACITY", "HEARTBEAT"], nodes.map { n in
        [n.id, n.address, n.zone ?? "-", n.state.rawValue, ByteSize.format(n.usedBytes), ByteSize.format(n.capacityBytes),
         formatAge(now - n.lastHeartbeat)]
    })
}

struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "status", abstract: "Show nodes, capacity and volume health.")
    @OptionGroup var client: ClientOptions

    func run() async throws {
        try await runReporting {
            let s = try await client.managerClient().status()
            if client.output == .json { return try printJSON(s) }
            let up = s.nodes.filter { $0.state == .up }.count
            print("Nodes: \(up) up, \(s.nodes.count - up) not up, of \(s.nodes.count)")
            print("Capacity: \(ByteSize.format(s.usedBytes)) used of \(ByteSize.format(s.capacityBytes))")
            let bad = s.volumes.filter { $0.health != .healthy }
            print("Volumes: \(s.volumes.count - bad.count) healthy, \(bad.filter { $0.health == .degraded }.count) degraded, "
                  + "\(bad.filter { $0.health == .rebuilding }.count) rebuilding")
            print("")
            printNodes(s.nodes)
            if !s.volumes.isEmpty {
                print("")
                printVolumes(s.volumes)
            }
        }
    }
}

struct NodeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "node", abstract: "Storage nodes.", subcommands: [List.self, Drain.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List storage nodes.")
        @OptionGroup var client: ClientOptions
        func run() async throws {
            try await runReporting {
                let nodes = try await client.managerClient().nodes()
                if client.output == .json { return try printJSON(nodes) }
                printNodes(nodes)
            }
        }
    }

    struct Drain: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Move every replica off a node.")
        @Argument var node: String
        @OptionGroup var client: ClientOptions
        func run() async throws {
            try await runReporting {
                try await client.managerClient().drain(node)
                print("node \(node) is draining; `cairn status` shows the copies")
            }
        }
    }
}

struct VolumeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "volume", abstract: "Volumes.",
        subcommands: [Create.self, List.self, Get.self, Delete.self, Resize.self, Set.self, Import.self, Export.self, Verify.self,
                      Clone.self])

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a volume.")
        @Argument var name: String
        @Option(help: "Size, e.g. 10GiB (a multiple of 4 KiB).") var size: String
        @Option(help: "Replication factor.") var replicas = 3
        @Option(name: .customLong("min-replicas"), help: "Replicas that must hold a write (default: replicas - 1, at least 1).")
        var minReplicas: Int?
        @Option(help: "block or filesystem.") var kind: String = "block"
        @OptionGroup var client: ClientOptions
        func run() async throws {
            try await runReporting {
                let bytes = try ByteSize.parse(size)
                guard let k = VolumeKind(rawValue: kind) else {
                    throw CairnError.invalidArgument("kind '\(kind)' is not block or filesystem")
                }
                let v = try await client.managerClient().createVolume(
                    CreateVolumeRequest(name: name, sizeBytes: bytes, replicas: replicas, replicasMin: minReplicas, kind: k))
                if client.output == .json { return try printJSON(v) }
                print("created volume \(v.name): \(ByteSize.format(v.sizeBytes)), \(v.replicas) replicas (min \(v.replicasMin))")
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List volumes.")
        @OptionGroup var client: ClientOptions
        func run() async throws {
            try await runReporting {
                let vs = try await client.managerClient().volumes()
                if client.output == .json { return try printJSON(vs) }
                printVolumes(vs)
            }
        }
    }

    struct Get: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show one volume.")
        @Argument var name: String
        @OptionGroup var client: ClientOptions
        func run() async throws {
            try await runReporting {
                let s = try await client.managerClient().volume(name)
                if client.output == .json { return try printJSON(s) }
                printVolumes([s])
                print("epoch \(s.volume.epoch), id \(s.volume.id), chunk size \(ByteSize.format(s.volume.chunkSizeBytes)), "
                      + "\(s.chunksAllocated) of \(s.volume.chunkCount) chunks allocated")
            }
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete a volume and its data.")
        @Argument var name: String
        @Flag(help: "Delete even while attached.") var force = false
        @OptionGroup var client: ClientOptions
        func run() async throws {
            try await runReporting {
                try await client.managerClient().deleteVolume(name, force: force)
                if client.output == .table { print("deleted volume \(name)") }
            }
        }
    }

    struct Set: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Change a volume's access: --read-only true makes every export read-only and refuses writers.")
        @Argument var name: String
        @Option(name: .customLong("read-only"), help: "true or false.") var readOnly: Bool
        @Flag(help: "Fence out an attached writer when making the volume read-only.") var force = false
        @OptionGroup var client: ClientOptions
        func run() async throws {
            try await runReporting {
                let v = try await client.managerClient().setReadOnly(name, readOnly: readOnly, force: force)
                if client.output == .json { return try printJSON(v) }
                print("volume \(v.name) is now \(v.readOnly ? "read-only" : "writable")")
            }
        }
    }

    struct Resize: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Grow a volume.")
        @Argument var name: String
        @Option(help: "New size (not smaller than the current one).") var size: String
        @OptionGroup var client: ClientOptions
        func run() async throws {
            try await runReporting {
                let v = try await client.managerClient().resizeVolume(name, sizeBytes: try ByteSize.parse(size))
                if client.output == .json { return try printJSON(v) }
                print("volume \(v.name) is now \(ByteSize.format(v.sizeBytes))")
            }
        }
    }
}
