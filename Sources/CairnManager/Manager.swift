// The cluster manager: the only authority over volumes, replica sets and epochs.
//
// Invariants:
//  - Every change of a chunk's replica set and every attach of a writer bumps the volume's
//    epoch in the same store transaction, guarded by compare-and-swap on the records'
//    mod revisions; nothing else changes an epoch.
//  - After an epoch bump the new epoch is pushed (FENCE) to the storage nodes before the
//    change is acted on, so a writer still using the old epoch is refused and must
//    re-read the map.
//  - A replica is removed on a writer's report only while at least `replicasMin` healthy
//    replicas remain.
// Fault model: the store is the truth; any in-memory state (rebuild tasks, progress) is
// rebuilt from it after a restart.
import CairnCore
import CairnMeta
import CairnWire
import Foundation
import Logging

public struct ManagerConfig: Sendable {
    /// A node that has not sent a heartbeat for this long is down.
    public var heartbeatTimeout: Duration = .seconds(5)
    /// A down node's replicas are rebuilt elsewhere after this long.
    public var gracePeriod: Duration = .seconds(30)
    public var rebuildsMax = 8
    public var rebuildsPerNodeMax = 2
    /// Copy rate limit of one rebuild, bytes per second.
    public var rebuildBytesPerSecond: UInt64 = 256 << 20
    public var superviseInterval: Duration = .milliseconds(500)
    public var chunkSizeDefault = UInt64(CairnCore.chunkSizeDefault)
    public init() {}
}

/// What the manager asks of storage nodes. The real one speaks the data-path protocol;
/// the simulation substitutes its own.
public protocol NodeCommander: Sendable {
    func fence(_ node: NodeRecord, volume: VolumeID, epoch: Epoch) async throws
    func rebuild(_ node: NodeRecord, order: RebuildOrder) async throws
    func deleteVolume(_ node: NodeRecord, volume: VolumeID, epoch: Epoch) async throws
    /// Copies the node's replica of chunk `from` (a snapshot layer's) to chunk `to`
    /// locally (copy-up); keeps `to` if the node has it already.
    func copyChunk(_ node: NodeRecord, from: ChunkAddress, to: ChunkAddress) async throws
}

/// Seconds since 1970; injectable so tests and the simulation control time.
public protocol TimeSource: Sendable {
    func now() -> Double
}

public struct SystemTime: TimeSource {
    public init() {}
    public func now() -> Double { Date().timeIntervalSince1970 }
}

extension Duration {
    var seconds: Double {
        let c = components
        return Double(c.seconds) + Double(c.attoseconds) / 1e18
    }
}

public final class Manager: @unchecked Sendable {
    public let store: MetaStore
    public let config: ManagerConfig
    let time: TimeSource
    let nodes: NodeCommander
    let logger: Logger
    /// Rebuilds this manager process is running: chunk -> target node.
    let rebuilding = Locked<[ChunkRef: NodeID]>([:])
    /// Progress reported by targets in their heartbeats.
    let progress = Locked<[ChunkRef: RebuildProgress]>([:])
    /// Chunks whose last rebuild failed, with when to try again.
    let rebuildBackoff = Locked<[ChunkRef: Double]>([:])
    /// Nodes a writer or a rebuild could not reach, with when: no new replicas go there
    /// until the node heartbeats again after that moment.
    let suspects = Locked<[NodeID: Double]>([:])
    /// Chunks whose copy-up from a snapshot layer this manager is running (one at a time each).
    let copyUps = Locked<Set<ChunkRef>>([])

    public init(store: MetaStore, config: ManagerConfig, time: TimeSource = SystemTime(),
                nodes: NodeCommander, logger: Logger) {
        self.store = store; self.config = config; self.time = time; self.nodes = nodes; self.logger = logger
    }

    // MARK: - Reading records

    /// The record of a layer: a volume by name, or a snapshot as `VOLUME@SNAPSHOT` or
    /// `@SNAPSHOT` (internal callers); stored under `recordKey(name)`.
    func volumeRecord(_ name: String) async throws -> (VolumeRecord, Int64) {
        if let (volume, snapshot) = Self.splitSnapshotName(name) {
            guard let (s, rev) = try await store.getJSON(Keys.snapshot(snapshot), as: VolumeRecord.self),
                  volume.isEmpty || s.snapshotOf == volume else {
                throw CairnError.notFound("snapshot '\(volume)@\(snapshot)' does not exist")
            }
            return (s, rev)
        }
        guard let v = try await store.getJSON(Keys.volume(name), as: VolumeRecord.self) else {
            throw CairnError.notFound("volume '\(name)' does not exist")
        }
        return v
    }

