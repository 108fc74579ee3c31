// `cairn snapshot create|list|delete` and `cairn volume clone` (docs/ARCHITECTURE.md,
// "Snapshots and clones"). A snapshot reads as the volume `VOLUME@SNAPSHOT` (read-only)
// wherever a volume name is read: `cairn volume export`, NBD and iSCSI exports.
import ArgumentParser
import CairnClient
import CairnCore
import Foundation

struct SnapshotCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "snapshot", abstract: "Point-in-time, read-only images of block volumes.",
        subcommands: [Create.self, List.self, Get.self, Delete.self])

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Snapshot a block volume (cheap: no data is copied; the volume may stay attached).")
        @Argument(help: "The volume.") var volume: String
        @Argument(help: "The snapshot's name, unique in the cluster.") var name: String
        @OptionGroup var client: ClientOptions
        func run() async throws {
            try await runReporting {
                let s = try await client.managerClient().createSnapshot(volume: volume, name: name)
                if client.output == .json { return try printJSON(s) }
                print("created snapshot \(s.name) of \(s.volume): \(ByteSize.format(s.sizeBytes)), readable as \(s.volume)@\(s.name)")
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List snapshots, of one volume or all.")
        @Argument(help: "Only this volume's snapshots.") var volume: String?
        @OptionGroup var client: ClientOptions
        func run() async throws {
            try await runReporting {
                let ss = try await client.managerClient().snapshots(volume: volume)
                if client.output == .json { return try printJSON(ss) }
                printSnapshots(ss)
            }
        }
    }

    struct Get: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show one snapshot.")
        @Argument var name: String
        @OptionGroup var client: ClientOptions
        func run() async throws {
            try await runReporting {
                let s = try await client.managerClient().snapshot(name)
                if client.output == .json { return try printJSON(s) }
                printSnapshots([s])
            }
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Delete a snapshot. Clones of it keep their data; its space comes back as nothing reads it any more.")
        @Argument var name: String
        @OptionGroup var client: ClientOptions
        func run() async throws {
            try await runReporting {
                try await client.managerClient().deleteSnapshot(name)
                if client.output == .table { print("deleted snapshot \(name)") }
            }
        }
    }
}

func printSnapshots(_ snapshots: [SnapshotRecord]) {
    let now = Date().timeIntervalSince1970
    printTable(["NAME", "VOLUME", "SIZE", "REPLICAS", "CREATED", "EXPORT"], snapshots.map { s in
        [s.name, s.volume, ByteSize.format(s.sizeBytes), "\(s.replicas)", formatAge(now - s.createdAt), "\(s.volume)@\(s.name)"]
    })
}

extension VolumeCommand {
    struct Clone: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a volume with the data of a snapshot or of another volume (cheap: chunks are copied on first write).")
        @Argument(help: "The new volume's name.") var name: String
        @Option(name: .customLong("from-snapshot"), help: "Clone this snapshot.") var fromSnapshot: String?
        @Option(name: .customLong("from-volume"), help: "Clone this volume as it is now.") var fromVolume: String?
        @Option(help: "Replication factor (default: the source's).") var replicas: Int?
        @Option(name: .customLong("min-replicas"), help: "Replicas that must hold a write (default: replicas - 1, at least 1).")
        var minReplicas: Int?
        @Option(help: "Size, at least the source's (default: the source's).") var size: String?
        @OptionGroup var client: ClientOptions
        func run() async throws {
            try await runReporting {
                let source: VolumeSource
                switch (fromSnapshot, fromVolume) {
                case (let s?, nil): source = .snapshot(s)
                case (nil, let v?): source = .volume(v)
                default: throw CairnError.invalidArgument("give exactly one of --from-snapshot and --from-volume")
                }
                let v = try await client.managerClient().cloneVolume(
                    name: name, from: source, replicas: replicas, minReplicas: minReplicas, sizeBytes: try size.map(ByteSize.parse))
                if client.output == .json { return try printJSON(v) }
                print("created volume \(v.name) from \(source): \(ByteSize.format(v.sizeBytes)), \(v.replicas) replicas (min \(v.replicasMin))")
            }
        }
    }
}
