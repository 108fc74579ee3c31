// The manager's background duties, one pass at a time (`superviseOnce`), so tests and
// the simulation can step it:
//  1. health: a node silent for `heartbeatTimeout` is down;
//  2. after `gracePeriod` a down node's replicas leave their sets (epoch bump);
//  3. an under-replicated chunk gets a new replica, `rebuilding`, added with an epoch bump
//     and filled by its target node pulling from the healthy replicas; a node that left a
//     set on a writer's report and is back is preferred and resynced from the epoch it
//     left at (only what changed); rebuilds are bounded in total and per node;
//  4. a draining node's replicas are copied elsewhere, then removed.
import CairnCore
import CairnMeta
import CairnWire
import Foundation

extension Manager {
    /// Runs `superviseOnce` every `config.superviseInterval` until cancelled.
    public func supervise() async {
        while !Task.isCancelled {
            do { try await superviseOnce() } catch {
                logger.warning("supervisor pass failed", metadata: ["error": "\(error)"])
            }
            try? await Task.sleep(for: config.superviseInterval)
        }
    }

    public func superviseOnce() async throws {
        let now = time.now()
        var nodes = try await listNodes()
        for i in nodes.indices where nodes[i].state != .down && now - nodes[i].lastHeartbeat > config.heartbeatTimeout.seconds {
            nodes[i] = try await markDown(nodes[i].id, now: now) ?? nodes[i]
        }
        let byID = Dictionary(uniqueKeysWithValues: nodes.map { ($0.id, $0) })
        for v in try await listVolumes() {
            for (chunk, _) in try await chunkRecords(v.id) {
                try await superviseChunk(v.name, chunk: chunk, nodes: byID, now: now)
            }
        }
        // Snapshot layers (hidden ones too) are rebuilt like volumes.
        for s in try await listSnapshotLayers() {
            for (chunk, _) in try await chunkRecords(s.id) {
                try await superviseChunk("@" + s.name, chunk: chunk, nodes: byID, now: now)
            }
        }
        try await collectHiddenLayers()
    }

    func markDown(_ id: NodeID, now: Double) async throws -> NodeRecord? {
        try await store.update(key: Keys.node(id), retries: 100) { (n: NodeRecord?) -> NodeRecord? in
            guard var n else { return nil }
            guard n.state != .down, now - n.lastHeartbeat > config.heartbeatTimeout.seconds else { return n }
            n.state = .down
            n.downSince = now
            logger.warning("storage node is down", metadata: ["node": "\(id)"])
            return n
        }
    }

    func isGone(_ id: NodeID, _ nodes: [NodeID: NodeRecord], now: Double) -> Bool {
        guard let n = nodes[id] else { return true }
        return n.state == .down && now - (n.downSince ?? now) >= config.gracePeriod.seconds
    }

    func superviseChunk(_ name: String, chunk: ChunkRecord, nodes: [NodeID: NodeRecord], now: Double) async throws {
        let ref = ChunkRef(volume: chunk.volume, chunk: chunk.index)
        // 2. Replicas on nodes gone past the grace period leave the set; resync candidates too.
        let gone = chunk.replicas.filter { isGone($0.node, nodes, now: now) }.map(\.node)
        let goneStale = chunk.stale.filter { isGone($0.node, nodes, now: now) }.map(\.node)
        if !gone.isEmpty || !goneStale.isEmpty {
            try await changeChunk(name, ref, bumpEpoch: !gone.isEmpty) { c, _ in
                c.replicas.removeAll { gone.contains($0.node) }
                c.stale.removeAll { goneStale.contains($0.node) }
            }
            return  // Act on the new state next pass.
        }
        guard let v = try? await volume(name) else { return }
        // Fully replicated again: resync candidates are not needed any more, and their
        // copies become garbage for the heartbeat collection.
        if !chunk.stale.isEmpty && chunk.healthyCount >= v.replicas {
            try await changeChunk(name, ref, bumpEpoch: false) { c, _ in c.stale.removeAll() }
            return
        }
        let draining = chunk.replicas.filter { nodes[$0.node]?.draining == true }
        let healthyNotDraining = chunk.replicas.filter { $0.state == .healthy && nodes[$0.node]?.draining != true }
        // 4. Drained: enough healthy replicas elsewhere, remove the draining one.
        if !draining.isEmpty && healthyNotDraining.count >= v.replicas {
            try await changeChunk(name, ref, bumpEpoch: true) { c, _ in
                c.replicas.removeAll { r in draining.contains { $0.node == r.node } }
            }
            return
        }
        // 3. Restart rebuilds this process does not run (e.g. after a manager restart).
        for r in chunk.replicas where r.state == .rebuilding && rebuilding.withLock({ $0[ref] }) == nil {
            startRebuild(name, ref, target: r.node, since: r.sinceEpoch, epoch: v.epoch, chunk: chunk, nodes: nodes)
        }
        let wanted = v.replicas + draining.count
        guard chunk.replicas.count < wanted, rebuilding.withLock({ $0[ref] }) == nil else { return }
        if let retryAt = rebuildBackoff.withLock({ $0[ref] }), retryAt > now { return }
        guard chunk.healthyCount > 0, canStartRebuild(chunk: chunk, nodes: nodes) else { return }
        // Prefer a returning node that only needs what changed since it left.
        let inSet = Set(chunk.replicas.map(\.node))
        var target: NodeID?
        var since: Epoch = 0
        let suspected = suspectNodes()
        if let s = chunk.stale.first(where: {
            nodes[$0.node]?.state == .up && !inSet.contains($0.node) && underLimit($0.node) && !suspected.contains($0.node)
        }) {
            target = s.node
            since = s.leftAtEpoch
        } else {
            let busy = Set(nodes.keys.filter { !underLimit($0) })
            target = Placement.choose(count: 1, existing: Array(inSet), nodes: Array(nodes.values),
                                      exclude: busy.union(chunk.stale.map(\.node)).union(suspected)).first
        }
        guard let target else { return }
        let resync = since
        var updated: ChunkRecord?
        let epoch = try await changeChunk(name, ref, bumpEpoch: true) { c, _ in
            guard !c.replicas.contains(where: { $0.node == target }) else { return }
            c.replicas.append(ReplicaRecord(node: target, state: .rebuilding, sinceEpoch: resync))
            c.stale.removeAll { $0.node == target }
            updated = c
        }
        guard let epoch, let updated else { return }
        logger.info("rebuild planned", metadata: [
            "volume": "\(name)", "chunk": "\(ref.chunk)", "target": "\(target)",
            "kind": "\(resync > 0 ? "resync since epoch \(resync)" : "full copy")", "epoch": "\(epoch)"])
        startRebuild(name, ref, target: target, since: resync, epoch: epoch, chunk: updated, nodes: nodes)
    }