    /// Where the record of the layer `name` (as `volumeRecord` takes it) is stored.
    static func recordKey(_ name: String) -> String {
        if let (_, snapshot) = splitSnapshotName(name) { return Keys.snapshot(snapshot) }
        return Keys.volume(name)
    }

    /// `VOLUME@SNAPSHOT` -> (VOLUME, SNAPSHOT); nil for a plain volume name.
    static func splitSnapshotName(_ name: String) -> (String, String)? {
        guard let at = name.firstIndex(of: "@") else { return nil }
        return (String(name[..<at]), String(name[name.index(after: at)...]))
    }

    /// Refuses snapshot names where only volumes make sense (resize, delete, attach...).
    static func requireVolumeName(_ name: String) throws {
        if splitSnapshotName(name) != nil {
            throw CairnError.invalidArgument("'\(name)' is a snapshot, which is read-only; this needs a volume")
        }
    }

    func chunkRecords(_ id: VolumeID) async throws -> [(ChunkRecord, Int64)] {
        try await store.rangeAll(prefix: Keys.chunkPrefix(id)).map {
            (try JSONDecoder().decode(ChunkRecord.self, from: Data($0.value)), $0.modRevision)
        }
    }

    public func listNodes() async throws -> [NodeRecord] {
        try await store.rangeAll(prefix: Keys.nodes).map { try JSONDecoder().decode(NodeRecord.self, from: Data($0.value)) }
    }

    public func listVolumes() async throws -> [VolumeRecord] {
        try await store.rangeAll(prefix: Keys.volumes).map { try JSONDecoder().decode(VolumeRecord.self, from: Data($0.value)) }
    }

    /// A volume's record; for `VOLUME@SNAPSHOT` the snapshot's, named as asked.
    public func volume(_ name: String) async throws -> VolumeRecord {
        var v = try await volumeRecord(name).0
        v.name = name
        return v
    }

    public func map(_ name: String) async throws -> VolumeMap {
        let v = try await volume(name)
        return VolumeMap(volume: v, chunks: try await chunkRecords(v.id).map(\.0), nodes: try await listNodes(),
                         backing: try await backingLayers(of: v))
    }

    // MARK: - Volumes

    static func validateName(_ name: String) throws { try validateVolumeName(name) }

    public func createVolume(_ req: CreateVolumeRequest) async throws -> VolumeRecord {
        try await insertVolume(req, from: nil)
    }

