// The volume client: byte-addressed I/O on a replicated volume. What the NBD and iSCSI
// gateways and the CLI's import/export call.
//
// Rules:
//  - A write (or trim) is acknowledged only when every replica in the chunk's current set
//    has made it durable. A replica that cannot be reached is reported to the manager,
//    which removes it (epoch bump) if at least the minimum remain; the write is then sent
//    again to the new set under the new epoch. Replicas that already took it take it
//    again: writes are idempotent.
//  - Every request carries the epoch of the map it was planned with; `staleEpoch` means
//    the map changed: re-read it and retry.
//  - A read goes to a healthy replica (the local node first when known); an error or a
//    checksum mismatch moves on to the next replica, and a replica that returned a
//    checksum mismatch is repaired from the one that answered.
//  - A writer attaches first (the manager bumps the epoch, fencing any older writer) and
//    reconciles replicas that disagree before serving I/O.
//  - Each write carries a sequence number, increasing within the writer's epoch, so a
//    rebuild copy never overwrites a newer write.
//  - A chunk the volume does not own is read from the nearest backing (snapshot) layer
//    that does, at that layer's id and epoch; the first write to it has the manager copy
//    it up first (allocateChunk), so writes only ever reach the volume's own chunks.
import CairnCore
import CairnMetrics
import CairnWire
import Foundation
import Logging
import NIOCore

public struct VolumeClientOptions: Sendable {
    public var clientID: String
    public var readOnly: Bool
    public var force: Bool
    /// Node whose replicas reads prefer (the storage node on this host).
    public var localNode: NodeID?
    public var requestTimeout: TimeAmount = .seconds(10)
    /// Attempts of one request across map changes and replica failures. Epoch changes are
    /// cheap to follow (a map re-read) and come in bursts while rebuilds are planned.
    public var attemptsMax = 64
    /// The frontend label of this client's I/O metrics (fuse, cli); nil for none, as in
    /// the gateway, whose frontends share a client per volume and count their own I/O.
    public var frontend: String?
    /// A reader of a volume another client writes (a filesystem mount reading another
    /// mount's data volume) re-reads the map before taking a chunk it does not know for a
    /// hole: the chunk may have been allocated after this client read the map.
    public var refreshMapBeforeHoleRead = false
    public init(clientID: String, readOnly: Bool = false, force: Bool = false, localNode: NodeID? = nil) {
        self.clientID = clientID; self.readOnly = readOnly; self.force = force; self.localNode = localNode
    }
}

public struct Extent: Equatable, Sendable {
    public var offset: UInt64
    public var length: UInt64
    /// Not allocated: reads as zeroes and takes no space.
    public var hole: Bool
    public init(offset: UInt64, length: UInt64, hole: Bool) { self.offset = offset; self.length = length; self.hole = hole }
}

public final class VolumeClient: @unchecked Sendable {
    public let name: String
    let control: ClusterControl
    let transport: ReplicaTransport
    let options: VolumeClientOptions
    let logger: Logger
    let state: Locked<State>
    let io: VolumeIOMetrics?

    struct State {
        var map: VolumeMap
        var chunks: [ChunkIndex: ChunkRecord]
        /// Backing layers, nearest first: (id, epoch, chunks).
        var backing: [(id: VolumeID, epoch: Epoch, chunks: [ChunkIndex: ChunkRecord])]
        var addresses: [NodeID: String]
        var seq: UInt64 = 0
        /// Chunks where a failed mutation may have reached only some replicas; reconciled
        /// before the next mutation of the chunk and on close.
        var dirty: Set<ChunkIndex> = []
    }

    public var volume: VolumeRecord { state.withLock { $0.map.volume } }
    public var size: UInt64 { volume.sizeBytes }
    public var epoch: Epoch { volume.epoch }

