// Snapshots and clones as layers (docs/ARCHITECTURE.md, "Snapshots and clones").
//
// Invariants:
//  - Taking a snapshot is one transaction: the snapshot takes over the volume's id, chunk
//    records and epoch + 1; the volume gets a fresh id backed by the snapshot. The
//    snapshot's epoch is then pushed (FENCE), so no write on the old map completes after.
//  - A layer's epoch is above every block version in its backing chain, so writes always
//    carry newer versions than the blocks copied up into the layer.
//  - A chunk record of a snapshot layer is only removed once no layer can read through
//    to it: its layer is hidden (deleted by the user, or internal) and every dependant
//    owns that chunk, or nothing depends on the layer at all.
import CairnCore
import CairnMeta
import CairnWire
import Foundation

public enum SnapshotLimits {
    /// Layers a volume may read through (snapshots of snapshots of ...).
    public static let chainDepthMax = 64
    /// How long an allocation waits for another copy-up of the same chunk.
    static let copyUpWaitMax: Duration = .seconds(120)
}

/// The layer a clone reads through to, with the mod revision its record had when read.
struct CloneBase {
    var layer: VolumeRecord
    var key: String
    var revision: Int64
    var source: VolumeSource
}

extension Manager {
    // MARK: - Reading layers

    /// Every snapshot layer, hidden ones (named "~...") included.
    func listSnapshotLayers() async throws -> [VolumeRecord] {
        try await store.rangeAll(prefix: Keys.snapshots).map { try JSONDecoder().decode(VolumeRecord.self, from: Data($0.value)) }
    }

    static func isHidden(_ layer: VolumeRecord) -> Bool { layer.name.hasPrefix("~") }

    static func snapshotRecord(_ s: VolumeRecord) -> SnapshotRecord {
        SnapshotRecord(name: s.name, volume: s.snapshotOf ?? "", id: s.id, sizeBytes: s.sizeBytes, createdAt: s.createdAt,
                       readyToUse: true, replicas: s.replicas)
    }

    /// The snapshot layer with this id and the key of its record.
    func layer(id: VolumeID) async throws -> (VolumeRecord, key: String, revision: Int64)? {
        guard let (name, _) = try await store.getJSON(Keys.snapshotID(id), as: String.self),
              let (record, rev) = try await store.getJSON(Keys.snapshot(name), as: VolumeRecord.self) else { return nil }
        return (record, Keys.snapshot(name), rev)
    }

    /// The layers `v` reads through to, nearest first.
    func backingLayers(of v: VolumeRecord) async throws -> [BackingLayer] {
        var out: [BackingLayer] = []
        var next = v.backing
        while let id = next {
            guard out.count < SnapshotLimits.chainDepthMax, let (layer, _, _) = try await self.layer(id: id) else { break }
            out.append(BackingLayer(id: layer.id, epoch: layer.epoch, chunks: try await chunkRecords(layer.id).map(\.0)))
            next = layer.backing
        }
        return out
    }

    /// The nearest backing layer of `v` that owns chunk `index`, with that chunk's record.
    func backingChunk(of v: VolumeRecord, index: ChunkIndex) async throws -> (VolumeRecord, ChunkRecord)? {
        var next = v.backing
        var depth = 0
        while let id = next, depth < SnapshotLimits.chainDepthMax {
            guard let (layer, _, _) = try await self.layer(id: id) else { return nil }
            if let (chunk, _) = try await store.getJSON(Keys.chunk(layer.id, index), as: ChunkRecord.self) {
                return (layer, chunk)
            }
            next = layer.backing
            depth += 1
        }
        return nil
    }

    func chainDepth(of v: VolumeRecord) async throws -> Int {
        var depth = 0
        var next = v.backing
        while let id = next, depth <= SnapshotLimits.chainDepthMax, let (layer, _, _) = try await self.layer(id: id) {
            depth += 1
            next = layer.backing
        }
        return depth
    }

    // MARK: - Snapshots

    /// Takes a snapshot of a block volume. The same name for the same volume returns the
    /// existing snapshot; for another volume it is `alreadyExists`.
    public func createSnapshot(_ req: CreateSnapshotRequest) async throws -> SnapshotRecord {
        do {
            try Self.validateName(req.name)
        } catch {
            throw CairnError.invalidArgument(
                "snapshot name '\(req.name)' is not valid: use 1 to 63 lowercase letters, digits, '.' and '-', starting with a letter or digit")
        }
        try Self.requireVolumeName(req.volume)
        if let existing = try await store.getJSON(Keys.snapshot(req.name), as: VolumeRecord.self)?.0 {
            guard existing.snapshotOf == req.volume else {
                throw CairnError.alreadyExists(
                    "snapshot '\(req.name)' already exists, of volume '\(existing.snapshotOf ?? "?")', not '\(req.volume)'")
            }
            return Self.snapshotRecord(existing)
        }
        let s = try await takeSnapshotLayer(of: req.volume, name: req.name, requestID: req.requestID)
        return Self.snapshotRecord(s)
    }