    /// Creates a volume record: empty, or a clone reading through to `base` (whose record
    /// must not change meanwhile: a snapshot deleted under a clone fails the clone).
    func insertVolume(_ req: CreateVolumeRequest, from base: CloneBase?) async throws -> VolumeRecord {
        try Self.validateName(req.name)
        guard req.sizeBytes > 0, req.sizeBytes % UInt64(blockSize) == 0 else {
            throw CairnError.invalidArgument("volume size \(req.sizeBytes) must be a positive multiple of 4096 bytes")
        }
        let replicas = req.replicas ?? 3
        guard (1...5).contains(replicas) else {
            throw CairnError.invalidArgument("replication factor \(replicas) must be between 1 and 5")
        }
        let replicasMin = req.replicasMin ?? max(1, replicas - 1)
        guard (1...replicas).contains(replicasMin) else {
            throw CairnError.invalidArgument("minimum replicas \(replicasMin) must be between 1 and the replication factor \(replicas)")
        }
        let chunkSize = req.chunkSizeBytes ?? config.chunkSizeDefault
        guard chunkSize >= 1 << 20, chunkSize <= 1 << 30, chunkSize % UInt64(blockSize) == 0 else {
            throw CairnError.invalidArgument("chunk size must be a multiple of 4096 between 1 MiB and 1 GiB")
        }
        let up = try await listNodes().filter { $0.state == .up && !$0.draining }
        guard up.count >= replicas else {
            throw CairnError.insufficientNodes(
                "\(replicas) replicas need \(replicas) storage nodes up; \(up.count) \(up.count == 1 ? "is" : "are") up")
        }
        for _ in 0..<MetaLimits.updateRetriesMax {
            if let (existing, _) = try await store.getJSON(Keys.volume(req.name), as: VolumeRecord.self) {
                if let id = req.requestID, existing.createRequestID == id { return existing }  // A retry.
                if let base, existing.contentSource == base.source, existing.sizeBytes == req.sizeBytes {
                    return existing  // The same clone again.
                }
                throw CairnError.alreadyExists("volume '\(req.name)' already exists")
            }
            let counter = try await store.getJSON(Keys.volumeCounter, as: UInt64.self)
            let id = (counter?.0 ?? 0) + 1
            // A clone's epoch starts above its source's, so its writes always carry newer
            // versions than the blocks it copies up.
            var record = VolumeRecord(
                id: id, name: req.name, sizeBytes: req.sizeBytes, kind: req.kind ?? .block, replicas: replicas,
                replicasMin: replicasMin, chunkSizeBytes: chunkSize, epoch: (base?.layer.epoch ?? 0) + 1, createdAt: time.now())
            record.createRequestID = req.requestID
            record.backing = base?.layer.id
            record.contentSource = base?.source
            var compares: [TxnCompare] = [.modRevision(key: Keys.volumeCounter, equals: counter?.1 ?? 0),
                                          .modRevision(key: Keys.volume(req.name), equals: 0)]
            if let base { compares.append(.modRevision(key: base.key, equals: base.revision)) }
            let result = try await store.txn(
                compare: compares,
                success: [try store.putJSON(Keys.volumeCounter, id), try store.putJSON(Keys.volume(req.name), record),
                          try store.putJSON(Keys.volumeID(id), req.name)],
                failure: [])
            if result.succeeded {
                logger.info("volume created", metadata: ["volume": "\(req.name)", "id": "\(id)", "size": "\(req.sizeBytes)",
                                                         "source": "\(base.map { "\($0.source)" } ?? "none")"])
                return record
            }
            if let base, try await store.get(base.key)?.modRevision != base.revision {
                throw CairnError.conflict("\(base.source) changed while cloning it; try again")
            }
        }
        throw CairnError.conflict("could not create volume '\(req.name)': too much contention")
    }

    public func deleteVolume(_ name: String, force: Bool) async throws {
        try Self.requireVolumeName(name)
        let (v, rev) = try await volumeRecord(name)
        if let w = v.writer, !force {
            throw CairnError.conflict("volume '\(name)' is attached to \(w); detach it first or use --force")
        }
        let fs = v.kind == .filesystem  // its metadata and data volumes go too (FilesystemDelete.swift)
        let dataVolumes = fs ? try await filesystemDataVolumes(name, force: force) : []
        let result = try await store.txn(
            compare: [.modRevision(key: Keys.volume(name), equals: rev)],
            success: [.delete(key: Keys.volume(name)), .delete(key: Keys.volumeID(v.id)), .deletePrefix(Keys.chunkPrefix(v.id))]
                + (fs ? [.deletePrefix(MetaWire.filesystemPrefix(name))] : []),
            failure: [])
        guard result.succeeded else { throw CairnError.conflict("volume '\(name)' changed while deleting it; try again") }
        logger.info("volume deleted", metadata: ["volume": "\(name)"])
        // Space comes back now where nodes answer, and through heartbeat garbage collection otherwise.
        for node in try await listNodes() where node.state == .up {
            try? await nodes.deleteVolume(node, volume: v.id, epoch: v.epoch + 1)
        }
        await deleteFilesystemData(dataVolumes)
    }

    public func resizeVolume(_ name: String, sizeBytes: UInt64) async throws -> VolumeRecord {
        try Self.requireVolumeName(name)
        guard sizeBytes % UInt64(blockSize) == 0 else {
            throw CairnError.invalidArgument("volume size \(sizeBytes) must be a multiple of 4096 bytes")
        }
        let updated = try await mutateVolume(name) { v in
            guard sizeBytes >= v.sizeBytes else {
                throw CairnError.invalidArgument(
                    "volume '\(name)' is \(v.sizeBytes) bytes; shrinking to \(sizeBytes) is not supported")
            }
            v.sizeBytes = sizeBytes
        }
        await pushFence(updated)
        return updated
    }

    /// Makes the volume read-only (no writer may attach; the block exports are read-only)
    /// or writable again. An attached writer is refused unless `force`, which detaches it;
    /// the epoch bump and fence push then stop its writes on every replica.
    public func setReadOnly(_ name: String, readOnly: Bool, force: Bool) async throws -> VolumeRecord {
        try Self.requireVolumeName(name)
        let updated = try await mutateVolume(name) { v in
            if readOnly, let w = v.writer {
                guard force else {
                    throw CairnError.conflict("volume '\(name)' is attached to \(w); detach it there or use --force to fence it out")
                }
                v.writer = nil
            }
            v.readOnly = readOnly
        }
        logger.info("volume access changed", metadata: ["volume": "\(name)", "readOnly": "\(readOnly)", "epoch": "\(updated.epoch)"])
        await pushFence(updated)
        return updated
    }

