// Layout of the manager's records in the metadata store. Every value is JSON.
//   /cairn/nodes/<node id>                 NodeRecord
//   /cairn/volumes/<name>                  VolumeRecord (holds the volume's epoch)
//   /cairn/volume-ids/<id, 16 hex>         name of the volume with that id
//   /cairn/chunks/<id, 16 hex>/<index, 8 hex>   ChunkRecord (only for allocated chunks)
//   /cairn/snapshots/<name>                VolumeRecord of a snapshot layer (`snapshotOf` set;
//                                          hidden layers are named "~<id hex>")
//   /cairn/snapshot-ids/<id, 16 hex>       name of the snapshot layer with that id
//   /cairn/counters/volume-id              last volume (and snapshot layer) id handed out
import CairnCore
import Foundation

enum Keys {
    static let nodes = "/cairn/nodes/"
    static let volumes = "/cairn/volumes/"
    static let volumeIDs = "/cairn/volume-ids/"
    static let chunks = "/cairn/chunks/"
    static let volumeCounter = "/cairn/counters/volume-id"
    static let snapshots = "/cairn/snapshots/"
    static let snapshotIDs = "/cairn/snapshot-ids/"

    static func node(_ id: NodeID) -> String { nodes + id }
    static func volume(_ name: String) -> String { volumes + name }
    static func volumeID(_ id: VolumeID) -> String { volumeIDs + hex16(id) }
    static func snapshot(_ name: String) -> String { snapshots + name }
    static func snapshotID(_ id: VolumeID) -> String { snapshotIDs + hex16(id) }
    static func chunkPrefix(_ id: VolumeID) -> String { chunks + hex16(id) + "/" }
    static func chunk(_ id: VolumeID, _ index: ChunkIndex) -> String {
        chunkPrefix(id) + String(format: "%08x", index)
    }
    static func hex16(_ v: UInt64) -> String { String(format: "%016llx", v) }
}