    init(name: String, map: VolumeMap, control: ClusterControl, transport: ReplicaTransport,
         options: VolumeClientOptions, logger: Logger) {
        self.name = name; self.control = control; self.transport = transport; self.options = options; self.logger = logger
        self.state = Locked(Self.makeState(map))
        self.io = options.frontend.map { VolumeIOMetrics.of(volume: name, frontend: $0) }
    }

    static func makeState(_ map: VolumeMap, seq: UInt64 = 0) -> State {
        State(map: map, chunks: Dictionary(map.chunks.map { ($0.index, $0) }, uniquingKeysWith: { a, _ in a }),
              backing: (map.backing ?? []).map { layer in
                  (layer.id, layer.epoch, Dictionary(layer.chunks.map { ($0.index, $0) }, uniquingKeysWith: { a, _ in a }))
              },
              addresses: Dictionary(map.nodes.map { ($0.id, $0.address) }, uniquingKeysWith: { a, _ in a }), seq: seq)
    }

    /// Opens a volume: a writer attaches (fencing older writers) and reconciles replicas.
    public static func open(_ name: String, control: ClusterControl, transport: ReplicaTransport,
                            options: VolumeClientOptions, logger: Logger) async throws -> VolumeClient {
        let map: VolumeMap
        if options.readOnly {
            map = try await control.map(name)
        } else {
            map = try await control.attach(name, AttachRequest(client: options.clientID, force: options.force, readOnly: false))
        }
        let client = VolumeClient(name: name, map: map, control: control, transport: transport, options: options, logger: logger)
        if !options.readOnly { try await client.reconcile() }
        return client
    }

    /// Detaches a writer. The client must not be used afterwards.
    public func close() async {
        guard !options.readOnly else { return }
        try? await refresh()
        for index in state.withLock({ $0.dirty }).sorted() {
            if await reconcileChunk(index) { _ = state.withLock { $0.dirty.remove(index) } }
        }
        try? await control.detach(name, client: options.clientID)
    }

    func install(_ map: VolumeMap) {
        state.withLock { s in
            // Never go back to an older map (answers can cross).
            guard map.volume.epoch >= s.map.volume.epoch else { return }
            let dirty = s.dirty
            s = Self.makeState(map, seq: s.seq)
            s.dirty = dirty
        }
    }

    func refresh() async throws { install(try await control.map(name)) }

    /// A replica failed but another answered: re-read the map in the background (at most
    /// once a second), so later reads stop trying a replica the manager has removed or
    /// marked down.
    func refreshSoon() {
        let now = ContinuousClock.now
        let due = lastBackgroundRefresh.withLock { last -> Bool in
            if let l = last, now - l < .seconds(1) { return false }
            last = now
            return true
        }
        guard due else { return }
        Task { try? await self.refresh() }
    }
    private let lastBackgroundRefresh = Locked<ContinuousClock.Instant?>(nil)

    /// Re-reads the volume's map now (after a resize, to serve the new size at once).
    public func refreshMap() async throws { try await refresh() }

    /// Runs a public I/O call, counted in this client's metrics when it has a frontend.
    func measured<T>(_ op: VolumeIOOp, bytes: Int, _ body: () async throws -> T) async rethrows -> T {
        guard let io else { return try await body() }
        return try await io.measure(op, bytes: bytes, body)
    }

    func nextSeq() -> UInt64 { state.withLock { s in s.seq += 1; return s.seq } }

    // MARK: - Splitting byte ranges into chunk pieces

    struct Piece {
        var chunk: ChunkIndex
        var offsetInChunk: UInt32
        var length: Int
        var volumeOffset: UInt64
    }

    func pieces(offset: UInt64, length: Int) throws -> [Piece] {
        let v = volume
        guard offset <= v.sizeBytes, UInt64(length) <= v.sizeBytes - offset else {
            throw CairnError.invalidArgument("range \(offset)+\(length) is past the end of volume '\(name)' (\(v.sizeBytes) bytes)")
        }
        var out: [Piece] = []
        var pos = offset
        let end = offset + UInt64(length)
        while pos < end {
            let chunk = pos / v.chunkSizeBytes
            let inChunk = pos % v.chunkSizeBytes
            let n = min(end - pos, v.chunkSizeBytes - inChunk, UInt64(WireLimits.ioLengthMax))
            out.append(Piece(chunk: ChunkIndex(chunk), offsetInChunk: UInt32(inChunk), length: Int(n), volumeOffset: pos))
            pos += n
        }
        return out
    }