    /// The snapshot transaction (see the invariants above); a nil `name` makes a hidden
    /// layer ("~<layer id>"). Returns the snapshot layer's record.
    func takeSnapshotLayer(of volume: String, name wanted: String?, requestID: String?) async throws -> VolumeRecord {
        for _ in 0..<MetaLimits.updateRetriesMax {
            let (v, vrev) = try await volumeRecord(volume)
            let name = wanted ?? "~" + Keys.hex16(v.id)
            guard v.kind == .block else {
                throw CairnError.invalidArgument(
                    "volume '\(volume)' is a filesystem volume; only block volumes have snapshots (a filesystem's metadata is not in its chunks)")
            }
            guard try await chainDepth(of: v) < SnapshotLimits.chainDepthMax else {
                throw CairnError.invalidArgument(
                    "volume '\(volume)' already reads through \(SnapshotLimits.chainDepthMax) snapshot layers; delete or clone instead")
            }
            let counter = try await store.getJSON(Keys.volumeCounter, as: UInt64.self)
            let newID = (counter?.0 ?? 0) + 1
            var snapshot = v
            snapshot.name = name
            snapshot.snapshotOf = volume
            snapshot.readOnly = true
            snapshot.writer = nil
            snapshot.epoch = v.epoch + 1
            snapshot.createdAt = time.now()
            snapshot.createRequestID = requestID
            snapshot.contentSource = nil
            var moved = v
            moved.id = newID
            moved.backing = v.id
            moved.epoch = v.epoch + 1
            let result = try await store.txn(
                compare: [.modRevision(key: Keys.volume(volume), equals: vrev),
                          .modRevision(key: Keys.volumeCounter, equals: counter?.1 ?? 0),
                          .modRevision(key: Keys.snapshot(name), equals: 0)],
                success: [try store.putJSON(Keys.volumeCounter, newID),
                          try store.putJSON(Keys.volume(volume), moved),
                          .delete(key: Keys.volumeID(v.id)),
                          try store.putJSON(Keys.volumeID(newID), volume),
                          try store.putJSON(Keys.snapshot(name), snapshot),
                          try store.putJSON(Keys.snapshotID(v.id), name)],
                failure: [])
            if result.succeeded {
                logger.info("snapshot taken", metadata: [
                    "volume": "\(volume)", "snapshot": "\(name)", "layer": "\(v.id)", "volumeID": "\(newID)",
                    "epoch": "\(snapshot.epoch)"])
                // Writers on the old map now fail on the old id and move to the new one.
                await pushFence(snapshot)
                return snapshot
            }
            if try await store.get(Keys.snapshot(name)) != nil {
                throw CairnError.alreadyExists("snapshot '\(name)' already exists")
            }
        }
        throw CairnError.conflict("volume '\(volume)' is changing too fast to snapshot; try again")
    }

    /// Visible snapshots, of one volume or all, oldest first.
    public func snapshots(volume: String? = nil) async throws -> [SnapshotRecord] {
        try await listSnapshotLayers().filter { !Self.isHidden($0) && (volume == nil || $0.snapshotOf == volume) }
            .sorted { ($0.createdAt, $0.name) < ($1.createdAt, $1.name) }.map(Self.snapshotRecord)
    }

    public func snapshot(_ name: String) async throws -> SnapshotRecord {
        guard !name.hasPrefix("~"), let (s, _) = try await store.getJSON(Keys.snapshot(name), as: VolumeRecord.self) else {
            throw CairnError.notFound("snapshot '\(name)' does not exist")
        }
        return Self.snapshotRecord(s)
    }