    /// Applies `change` to the volume and bumps its epoch, with compare-and-swap.
    func mutateVolume(_ name: String, _ change: (inout VolumeRecord) throws -> Void) async throws -> VolumeRecord {
        for _ in 0..<MetaLimits.updateRetriesMax {
            var (v, rev) = try await volumeRecord(name)
            try change(&v)
            v.epoch += 1
            let key = Self.recordKey(name)
            let r = try await store.txn(compare: [.modRevision(key: key, equals: rev)],
                                        success: [try store.putJSON(key, v)], failure: [])
            if r.succeeded { return v }
        }
        throw CairnError.conflict("volume '\(name)' is changing too fast; try again")
    }

    /// Tells every live node the volume's new epoch, so older requests are refused there.
    func pushFence(_ v: VolumeRecord, except: Set<NodeID> = []) async {
        let targets = ((try? await listNodes()) ?? []).filter { $0.state == .up && !except.contains($0.id) }
        await withTaskGroup(of: Void.self) { group in
            for node in targets {
                group.addTask {
                    do { try await self.nodes.fence(node, volume: v.id, epoch: v.epoch) } catch {
                        self.logger.warning("fence push failed", metadata: ["node": "\(node.id)", "error": "\(error)"])
                    }
                }
            }
        }
    }

    // MARK: - Writers

    public func attach(_ name: String, _ req: AttachRequest) async throws -> VolumeMap {
        if req.readOnly { return try await map(name) }
        if Self.splitSnapshotName(name) != nil {
            throw CairnError.invalidArgument("'\(name)' is a snapshot: it is read-only, open it read-only")
        }
        guard !req.client.isEmpty else { throw CairnError.invalidArgument("attach needs a client id") }
        let v = try await mutateVolume(name) { v in
            guard !v.readOnly else {
                throw CairnError.invalidArgument(
                    "volume '\(name)' is read-only; make it writable with: cairn volume set \(name) --read-only false")
            }
            if let w = v.writer, w != req.client, !req.force {
                throw CairnError.conflict("volume '\(name)' is attached to \(w); detach it there or attach with --force")
            }
            v.writer = req.client
        }
        logger.info("volume attached", metadata: ["volume": "\(name)", "writer": "\(req.client)", "epoch": "\(v.epoch)"])
        await pushFence(v)
        return try await map(name)
    }

    /// Clears the writer. No epoch bump: the leaving writer fences nobody, and the next
    /// attach bumps the epoch anyway.
    public func detach(_ name: String, client: String) async throws {
        for _ in 0..<MetaLimits.updateRetriesMax {
            var (v, rev) = try await volumeRecord(name)
            guard v.writer == client else { return }
            v.writer = nil
            let r = try await store.txn(compare: [.modRevision(key: Keys.volume(name), equals: rev)],
                                        success: [try store.putJSON(Keys.volume(name), v)], failure: [])
            if r.succeeded { return }
        }
    }

    public func allocateChunk(_ name: String, index: ChunkIndex, _ req: AllocateChunkRequest) async throws -> VolumeMap {
        for _ in 0..<MetaLimits.updateRetriesMax {
            let (v, vrev) = try await volumeRecord(name)
            guard v.writer == req.client else {
                throw CairnError.conflict("volume '\(name)' is not attached to \(req.client)")
            }
            guard req.epoch == v.epoch else { throw CairnError.staleEpoch(current: v.epoch) }
            guard Int(index) < v.chunkCount else {
                throw CairnError.invalidArgument("chunk \(index) is past the end of volume '\(name)'")
            }
            let key = Keys.chunk(v.id, index)
            if try await store.get(key) != nil { return try await map(name) }
            if let (layer, source) = try await backingChunk(of: v, index: index) {
                if try await copyUp(name, v, revision: vrev, index: index, layer: layer, source: source) {
                    return try await map(name)
                }
                continue
            }
            let placed = Placement.choose(count: v.replicas, existing: [], nodes: try await listNodes(),
                                          exclude: suspectNodes())
            guard placed.count >= v.replicasMin else {
                throw CairnError.insufficientNodes(
                    "cannot place a chunk of '\(name)': \(v.replicasMin) replicas needed, \(placed.count) storage nodes up")
            }
            let chunk = ChunkRecord(volume: v.id, index: index, replicas: placed.map { ReplicaRecord(node: $0, state: .healthy) })
            let r = try await store.txn(
                compare: [.modRevision(key: Keys.volume(name), equals: vrev), .modRevision(key: key, equals: 0)],
                success: [try store.putJSON(key, chunk)], failure: [])
            if r.succeeded { return try await map(name) }
        }
        throw CairnError.conflict("could not allocate chunk \(index) of '\(name)'; try again")
    }