    // MARK: - Writes

    public func write(offset: UInt64, data: ByteBuffer, fua: Bool) async throws {
        try await measured(.write, bytes: data.readableBytes) {
            try checkWritable()
            let ps = try pieces(offset: offset, length: data.readableBytes)
            try await forEachPiece(ps) { p in
                let slice = data.getSlice(at: data.readerIndex + Int(p.volumeOffset - offset), length: p.length)!
                try await self.mutate(p.chunk) { addr, seq in .write(addr, seq: seq, offset: p.offsetInChunk, data: slice) }
            }
        }
    }

    public func write(offset: UInt64, bytes: [UInt8], fua: Bool) async throws {
        try await write(offset: offset, data: ByteBuffer(bytes: bytes), fua: fua)
    }

    /// Every acknowledged write is already durable on every replica of its chunk, so a
    /// flush has nothing left to wait for.
    public func flush() async throws {
        await measured(.flush, bytes: 0) {}
    }

    /// Gives the range back: it reads as zeroes afterwards.
    public func trim(offset: UInt64, length: Int) async throws {
        try await measured(.trim, bytes: length) {
            try checkWritable()
            for p in try pieces(offset: offset, length: length) {
                // Unallocated chunks already read as zeroes (chunks of a backing layer do not).
                guard resolved(p.chunk) != nil else { continue }
                try await mutate(p.chunk) { addr, seq in .trim(addr, seq: seq, offset: p.offsetInChunk, length: UInt32(p.length)) }
            }
        }
    }

    /// Zeroes the range; with `mayTrim` the space is given back, otherwise zeroes are written.
    public func writeZeroes(offset: UInt64, length: Int, mayTrim: Bool) async throws {
        if mayTrim { return try await trim(offset: offset, length: length) }
        try await measured(.write, bytes: length) {
            try checkWritable()
            for p in try pieces(offset: offset, length: length) {
                let zeroes = ByteBuffer(repeating: 0, count: p.length)
                try await mutate(p.chunk) { addr, seq in .write(addr, seq: seq, offset: p.offsetInChunk, data: zeroes) }
            }
        }
    }

    func checkWritable() throws {
        if options.readOnly || volume.readOnly {
            throw CairnError.invalidArgument("volume '\(name)' is open read-only")
        }
    }

    func chunkRecord(_ index: ChunkIndex) -> ChunkRecord? { state.withLock { $0.chunks[index] } }

    /// Where chunk `index` is read: the volume's own chunk, or the nearest backing layer's
    /// that has one (its address carries that layer's id and epoch); nil for a hole.
    static func resolve(_ s: State, _ index: ChunkIndex) -> (ChunkAddress, ChunkRecord)? {
        let v = s.map.volume
        if let own = s.chunks[index] { return (ChunkAddress(volume: v.id, chunk: index, epoch: v.epoch), own) }
        for layer in s.backing {
            if let c = layer.chunks[index] { return (ChunkAddress(volume: layer.id, chunk: index, epoch: layer.epoch), c) }
        }
        return nil
    }

    func resolved(_ index: ChunkIndex) -> (ChunkAddress, ChunkRecord)? { state.withLock { Self.resolve($0, index) } }