    /// Deletes a snapshot: its name is free at once; its data stays as a hidden layer as
    /// long as a volume, clone or later snapshot still reads through to it (the
    /// supervisor removes what nobody reads any more).
    public func deleteSnapshot(_ name: String) async throws {
        for _ in 0..<MetaLimits.updateRetriesMax {
            guard !name.hasPrefix("~"), let (found, rev) = try await store.getJSON(Keys.snapshot(name), as: VolumeRecord.self) else {
                throw CairnError.notFound("snapshot '\(name)' does not exist")
            }
            var s = found
            let hidden = "~" + Keys.hex16(s.id)
            s.name = hidden
            let r = try await store.txn(
                compare: [.modRevision(key: Keys.snapshot(name), equals: rev)],
                success: [.delete(key: Keys.snapshot(name)), try store.putJSON(Keys.snapshot(hidden), s),
                          try store.putJSON(Keys.snapshotID(s.id), hidden)],
                failure: [])
            if r.succeeded {
                logger.info("snapshot deleted", metadata: ["snapshot": "\(name)", "layer": "\(s.id)"])
                return
            }
        }
        throw CairnError.conflict("snapshot '\(name)' is changing too fast to delete; try again")
    }

    // MARK: - Clones

    /// A new block volume with the data of a snapshot, or of a volume now (through a
    /// hidden snapshot). The same name and source again returns the existing clone.
    public func cloneVolume(_ req: CloneVolumeRequest) async throws -> VolumeRecord {
        try Self.validateName(req.name)
        if let (existing, _) = try await store.getJSON(Keys.volume(req.name), as: VolumeRecord.self) {
            let sameSize = req.sizeBytes == nil || req.sizeBytes == existing.sizeBytes
            if (req.requestID != nil && existing.createRequestID == req.requestID)
                || (existing.contentSource == req.source && sameSize) {
                return existing
            }
            throw CairnError.alreadyExists("volume '\(req.name)' already exists")
        }
        let base: CloneBase
        switch req.source {
        case .snapshot(let s):
            guard !s.hasPrefix("~"), let (layer, rev) = try await store.getJSON(Keys.snapshot(s), as: VolumeRecord.self) else {
                throw CairnError.notFound("snapshot '\(s)' does not exist")
            }
            base = CloneBase(layer: layer, key: Keys.snapshot(s), revision: rev, source: req.source)
        case .volume(let v):
            try Self.requireVolumeName(v)
            _ = try await volumeRecord(v)
            let layer = try await takeSnapshotLayer(of: v, name: nil, requestID: nil)
            guard let (stored, rev) = try await store.getJSON(Keys.snapshot(layer.name), as: VolumeRecord.self) else {
                throw CairnError.conflict("the internal snapshot of volume '\(v)' vanished while cloning it; try again")
            }
            base = CloneBase(layer: stored, key: Keys.snapshot(layer.name), revision: rev, source: req.source)
        }
        guard base.layer.kind == .block else {
            throw CairnError.invalidArgument("only block volumes can be cloned")
        }
        let size = req.sizeBytes ?? base.layer.sizeBytes
        guard size >= base.layer.sizeBytes else {
            throw CairnError.invalidArgument(
                "a clone of \(req.source) needs at least its \(base.layer.sizeBytes) bytes; \(size) were asked for")
        }
        return try await insertVolume(
            CreateVolumeRequest(name: req.name, sizeBytes: size, replicas: req.replicas ?? base.layer.replicas,
                                replicasMin: req.replicasMin, kind: .block, chunkSizeBytes: base.layer.chunkSizeBytes,
                                requestID: req.requestID),
            from: base)
    }

    // MARK: - Copy-up

