// Deleting a filesystem volume also deletes what only it uses: its metadata under
// /fs/NAME/ (in the same transaction as its volume record) and the data volumes of its
// mounts — those its v/<mount id> records name, and block volumes named NAME.d.<8 hex
// digits> that a mount created but never recorded (it died in between). While mounts
// are live (session records under /fs/NAME/m/) the delete is refused unless forced.
import CairnCore
import CairnMeta
import Foundation

extension Manager {
    /// The data volumes of filesystem `name`; throws while it is mounted, unless `force`.
    func filesystemDataVolumes(_ name: String, force: Bool) async throws -> [String] {
        let prefix = MetaWire.filesystemPrefix(name)
        let sessions = try await store.range(prefix: prefix + "m/", after: nil, limit: 1)
        if !sessions.items.isEmpty && !force {
            throw CairnError.conflict("filesystem '\(name)' is mounted; unmount it everywhere first or use --force")
        }
        var names = Set<String>()
        struct DataVolume: Decodable { var volume: String }
        for kv in try await store.rangeAll(prefix: prefix + "v/") {
            if let d = try? JSONDecoder().decode(DataVolume.self, from: Data(kv.value)) { names.insert(d.volume) }
        }
        let hex = Set("0123456789abcdef")
        for v in try await listVolumes() where v.kind == .block && v.name.hasPrefix(name + ".d.") {
            let tail = v.name.dropFirst(name.count + 3)
            if tail.count == 8 && tail.allSatisfy(hex.contains) { names.insert(v.name) }
        }
        return names.sorted()
    }

    /// Deletes the data volumes of a deleted filesystem (already gone ones are fine).
    func deleteFilesystemData(_ volumes: [String]) async {
        for v in volumes {
            do { try await deleteVolume(v, force: true) } catch {
                logger.warning("could not delete a deleted filesystem's data volume", metadata: ["volume": "\(v)", "error": "\(error)"])
            }
        }
    }
}