    /// A writer could not reach `report.node` for chunk `index`: drop that replica from the
    /// set (remembering it for a later resync) and bump the epoch, if enough remain.
    public func reportFailure(_ name: String, index: ChunkIndex, _ report: ReplicaFailureReport) async throws -> VolumeMap {
        for _ in 0..<MetaLimits.updateRetriesMax {
            var (v, vrev) = try await volumeRecord(name)
            // Only a writer on the current map may shrink a replica set: a fenced-out
            // writer's report is refused (it re-reads the map and, if it is still the
            // writer, reports again under the new epoch).
            guard report.epoch == v.epoch else { throw CairnError.staleEpoch(current: v.epoch) }
            let key = Keys.chunk(v.id, index)
            guard var (chunk, crev) = try await store.getJSON(key, as: ChunkRecord.self),
                  chunk.replicas.contains(where: { $0.node == report.node }) else {
                return try await map(name)  // Already handled.
            }
            let remaining = chunk.replicas.filter { $0.node != report.node }
            let healthy = remaining.filter { $0.state == .healthy }.count
            guard healthy >= v.replicasMin else {
                throw CairnError.insufficientNodes(
                    "chunk \(index) of '\(name)' would keep \(healthy) healthy replicas, below the minimum of \(v.replicasMin)")
            }
            suspect(report.node)
            chunk.stale.removeAll { $0.node == report.node }
            // A replica still being filled holds only what it copied so far: a later
            // resync must start where its copy started (0: a full copy), not at this epoch.
            let leaving = chunk.replicas.first { $0.node == report.node }!
            let resyncFrom = leaving.state == .healthy ? v.epoch : leaving.sinceEpoch
            chunk.stale.append(StaleReplica(node: report.node, leftAtEpoch: resyncFrom))
            chunk.replicas = remaining
            v.epoch += 1
            let r = try await store.txn(
                compare: [.modRevision(key: Keys.volume(name), equals: vrev), .modRevision(key: key, equals: crev)],
                success: [try store.putJSON(Keys.volume(name), v), try store.putJSON(key, chunk)], failure: [])
            if r.succeeded {
                logger.warning("replica removed on a writer's report", metadata: [
                    "volume": "\(name)", "chunk": "\(index)", "node": "\(report.node)", "reason": "\(report.reason)",
                    "epoch": "\(v.epoch)"])
                await pushFence(v, except: [report.node])
                return try await map(name)
            }
        }
        throw CairnError.conflict("could not update chunk \(index) of '\(name)'; try again")
    }

    // MARK: - Nodes

    func suspect(_ node: NodeID) { suspects.withLock { $0[node] = time.now() } }
    func suspectNodes() -> Set<NodeID> { Set(suspects.snapshot.keys) }

    public func heartbeat(_ hb: HeartbeatRequest) async throws -> HeartbeatReply {
        guard !hb.id.isEmpty, hb.id.count <= 128 else { throw CairnError.invalidArgument("node id must be 1 to 128 characters") }
        _ = try parseHostPortLoose(hb.address)
        if let size = hb.chunkSizeBytes, size != config.chunkSizeDefault {
            throw CairnError.invalidArgument(
                "storage node \(hb.id) uses chunk size \(size) bytes but the cluster uses \(config.chunkSizeDefault); "
                    + "start it with --chunk-size \(config.chunkSizeDefault)")
        }
        let now = time.now()
        let key = Keys.node(hb.id)
        try await store.update(key: key, retries: 100) { (old: NodeRecord?) -> NodeRecord? in
            var n = old ?? NodeRecord(id: hb.id, address: hb.address, zone: hb.zone, state: .up,
                                      capacityBytes: 0, usedBytes: 0, lastHeartbeat: now)
            if n.state == .down { logger.info("storage node is up again", metadata: ["node": "\(hb.id)"]) }
            n.address = hb.address; n.zone = hb.zone
            n.state = n.draining ? .draining : .up
            n.downSince = nil
            n.capacityBytes = hb.capacityBytes; n.usedBytes = hb.usedBytes; n.lastHeartbeat = now
            return n
        }
        suspects.withLock { s in
            if let since = s[hb.id], now > since + 1 { s[hb.id] = nil }
        }
        progress.withLock { p in
            for r in hb.rebuilds { p[ChunkRef(volume: r.volume, chunk: r.chunk)] = r }
        }
        return HeartbeatReply(deleteChunks: try await garbage(node: hb.id, inventory: hb.inventory))
    }