    /// Gives `v` its own copy of chunk `index` from the backing layer that owns it: every
    /// healthy replica node of the source (up to v's replication factor) copies its file
    /// locally, then v's chunk record lists the nodes that succeeded. Returns false when
    /// the volume changed meanwhile (the caller looks again).
    func copyUp(_ name: String, _ v: VolumeRecord, revision vrev: Int64, index: ChunkIndex, layer: VolumeRecord,
                source: ChunkRecord) async throws -> Bool {
        let ref = ChunkRef(volume: v.id, chunk: index)
        let deadline = ContinuousClock.now + SnapshotLimits.copyUpWaitMax
        while !copyUps.withLock({ $0.insert(ref).inserted }) {
            guard ContinuousClock.now < deadline else {
                throw CairnError.unavailable("chunk \(index) of '\(name)' is still being copied from its snapshot; try again")
            }
            try await Task.sleep(for: .milliseconds(10))
        }
        defer { _ = copyUps.withLock { $0.remove(ref) } }
        let key = Keys.chunk(v.id, index)
        if try await store.get(key) != nil { return true }  // Another allocation finished it.
        let byID = Dictionary(uniqueKeysWithValues: try await listNodes().map { ($0.id, $0) })
        let suspected = suspectNodes()
        let candidates = source.replicas.filter { $0.state == .healthy && !suspected.contains($0.node) }
            .compactMap { byID[$0.node] }.filter { $0.state != .down }.prefix(v.replicas)
        let from = ChunkAddress(volume: layer.id, chunk: index, epoch: layer.epoch)
        let to = ChunkAddress(volume: v.id, chunk: index, epoch: v.epoch)
        let copied = await withTaskGroup(of: (NodeID, String?).self) { group in
            for node in candidates {
                group.addTask {
                    do {
                        try await self.nodes.copyChunk(node, from: from, to: to)
                        return (node.id, nil)
                    } catch {
                        return (node.id, "\(error)")
                    }
                }
            }
            var out: [(NodeID, String?)] = []
            for await r in group { out.append(r) }
            return out
        }
        let succeeded = copied.filter { $0.1 == nil }.map(\.0).sorted()
        for (node, error) in copied where error != nil {
            logger.warning("copy-up failed on a node", metadata: [
                "volume": "\(name)", "chunk": "\(index)", "node": "\(node)", "error": "\(error!)"])
        }
        guard !succeeded.isEmpty else {
            throw CairnError.unavailable(
                "chunk \(index) of '\(name)' could not be copied from its snapshot layer \(layer.id): "
                    + (copied.isEmpty ? "no healthy replica is up" : copied.compactMap(\.1).joined(separator: "; ")))
        }
        // Fewer copies than the replication factor: the supervisor rebuilds the rest.
        let chunk = ChunkRecord(volume: v.id, index: index, replicas: succeeded.map { ReplicaRecord(node: $0, state: .healthy) })
        let r = try await store.txn(
            compare: [.modRevision(key: Self.recordKey(name), equals: vrev), .modRevision(key: key, equals: 0)],
            success: [try store.putJSON(key, chunk)], failure: [])
        if r.succeeded {
            logger.info("chunk copied up from a snapshot", metadata: [
                "volume": "\(name)", "chunk": "\(index)", "layer": "\(layer.id)", "nodes": "\(succeeded)"])
        }
        return r.succeeded
    }

    // MARK: - Hidden layers

    /// Removes what no layer reads any more from hidden layers: the whole layer when
    /// nothing is backed by it, otherwise each chunk every dependant owns itself.
    func collectHiddenLayers() async throws {
        let snapshots = try await listSnapshotLayers()
        guard snapshots.contains(where: Self.isHidden) else { return }
        let layers = try await listVolumes() + snapshots
        var children: [VolumeID: [VolumeRecord]] = [:]
        for l in layers { if let b = l.backing { children[b, default: []].append(l) } }
        var owned: [VolumeID: Set<ChunkIndex>] = [:]
        func owns(_ l: VolumeRecord, _ i: ChunkIndex) async throws -> Bool {
            if owned[l.id] == nil { owned[l.id] = Set(try await chunkRecords(l.id).map(\.0.index)) }
            return owned[l.id]!.contains(i)
        }
        // Whether some layer reads chunk i of `layer` through its dependants.
        func needed(_ layer: VolumeRecord, _ i: ChunkIndex, depth: Int) async throws -> Bool {
            guard depth < SnapshotLimits.chainDepthMax else { return true }
            for c in children[layer.id] ?? [] {
                if try await owns(c, i) { continue }
                if !Self.isHidden(c) { return true }
                if try await needed(c, i, depth: depth + 1) { return true }
            }
            return false
        }
        for h in snapshots where Self.isHidden(h) {
            let key = Keys.snapshot(h.name)
            if (children[h.id] ?? []).isEmpty {
                guard let (_, rev) = try await store.getJSON(key, as: VolumeRecord.self) else { continue }
                let r = try await store.txn(
                    compare: [.modRevision(key: key, equals: rev)],
                    success: [.delete(key: key), .delete(key: Keys.snapshotID(h.id)), .deletePrefix(Keys.chunkPrefix(h.id))],
                    failure: [])
                guard r.succeeded else { continue }
                logger.info("unused snapshot layer removed", metadata: ["layer": "\(h.id)"])
                for node in try await listNodes() where node.state == .up {
                    try? await nodes.deleteVolume(node, volume: h.id, epoch: h.epoch + 1)
                }
                continue
            }
            for (chunk, crev) in try await chunkRecords(h.id) {
                if try await needed(h, chunk.index, depth: 0) { continue }
                let ckey = Keys.chunk(h.id, chunk.index)
                // The heartbeat garbage collection frees the files.
                _ = try await store.txn(compare: [.modRevision(key: ckey, equals: crev)], success: [.delete(key: ckey)], failure: [])
            }
        }
    }
}