    func forEachPiece(_ ps: [Piece], _ body: @escaping @Sendable (Piece) async throws -> Void) async throws {
        if ps.count == 1 { return try await body(ps[0]) }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for p in ps { group.addTask { try await body(p) } }
            try await group.waitForAll()
        }
    }

    /// Sends a mutation of one chunk to every replica of its set, following map changes and
    /// reporting unreachable replicas, until all replicas of a set acknowledged it.
    func mutate(_ index: ChunkIndex, _ make: @escaping @Sendable (ChunkAddress, UInt64) -> DataRequest) async throws {
        if state.withLock({ $0.dirty.contains(index) }), await reconcileChunk(index) {
            _ = state.withLock { $0.dirty.remove(index) }
        }
        do {
            try await mutateOnce(index, make)
        } catch {
            _ = state.withLock { $0.dirty.insert(index) }
            throw error
        }
    }

    func mutateOnce(_ index: ChunkIndex, _ make: @escaping @Sendable (ChunkAddress, UInt64) -> DataRequest) async throws {
        var lastError: Error = CairnError.io("write to chunk \(index) of '\(name)' failed")
        for _ in 0..<options.attemptsMax {
            let (v, chunk, addresses) = state.withLock { ($0.map.volume, $0.chunks[index], $0.addresses) }
            guard let chunk else {
                do {
                    install(try await control.allocateChunk(
                        name, index: index, AllocateChunkRequest(client: options.clientID, epoch: v.epoch)))
                } catch CairnError.staleEpoch(let current) {
                    lastError = CairnError.staleEpoch(current: current)
                    try await refresh()
                }
                continue
            }
            let address = ChunkAddress(volume: v.id, chunk: index, epoch: v.epoch)
            let request = make(address, nextSeq())
            let results = await sendAll(chunk.replicas.map(\.node), addresses: addresses, request: request)
            let failed = results.filter { $0.error != nil }
            if failed.isEmpty { return }
            if let stale = failed.first(where: { if case CairnError.staleEpoch? = $0.error as? CairnError { return true }; return false }) {
                lastError = stale.error!
                try await refresh()
                // Some replicas took the write, others were fenced: if a snapshot took
                // the chunk over meanwhile, its replicas now differ.
                if failed.count < results.count, volume.id != v.id {
                    await reconcileSnapshotChunk(layer: v.id, index: index)
                }
                continue
            }
            if let e = failed.first(where: { if case CairnError.noSpace? = $0.error as? CairnError { return true }; return false }) {
                throw e.error!
            }
            if let e = failed.first(where: { if case CairnError.invalidArgument? = $0.error as? CairnError { return true }; return false }) {
                throw e.error!
            }
            // Unreachable or failing replicas: have the manager take them out of the set.
            for f in failed {
                lastError = f.error!
                logger.warning("replica write failed; reporting it", metadata: [
                    "volume": "\(name)", "chunk": "\(index)", "node": "\(f.node)", "error": "\(f.error!)"])
                do {
                    install(try await control.reportFailure(
                        name, index: index, ReplicaFailureReport(node: f.node, epoch: v.epoch, reason: "\(f.error!)")))
                } catch let e as CairnError {
                    if case .staleEpoch = e { try await refresh(); continue }
                    throw CairnError.io("write to '\(name)' failed: replica on \(f.node) is unreachable and \(e)")
                }
            }
        }
        throw lastError
    }

    struct ReplicaResult { var node: NodeID; var error: Error? }

    func sendAll(_ nodes: [NodeID], addresses: [NodeID: String], request: DataRequest) async -> [ReplicaResult] {
        await withTaskGroup(of: ReplicaResult.self) { group in
            for node in nodes {
                group.addTask {
                    guard let address = addresses[node] else {
                        return ReplicaResult(node: node, error: CairnError.unavailable("node \(node) has no address"))
                    }
                    do {
                        _ = try await self.transport.send(address, request, timeout: self.options.requestTimeout)
                        return ReplicaResult(node: node, error: nil)
                    } catch {
                        return ReplicaResult(node: node, error: error)
                    }
                }
            }
            var out: [ReplicaResult] = []
            for await r in group { out.append(r) }
            return out
        }
    }

    // MARK: - Reads

    public func read(offset: UInt64, length: Int) async throws -> ByteBuffer {
        try await measured(.read, bytes: length) {
            let ps = try pieces(offset: offset, length: length)
            if ps.count == 1 { return try await readPiece(ps[0]) }
            let parts = Locked<[Int: ByteBuffer]>([:])
            try await forEachPiece(ps) { p in
                let b = try await self.readPiece(p)
                parts.withLock { $0[Int(p.volumeOffset - offset)] = b }
            }
            var out = ByteBuffer()
            out.reserveCapacity(length)
            for (_, var b) in parts.snapshot.sorted(by: { $0.key < $1.key }) { out.writeBuffer(&b) }
            return out
        }
    }

    public func readBytes(offset: UInt64, length: Int) async throws -> [UInt8] {
        var b = try await read(offset: offset, length: length)
        return b.readBytes(length: b.readableBytes)!
    }

    /// Healthy replicas in the order reads try them: the local node first, then the others
    /// starting at a position that depends on the chunk, so chunks spread over nodes.
    func readOrder(_ chunk: ChunkRecord) -> [NodeID] {
        var healthy = chunk.replicas.filter { $0.state == .healthy }.map(\.node)
        if healthy.isEmpty { return [] }
        let shift = Int(chunk.index) % healthy.count
        healthy = Array(healthy[shift...] + healthy[..<shift])
        if let local = options.localNode, let i = healthy.firstIndex(of: local) {
            healthy.remove(at: i)
            healthy.insert(local, at: 0)
        }
        return healthy
    }

    func readPiece(_ p: Piece) async throws -> ByteBuffer {
        var lastError: Error = CairnError.io("no replica of chunk \(p.chunk) of '\(name)' could be read")
        var refreshedForHole = false
        for _ in 0..<options.attemptsMax {
            let (found, addresses) = state.withLock { (Self.resolve($0, p.chunk), $0.addresses) }
            guard let (address, chunk) = found else {
                if options.refreshMapBeforeHoleRead && !refreshedForHole {
                    refreshedForHole = true
                    try await refresh()
                    continue
                }
                return ByteBuffer(repeating: 0, count: p.length)
            }
            var corrupt: [NodeID] = []
            var stale = false
            var unreachable = false
            for node in readOrder(chunk) {
                guard let addr = addresses[node] else { continue }
                do {
                    let data = try await transport.send(addr, .read(address, offset: p.offsetInChunk, length: UInt32(p.length)),
                                                        timeout: options.requestTimeout)
                    guard data.readableBytes == p.length else {
                        lastError = CairnError.protocolError("node \(node) returned \(data.readableBytes) bytes, not \(p.length)")
                        continue
                    }
                    if !corrupt.isEmpty { await repair(p, address: address, from: addr, to: corrupt, addresses: addresses) }
                    if unreachable { refreshSoon() }
                    return data
                } catch CairnError.staleEpoch(let current) {
                    lastError = CairnError.staleEpoch(current: current)
                    stale = true
                    break
                } catch CairnError.checksumMismatch(let block) {
                    logger.error("checksum mismatch on a replica; reading another and repairing", metadata: [
                        "volume": "\(name)", "chunk": "\(p.chunk)", "block": "\(block)", "node": "\(node)"])
                    lastError = CairnError.checksumMismatch(block: block)
                    corrupt.append(node)
                } catch {
                    lastError = error
                    unreachable = true
                }
            }
            if stale { try await refresh(); continue }
            // Every replica failed: the map may be out of date (a rebuild finished, a node moved).
            try await refresh()
            try await Task.sleep(for: .milliseconds(50))
        }
        throw CairnError.io("reading '\(name)' at \(p.volumeOffset): \(lastError)")
    }

    /// Copies the blocks of `p` from the replica at `source` onto replicas that returned a
    /// checksum mismatch. A block changed by a newer write meanwhile is left alone (the
    /// storage node compares versions).
    func repair(_ p: Piece, address: ChunkAddress, from source: String, to bad: [NodeID], addresses: [NodeID: String]) async {
        let first = p.offsetInChunk / UInt32(blockSize)
        let last = (p.offsetInChunk + UInt32(p.length) - 1) / UInt32(blockSize)
        do {
            let raw = try await transport.send(source, .readBlocksRaw(address, first: first, count: last - first + 1),
                                               timeout: options.requestTimeout)
            let blocks = try DataResponse.decodeRawBlocks(raw)
            for node in bad {
                guard let addr = addresses[node] else { continue }
                _ = try await transport.send(addr, .putBlocks(address, blocks), timeout: options.requestTimeout)
                logger.notice("repaired replica", metadata: ["volume": "\(name)", "chunk": "\(p.chunk)", "node": "\(node)"])
            }
        } catch {
            logger.error("repair failed", metadata: ["volume": "\(name)", "chunk": "\(p.chunk)", "error": "\(error)"])
        }
    }

    // MARK: - Allocation map

    /// Allocated and unallocated extents of the range, from one healthy replica per chunk.
    public func blockStatus(offset: UInt64, length: Int) async throws -> [Extent] {
        var out: [Extent] = []
        func add(_ e: Extent) {
            if let last = out.last, last.hole == e.hole, last.offset + last.length == e.offset {
                out[out.count - 1].length += e.length
            } else {
                out.append(e)
            }
        }
        for p in try pieces(offset: offset, length: length) {
            let first = p.offsetInChunk / UInt32(blockSize)
            let last = (p.offsetInChunk + UInt32(p.length) - 1) / UInt32(blockSize)
            let found = try await firstAnswer(p.chunk) { address in
                .blockTable(address, first: first, count: last - first + 1)
            }
            guard let payload = found else { add(Extent(offset: p.volumeOffset, length: UInt64(p.length), hole: true)); continue }
            let entries = try DataResponse.decodeEntries(payload)
            let chunkBase = p.volumeOffset - UInt64(p.offsetInChunk)
            for (i, e) in entries.enumerated() {
                let blockStart = chunkBase + UInt64(first + UInt32(i)) * UInt64(blockSize)
                let s = max(blockStart, p.volumeOffset)
                let end = min(blockStart + UInt64(blockSize), p.volumeOffset + UInt64(p.length))
                add(Extent(offset: s, length: end - s, hole: e.state == .hole))
            }
        }
        return out
    }

    /// Sends a read-only request to the chunk's healthy replicas in read order until one
    /// answers, following epoch changes. Nil when the chunk is not allocated.
    func firstAnswer(_ index: ChunkIndex, _ make: (ChunkAddress) -> DataRequest) async throws -> ByteBuffer? {
        var lastError: Error = CairnError.io("no replica of chunk \(index) of '\(name)' answered")
        for _ in 0..<options.attemptsMax {
            let (found, addresses) = state.withLock { (Self.resolve($0, index), $0.addresses) }
            guard let (address, chunk) = found else { return nil }
            let request = make(address)
            for node in readOrder(chunk) {
                guard let addr = addresses[node] else { continue }
                do {
                    return try await transport.send(addr, request, timeout: options.requestTimeout)
                } catch CairnError.staleEpoch(let current) {
                    lastError = CairnError.staleEpoch(current: current)
                    break
                } catch {
                    lastError = error
                }
            }
            try await refresh()
        }
        throw CairnError.io("'\(name)' chunk \(index): \(lastError)")
    }

    // MARK: - Reconciliation after attach

    /// Makes the replicas of every chunk agree before a new writer serves I/O: for each
    /// block where the healthy replicas' entries differ, the newest version wins and is
    /// copied to the others. Blocks left different by writes that were in flight when the
    /// previous writer stopped are exactly these.
    func reconcile() async throws {
        let chunks = state.withLock { Array($0.chunks.keys) }
        // A chunk with an unreachable replica stays marked: it is reconciled again before
        // its next mutation and on close, once the replica may be back.
        for index in chunks.sorted() where !(await reconcileChunk(index)) {
            _ = state.withLock { $0.dirty.insert(index) }
        }
    }

    /// Reconciles one chunk; true when every healthy replica answered and now agrees.
    @discardableResult
    func reconcileChunk(_ index: ChunkIndex) async -> Bool {
        let (v, chunk, addresses) = state.withLock { ($0.map.volume, $0.chunks[index], $0.addresses) }
        guard let chunk else { return true }
        return await reconcileReplicas(of: chunk, at: ChunkAddress(volume: v.id, chunk: chunk.index, epoch: v.epoch),
                                       chunkSize: v.chunkSizeBytes, addresses: addresses)
    }

    /// A write in flight while the volume was snapshotted may have reached some replicas
    /// of the chunk (now the snapshot's) before their fence and not others: make the
    /// snapshot's replicas agree (the newest version wins, as after any interrupted
    /// write), so the snapshot reads the same whichever replica answers.
    func reconcileSnapshotChunk(layer: VolumeID, index: ChunkIndex) async {
        let (found, chunkSize, addresses) = state.withLock { s in
            (s.backing.first { $0.id == layer }.flatMap { l in l.chunks[index].map { (l.epoch, $0) } },
             s.map.volume.chunkSizeBytes, s.addresses)
        }
        guard let (epoch, chunk) = found else { return }
        let complete = await reconcileReplicas(of: chunk, at: ChunkAddress(volume: layer, chunk: index, epoch: epoch),
                                               chunkSize: chunkSize, addresses: addresses)
        if !complete {
            logger.warning("could not make the replicas of a snapshot chunk agree after an interrupted write", metadata: [
                "volume": "\(name)", "layer": "\(layer)", "chunk": "\(index)"])
        }
    }

    /// Makes the replicas of one chunk agree, newest version per block winning; true when
    /// every replica answered and now agrees.
    func reconcileReplicas(of chunk: ChunkRecord, at address: ChunkAddress, chunkSize: UInt64,
                           addresses: [NodeID: String]) async -> Bool {
        // Rebuilding replicas take the winners too: a block put on their source after
        // their copy read it would otherwise never reach them.
        let nodes = chunk.replicas.map(\.node)
        let healthy = Set(chunk.replicas.filter { $0.state == .healthy }.map(\.node))
        let count = UInt32(chunkSize / UInt64(blockSize))
        var tables: [(NodeID, String, [BlockEntry])] = []
        for node in nodes {
            guard let addr = addresses[node],
                  let payload = try? await transport.send(addr, .blockTable(address, first: 0, count: count), timeout: options.requestTimeout),
                  let entries = try? DataResponse.decodeEntries(payload) else { continue }
            tables.append((node, addr, entries))
        }
        var complete = tables.count == nodes.count
        guard tables.count > 1 else { return complete }
        var fixes = 0
        for i in 0..<Int(count) {
            let entries = tables.map { $0.2[i] }
            guard entries.contains(where: { $0 != entries[0] }) else { continue }
            let sources = tables.indices.filter { healthy.contains(tables[$0].0) }
            guard let winner = sources.max(by: { tables[$0].2[i].version < tables[$1].2[i].version }) else {
                complete = false
                continue
            }
            guard let raw = try? await transport.send(tables[winner].1, .readBlocksRaw(address, first: UInt32(i), count: 1),
                                                      timeout: options.requestTimeout),
                  let blocks = try? DataResponse.decodeRawBlocks(raw) else { complete = false; continue }
            for (j, t) in tables.enumerated() where j != winner && t.2[i] != tables[winner].2[i] {
                if (try? await transport.send(t.1, .putBlocks(address, blocks), timeout: options.requestTimeout)) == nil {
                    complete = false
                }
                fixes += 1
            }
        }
        if fixes > 0 {
            logger.notice("reconciled replicas", metadata: ["volume": "\(name)", "chunk": "\(chunk.index)", "blocks": "\(fixes)"])
        }
        return complete
    }
}