    /// Chunks in a node's inventory that no replica set (or resync candidate list) holds.
    func garbage(node: NodeID, inventory: [ChunkRef]) async throws -> [ChunkRef] {
        var out: [ChunkRef] = []
        var byVolume: [VolumeID: [ChunkIndex: ChunkRecord]?] = [:]
        for ref in inventory {
            if byVolume[ref.volume] == nil {
                if try await store.get(Keys.volumeID(ref.volume)) == nil,
                   try await store.get(Keys.snapshotID(ref.volume)) == nil {
                    byVolume[ref.volume] = .some(nil)
                } else {
                    let chunks = try await chunkRecords(ref.volume).map(\.0)
                    byVolume[ref.volume] = .some(Dictionary(uniqueKeysWithValues: chunks.map { ($0.index, $0) }))
                }
            }
            guard let chunks = byVolume[ref.volume]!, let c = chunks[ref.chunk] else {
                // Deleted volume, or a chunk never allocated: nothing refers to it.
                out.append(ref)
                continue
            }
            if !c.replicas.contains(where: { $0.node == node }) && !c.stale.contains(where: { $0.node == node }) {
                out.append(ref)
            }
        }
        return out
    }

    public func drain(_ id: NodeID) async throws {
        guard try await store.get(Keys.node(id)) != nil else { throw CairnError.notFound("node '\(id)' is not registered") }
        try await store.update(key: Keys.node(id), retries: 100) { (n: NodeRecord?) -> NodeRecord? in
            guard var n else { return nil }
            n.draining = true
            if n.state == .up { n.state = .draining }
            return n
        }
    }

    // MARK: - Status

    public func status() async throws -> ClusterStatus {
        let nodes = try await listNodes()
        var volumes: [VolumeStatus] = []
        let prog = progress.snapshot
        for v in try await listVolumes() { volumes.append(try await volumeStatus(v, progress: prog)) }
        let live = nodes.filter { $0.state != .down }
        return ClusterStatus(nodes: nodes, volumes: volumes,
                             capacityBytes: live.reduce(0) { $0 + $1.capacityBytes },
                             usedBytes: live.reduce(0) { $0 + $1.usedBytes })
    }

    public func volumeStatus(_ name: String) async throws -> VolumeStatus {
        try await volumeStatus(try await volume(name), progress: progress.snapshot)
    }

    func volumeStatus(_ v: VolumeRecord, progress: [ChunkRef: RebuildProgress]) async throws -> VolumeStatus {
        let chunks = try await chunkRecords(v.id).map(\.0)
        var degraded = 0, rebuilding = 0
        var copied: UInt64 = 0, total: UInt64 = 0
        for c in chunks {
            let isRebuilding = c.replicas.contains { $0.state == .rebuilding }
            if isRebuilding {
                rebuilding += 1
                let p = progress[ChunkRef(volume: v.id, chunk: c.index)]
                copied += p?.copiedBytes ?? 0
                total += p?.totalBytes ?? v.chunkSizeBytes
            } else if c.healthyCount < v.replicas {
                degraded += 1
            }
        }
        let health: VolumeHealth = rebuilding > 0 ? .rebuilding : (degraded > 0 ? .degraded : .healthy)
        return VolumeStatus(volume: v, health: health, chunksAllocated: chunks.count, chunksDegraded: degraded,
                            chunksRebuilding: rebuilding, rebuildCopiedBytes: copied, rebuildTotalBytes: total)
    }
}

func parseHostPortLoose(_ address: String) throws -> (String, Int) {
    guard let colon = address.lastIndex(of: ":"), let port = Int(address[address.index(after: colon)...]),
          port > 0, port < 65536, colon != address.startIndex else {
        throw CairnError.invalidArgument("node address '\(address)' is not host:port")
    }
    return (String(address[..<colon]), port)
}