    func underLimit(_ node: NodeID) -> Bool {
        rebuilding.withLock { r in
            r.values.filter { $0 == node }.count < config.rebuildsPerNodeMax
        }
    }

    func canStartRebuild(chunk: ChunkRecord, nodes: [NodeID: NodeRecord]) -> Bool {
        rebuilding.withLock { $0.count } < config.rebuildsMax
    }

    /// Sends the rebuild order to the target and records the outcome. Runs in the background.
    func startRebuild(_ name: String, _ ref: ChunkRef, target: NodeID, since: Epoch, epoch: Epoch,
                      chunk: ChunkRecord, nodes: [NodeID: NodeRecord]) {
        let sources = chunk.replicas.filter { $0.state == .healthy && $0.node != target && nodes[$0.node]?.state != .down }
            .compactMap { nodes[$0.node]?.address }
        guard let targetNode = nodes[target], !sources.isEmpty else { return }
        let inserted = rebuilding.withLock { r -> Bool in
            guard r[ref] == nil else { return false }
            r[ref] = target
            return true
        }
        guard inserted else { return }
        let order = RebuildOrder(address: ChunkAddress(volume: ref.volume, chunk: ref.chunk, epoch: epoch),
                                 sinceEpoch: since, bytesPerSecond: config.rebuildBytesPerSecond, sources: sources)
        Task {
            defer {
                _ = rebuilding.withLock { $0.removeValue(forKey: ref) }
                _ = progress.withLock { $0.removeValue(forKey: ref) }
            }
            do {
                try await nodes_rebuild(targetNode, order)
                try await changeChunk(name, ref, bumpEpoch: false) { c, _ in
                    if let i = c.replicas.firstIndex(where: { $0.node == target && $0.state == .rebuilding }) {
                        c.replicas[i].state = .healthy
                        c.replicas[i].sinceEpoch = 0
                    }
                }
                logger.info("rebuild done", metadata: ["volume": "\(name)", "chunk": "\(ref.chunk)", "target": "\(target)"])
            } catch {
                logger.warning("rebuild failed", metadata: [
                    "volume": "\(name)", "chunk": "\(ref.chunk)", "target": "\(target)", "error": "\(error)"])
                rebuildBackoff.withLock { $0[ref] = time.now() + 2 }
                if case CairnError.unavailable = error { suspect(target) }
                if case CairnError.staleEpoch = error {
                    return  // The set changed meanwhile; the next pass looks again.
                }
                _ = try? await changeChunk(name, ref, bumpEpoch: true) { c, _ in
                    c.replicas.removeAll { $0.node == target && $0.state == .rebuilding }
                }
            }
        }
    }

    private func nodes_rebuild(_ node: NodeRecord, _ order: RebuildOrder) async throws {
        try await nodes.rebuild(node, order: order)
    }

    /// Changes one chunk record (and bumps the volume epoch if asked) with compare-and-swap,
    /// then pushes the new epoch. Returns the volume's epoch after the change, or nil if the
    /// chunk or volume is gone or `change` left the chunk as it was.
    @discardableResult
    func changeChunk(_ name: String, _ ref: ChunkRef, bumpEpoch: Bool,
                     _ change: (inout ChunkRecord, VolumeRecord) throws -> Void) async throws -> Epoch? {
        for _ in 0..<MetaLimits.updateRetriesMax {
            guard var (v, vrev) = try? await volumeRecord(name), v.id == ref.volume else { return nil }
            let key = Keys.chunk(ref.volume, ref.chunk)
            guard let (old, crev) = try await store.getJSON(key, as: ChunkRecord.self) else { return nil }
            var c = old
            try change(&c, v)
            if c == old { return nil }
            var ops = [try store.putJSON(key, c)]
            if bumpEpoch {
                v.epoch += 1
                ops.append(try store.putJSON(Self.recordKey(name), v))
            }
            let r = try await store.txn(
                compare: [.modRevision(key: Self.recordKey(name), equals: vrev), .modRevision(key: key, equals: crev)],
                success: ops, failure: [])
            if r.succeeded {
                if bumpEpoch { await pushFence(v) }
                return v.epoch
            }
        }
        throw CairnError.conflict("chunk \(ref.chunk) of '\(name)' is changing too fast")
    }
}
