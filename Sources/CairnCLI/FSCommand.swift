// `cairn fs gc NAME`: garbage collection of a shared filesystem's data (CairnFS
// Collector.swift). Retires the data volumes of mounts that ended, deletes those no file
// map references and trims the unreferenced blocks of the rest, then asks every live
// mount to trim its own volume and waits for their answers.
import ArgumentParser
import CairnClient
import CairnCore
import CairnFS
import CairnMeta
import CairnNet
import Foundation

struct FSCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fs", abstract: "Shared filesystem maintenance.", subcommands: [Collect.self])

    struct Collect: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "gc",
            abstract: "Free the data no file references: ended mounts' data volumes, overwritten and deleted slices.")
        @Argument(help: "The filesystem volume.") var name: String
        @Option(help: "How long to wait for the live mounts to trim their own volumes (e.g. 60s; 0: do not ask them).")
        var wait = DurationArgument(argument: "60s")!
        @OptionGroup var client: ClientOptions

        struct Output: Codable {
            var ended: CollectionReport
            /// Bytes each live mount trimmed from its own volume.
            var mounts: [String: UInt64]
            /// Live mounts that did not answer in time.
            var unanswered: [String]
        }

        func run() async throws {
            try await runReporting {
                let c = try ClientConfig.resolve(manager: client.manager, secretFile: client.secretFile)
                let mc = ManagerClient(baseURL: c.manager, secret: c.secret, group: Runtime.group)
                let record = try await mc.volume(name).volume
                guard record.kind == .filesystem else {
                    throw CairnError.invalidArgument("volume '\(name)' is a \(record.kind.rawValue) volume, not a filesystem")
                }
                let store = RemoteMetaStore(managers: c.manager, secret: c.secret, filesystem: name, group: Runtime.group)
                let admin = ManagerDataVolumes(manager: mc, secret: c.secret)
                let collector = Collector(store: store, prefix: MetaWire.filesystemPrefix(name), admin: admin)
                let asking = wait.value > .zero
                let request = asking ? try await collector.requestMountCollection() : 0
                let ended = try await collector.collectEnded(sizeOf: admin.writtenBytes)
                var output = Output(ended: ended, mounts: [:], unanswered: [])
                let clock = ContinuousClock()
                let deadline = clock.now + wait.value
                while asking {
                    let sessions = try await collector.sessions()
                    output.unanswered = sessions.filter { ($0.value.collected ?? 0) < request }.keys.sorted()
                    for (id, s) in sessions where (s.collected ?? 0) >= request { output.mounts[id] = s.collectedBytes ?? 0 }
                    if output.unanswered.isEmpty || clock.now >= deadline { break }
                    try await Task.sleep(for: .milliseconds(500))
                }
                if client.output == .json { return try printJSON(output) }
                print("retired: \(ended.retired.sorted().joined(separator: " "))")
                print("deleted: \(ended.deleted.sorted().joined(separator: " "))")
                for (v, bytes) in ended.kept.sorted(by: { $0.key < $1.key }) { print("kept: \(v) (\(bytes) bytes referenced)") }
                print("trimmed from ended mounts' volumes: \(ended.trimmedBytes) bytes")
                for (id, bytes) in output.mounts.sorted(by: { $0.key < $1.key }) { print("mount \(id) trimmed \(bytes) bytes") }
                if !output.unanswered.isEmpty { print("mounts that did not answer in time: \(output.unanswered.joined(separator: " "))") }
            }
        }
    }
}

/// Ended mounts' data volumes through the manager: deleted, or attached for writing
/// (forced: their writer is gone) to trim.
struct ManagerDataVolumes: DataVolumeAdmin {
    let manager: ManagerClient
    let secret: String

    func trim(volume: String, _ ranges: [Range<UInt64>]) async throws {
        guard !ranges.isEmpty else { return }
        let clientID = "fs-gc-\(ProcessInfo.processInfo.hostName)-\(getpid())"
        var options = VolumeClientOptions(clientID: clientID)
        options.force = true
        let pool = DataConnectionPool(secret: secret, client: clientID, group: Runtime.group)
        let writer = try await VolumeClient.open(volume, control: manager, transport: pool, options: options,
                                                 logger: Runtime.logger("cairn.fs-gc"))
        defer { pool.closeAll() }
        do {
            for r in ranges { try await writer.trim(offset: r.lowerBound, length: Int(r.count)) }
        } catch {
            await writer.close()
            throw error
        }
        await writer.close()
    }

    /// The end of the volume's written chunks: only chunks that were ever written hold data.
    @Sendable func writtenBytes(_ volume: String) async throws -> UInt64 {
        let map = try await manager.map(volume)
        let top = map.chunks.map(\.index).max().map { UInt64($0) + 1 } ?? 0
        return min(map.volume.sizeBytes, top * map.volume.chunkSizeBytes)
    }

    func delete(volume: String) async throws {
        do {
            try await manager.deleteVolume(volume, force: true)
        } catch CairnError.notFound {
            // Deleted by an earlier collection that stopped before its record went.
        }
    }
}
