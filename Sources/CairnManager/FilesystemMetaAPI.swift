// The metadata proxy of shared filesystems: POST /v1/fs/{name}/meta/{get,getmany,range,
// txn,revision,watch}. A FUSE mount on any host reads and changes its filesystem's
// metadata through these routes (CairnFS.RemoteMetaStore), with the same transaction
// semantics as the store itself. Every key and prefix must lie under /fs/{name}/ and
// {name} must be a volume of kind filesystem: a mount cannot touch the cluster's own
// records or another filesystem's.
import CairnCore
import CairnMeta
import CairnNet
import Foundation

extension ManagerAPI {
    func filesystemMeta(_ name: String, _ op: String, _ req: HTTPRequest) async throws -> HTTPResponse {
        // A read of a filesystem checked within `FilesystemsSeen.validity` skips the
        // check (a read of a just-deleted filesystem's prefix finds what the deletion
        // left, at worst); a transaction always checks, so nothing is ever written under
        // the prefix of a volume that is not a filesystem.
        if op == "txn" || !filesystemsSeen.recently(name) {
            guard let (record, _) = try await manager.store.getJSON(Keys.volume(name), as: VolumeRecord.self) else {
                filesystemsSeen.forget(name)
                throw CairnError.notFound("no filesystem '\(name)'")
            }
            guard record.kind == .filesystem else {
                filesystemsSeen.forget(name)
                throw CairnError.invalidArgument("volume '\(name)' is a \(record.kind.rawValue) volume, not a filesystem")
            }
            filesystemsSeen.saw(name)
        }
        return try await scopedMeta(prefix: MetaWire.filesystemPrefix(name), owner: "filesystem '\(name)'", op, req)
    }

    /// The CSI plugin's records (volume parameters, publications): the same operations,
    /// confined to /csi/, so a plugin cannot touch the cluster's own records.
    func csiMeta(_ op: String, _ req: HTTPRequest) async throws -> HTTPResponse {
        try await scopedMeta(prefix: MetaWire.csiPrefix, owner: "the CSI records", op, req)
    }

    /// get/range/txn/revision/watch on the metadata store, every key under `prefix`.
    func scopedMeta(prefix: String, owner: String, _ op: String, _ req: HTTPRequest) async throws -> HTTPResponse {
        func scoped(_ keys: [String]) throws {
            for k in keys where !k.hasPrefix(prefix) {
                throw CairnError.invalidArgument("key '\(k)' is outside \(owner) (\(prefix))")
            }
        }
        let store = manager.store
        switch op {
        case "get":
            let r: MetaWire.GetRequest = try Self.decode(req.body)
            try scoped([r.key])
            return try Self.json(MetaWire.GetAnswer(kv: try await store.get(r.key).map(MetaWire.KV.init)))
        case "getmany":
            let r: MetaWire.GetManyRequest = try Self.decode(req.body)
            try scoped(r.keys)
            return try Self.json(MetaWire.GetManyAnswer(kvs: try await store.getMany(r.keys).map { $0.map(MetaWire.KV.init) }))
        case "range":
            let r: MetaWire.RangeRequest = try Self.decode(req.body)
            try scoped([r.prefix])
            return try Self.json(MetaWire.RangeAnswer(try await store.range(prefix: r.prefix, after: r.after, limit: r.limit)))
        case "txn":
            let r: MetaWire.TxnRequest = try Self.decode(req.body)
            try scoped(r.keys)
            let result = try await store.txn(compare: try r.compare.map { try $0.decoded() },
                                             success: try r.success.map { try $0.decoded() },
                                             failure: try r.failure.map { try $0.decoded() })
            return try Self.json(MetaWire.TxnAnswer(succeeded: result.succeeded, revision: result.revision))
        case "revision":
            return try Self.json(MetaWire.RevisionAnswer(revision: try await store.currentRevision()))
        case "watch":
            let r: MetaWire.WatchRequest = try Self.decode(req.body)
            try scoped([r.prefix])
            let timeout = min(Duration.milliseconds(max(0, r.timeoutMilliseconds)), .seconds(30))
            let events = try await store.watch(prefix: r.prefix, afterRevision: r.afterRevision, timeout: timeout)
            return try Self.json(events.map(MetaWire.Event.init))
        default:
            throw CairnError.notFound("no filesystem metadata operation '\(op)'")
        }
    }
}

/// When the metadata proxy last found each filesystem's volume record (bounded: a full
/// table is emptied, which costs only re-checks).
final class FilesystemsSeen: Sendable {
    static let validity = Duration.seconds(1)
    static let namesMax = 4096
    private let seen = Locked<[String: ContinuousClock.Instant]>([:])

    func recently(_ name: String) -> Bool {
        guard let at = seen.withLock({ $0[name] }) else { return false }
        return ContinuousClock.now - at < Self.validity
    }

    func saw(_ name: String) {
        seen.withLock { s in
            if s.count >= Self.namesMax { s.removeAll() }
            s[name] = ContinuousClock.now
        }
    }

    func forget(_ name: String) { _ = seen.withLock { $0.removeValue(forKey: name) } }
}
