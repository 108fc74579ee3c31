// The chunk replicas of one data directory on a real disk.
//
// Layout: chunks/<volume hex 16>/<chunk index>.chunk (see ChunkFile.swift),
// epochs/<volume hex 16> (see EpochStore.swift), journal (see Journal.swift).
//
// Threads: mutations are queued to one committer thread (group commit through the
// journal, then apply, then the callers resume); a checkpointer thread syncs the chunk
// files of the previous journal generation and retires it (see Journal.swift) while the
// committer goes on; reads, block tables and raw block reads run on a concurrent dispatch
// queue under the chunk's shared lock. Nothing blocks the Swift cooperative pool.
import CairnCore
import Foundation
import Glibc

public final class DiskChunkStore: ChunkBackend, @unchecked Sendable {
    /// Mutations admitted to one committer round; later callers wait (suspended) for the next.
    public static let mutationsQueuedMax = 4096
    /// Largest journal batch written with one pwrite.
    static let batchBytesMax = 32 << 20

    public let chunkSize: Int
    public let directory: String
    let geometry: ChunkGeometry
    let chunksRoot: String
    let files: ChunkFileCache
    let journal: Journal
    let epochs: EpochStore
    private let readQueue = DispatchQueue(label: "cairn.chunkstore.read", attributes: .concurrent)

    /// Guards the fields below it.
    private let state = NSCondition()
    private var queued: [Mutation] = []
    private var waiting: [Mutation] = []
    private var stopping = false
    private var closed = false
    /// Set when the journal or a chunk file failed under the committer; the store must be
    /// reopened (replay repairs what the page cache lost).
    private var failure: CairnError?
    private let committerDone = DispatchSemaphore(value: 0)

    /// Committer-thread state: files and directories the generation being appended touched.
    private var dirtyChunks = Set<ChunkKey>()
    private var dirtyDirectories = Set<String>()

    /// Guards the checkpointer's fields below it (never taken with `state` held, nor
    /// `state` with it held).
    private let checkpointState = NSCondition()
    /// The background checkpoint handed over and not finished (at most one).
    private var checkpointJob: CheckpointJob?
    /// Set when a background checkpoint failed or was abandoned by a simulated crash; the
    /// committer cannot rotate again.
    private var checkpointFailure: CairnError?
    private var checkpointerStopping = false
    private var crashing = false
    /// Test hook: the checkpointer waits at this stage while it is set (see `CheckpointStage`).
    var checkpointHold: CheckpointStage? {
        get { checkpointState.withLock { hold } }
        set { checkpointState.withLock { hold = newValue; checkpointState.broadcast() } }
    }
    private var hold: CheckpointStage?
    /// Test hook: the stage the checkpointer is held at now, if any.
    var checkpointHeldAt: CheckpointStage? { checkpointState.withLock { heldAt } }
    private var heldAt: CheckpointStage?
    /// Test hook: the committer waits for a running checkpoint (its segment is full).
    var committerWaitsForCheckpoint: Bool { checkpointState.withLock { rotationWaiting } }
    private var rotationWaiting = false
    private let checkpointerDone = DispatchSemaphore(value: 0)
    /// Committer-thread state: bytes applied to each chunk file since its writeback was last
    /// started (see `startWriteback`).
    private var unsubmittedBytes: [ChunkKey: Int] = [:]
    /// Applied bytes of one chunk file after which its writeback is started.
    static let writebackStartBytes = 1 << 20
    /// Only writes at least this large count toward `writebackStartBytes`. Scattered small
    /// writes are left to the checkpointer: starting the writeback of a file's scattered
    /// dirty pages from the committer slowed 4 KiB random writes at depth 32 (an A/B of
    /// three alternating runs: RF1 5.1-6.5k IOPS with it, 6.2-10.1k without), while large
    /// writes gain from it (the checkpoint finds their pages already written).
    static let writebackWriteBytesMin = 64 << 10

    public init(directory: String, chunkSize: Int = chunkSizeDefault, journalBytes: Int = 256 << 20) throws {
        geometry = try ChunkGeometry(chunkSize: chunkSize)
        self.chunkSize = chunkSize
        self.directory = directory
        chunksRoot = "\(directory)/chunks"
        try Sys.mkdir(directory)
        try Sys.mkdir(chunksRoot)
        epochs = try EpochStore(directory: "\(directory)/epochs")
        try Sys.fsyncDirectory(directory)
        files = ChunkFileCache(root: chunksRoot, geometry: geometry)
        Self.removeUnfinishedCopies(chunksRoot)
        journal = try Journal(path: "\(directory)/journal", capacity: journalBytes, chunkSize: chunkSize)
        if try journal.openHeader() {
            try journal.replay { record, payload in try apply(record, payload: payload, replaying: true) }
            try checkpointNow()
        }
        let thread = Thread { [self] in runCommitter() }
        thread.name = "cairn-chunk-committer"
        thread.start()
        let checkpointer = Thread { [self] in runCheckpointer() }
        checkpointer.name = "cairn-chunk-checkpointer"
        checkpointer.start()
    }

    /// A copy-up cut off by a crash leaves its temporary file ("N.chunk.copy"); it was
    /// never acknowledged.
    static func removeUnfinishedCopies(_ root: String) {
        let fm = FileManager.default
        for volume in (try? fm.contentsOfDirectory(atPath: root)) ?? [] {
            for name in (try? fm.contentsOfDirectory(atPath: "\(root)/\(volume)")) ?? [] where name.hasSuffix(".copy") {
                unlink("\(root)/\(volume)/\(name)")
            }
        }
    }

    // MARK: Mutations

    public func write(_ key: ChunkKey, offset: Int, data: [UInt8], version: BlockVersion) async throws {
        try geometry.checkRange(offset: offset, length: data.count)
        guard !data.isEmpty else { return }
        try await write(key, offset: offset, payload: ChunkPayload(copying: data), version: version)
    }

    /// The payload is journaled (pwritev) and applied from where it lies: no user-space copy.
    public func write(_ key: ChunkKey, offset: Int, payload: ChunkPayload, version: BlockVersion) async throws {
        try geometry.checkRange(offset: offset, length: payload.count)
        guard payload.count > 0 else { return }
        _ = try await submit(Mutation(key: key, kind: .write(offset: offset, data: payload), version: version))
    }

    public func trim(_ key: ChunkKey, offset: Int, length: Int, version: BlockVersion) async throws {
        try geometry.checkRange(offset: offset, length: length)
        guard length > 0 else { return }
        _ = try await submit(Mutation(key: key, kind: .trim(offset: offset, length: length), version: version))
    }

    public func putBlocks(_ key: ChunkKey, blocks: [BlockCopy], overwriteBelow: Epoch) async throws -> Int {
        try geometry.checkCopies(blocks)
        guard !blocks.isEmpty else { return 0 }
        return try await submit(Mutation(key: key, kind: .put(blocks, overwriteBelow: overwriteBelow), version: .zero))
    }

    public func deleteChunk(_ key: ChunkKey) async throws {
        _ = try await submit(Mutation(key: key, kind: .deleteChunk, version: .zero))
    }

    public func copyChunk(from: ChunkKey, to: ChunkKey) async throws -> Bool {
        try await submit(Mutation(key: to, kind: .copy(from: from), version: .zero)) == 1
    }

    public func deleteVolume(_ volume: VolumeID) async throws {
        _ = try await submit(Mutation(key: ChunkKey(volume: volume, chunk: 0), kind: .deleteVolume, version: .zero))
        try epochs.remove(volume)
    }

    private func submit(_ mutation: Mutation) async throws -> Int {
        try await withCheckedThrowingContinuation { continuation in
            mutation.continuation = continuation
            state.lock()
            defer { state.unlock() }
            if let error = unusableError() {
                continuation.resume(throwing: error)
                return
            }
            // FIFO: once anyone waits, newcomers wait behind them.
            if queued.count >= Self.mutationsQueuedMax || !waiting.isEmpty {
                waiting.append(mutation)
            } else {
                queued.append(mutation)
                state.signal()
            }
        }
    }

    /// Mutations queued for the committer or waiting behind a full queue (a metric).
    public var mutationsPending: Int {
        state.lock()
        defer { state.unlock() }
        return queued.count + waiting.count
    }

    /// Why the store takes no more mutations (closed, or an I/O error it cannot recover
    /// from), or nil while it is usable.
    public var unusableReason: String? {
        state.lock()
        defer { state.unlock() }
        return unusableError().map { "\($0)" }
    }

    /// Caller holds `state`.
    private func unusableError() -> CairnError? {
        if closed || stopping { return .unavailable("chunk store \(directory) is closed") }
        return failure
    }

    // MARK: Reads

    public func read(_ key: ChunkKey, offset: Int, length: Int) async throws -> [UInt8] {
        try geometry.checkRange(offset: offset, length: length)
        return try await onReadQueue(key) { file in
            guard let file else { return [UInt8](repeating: 0, count: length) }
            return try file.lock.withReadLock { try ChunkOps.read(file, offset: offset, length: length) }
        }
    }

    public func blockTable(_ key: ChunkKey, first: Int, count: Int) async throws -> [BlockEntry] {
        try geometry.checkBlocks(first: first, count: count)
        return try await onReadQueue(key) { file in
            guard let file else { return [BlockEntry](repeating: .hole, count: count) }
            return try file.lock.withReadLock { try file.readEntries(first: first, count: count) }
        }
    }

    public func readBlockRaw(_ key: ChunkKey, index: Int) async throws -> (BlockEntry, [UInt8]) {
        try geometry.checkBlocks(first: index, count: 1)
        return try await onReadQueue(key) { file in
            guard let file else { return (.hole, [UInt8](repeating: 0, count: blockSize)) }
            return try file.lock.withReadLock { try ChunkOps.readRaw(file, index: index) }
        }
    }

    private func onReadQueue<T>(_ key: ChunkKey, _ body: @escaping (ChunkFile?) throws -> T) async throws -> T {
        let isClosed = state.withLock { closed || stopping }
        guard !isClosed else { throw CairnError.unavailable("chunk store \(directory) is closed") }
        return try await withCheckedThrowingContinuation { continuation in
            readQueue.async { [files] in
                continuation.resume(with: Result { try files.withFile(key, create: false, body) })
            }
        }
    }

    // MARK: Epochs, inventory, usage, close

    public func epoch(of volume: VolumeID) -> Epoch { epochs.epoch(of: volume) }

    public func raiseEpoch(of volume: VolumeID, to epoch: Epoch) throws -> Epoch {
        try epochs.raise(volume, to: epoch)
    }

    public func inventory() -> [ChunkKey] {
        let fm = FileManager.default
        var keys: [ChunkKey] = []
        for name in (try? fm.contentsOfDirectory(atPath: chunksRoot)) ?? [] {
            guard name.count == 16, let volume = UInt64(name, radix: 16) else { continue }
            for file in (try? fm.contentsOfDirectory(atPath: "\(chunksRoot)/\(name)")) ?? [] {
                guard file.hasSuffix(".chunk"), let chunk = UInt32(file.dropLast(6)) else { continue }
                keys.append(ChunkKey(volume: volume, chunk: chunk))
            }
        }
        return keys.sorted { ($0.volume, $0.chunk) < ($1.volume, $1.chunk) }
    }

    public func usage() -> (capacityBytes: UInt64, usedBytes: UInt64) {
        let used = inventory().reduce(Sys.allocatedBytes(journal.path)) { $0 + Sys.allocatedBytes(files.path($1)) }
        return (Sys.capacityBytes(directory), used)
    }

    /// Finishes queued mutations, checkpoints and releases the directory.
    public func close() throws {
        try shutDown(checkpoint: true)
    }

    /// Test hook: stops like a crash would — no checkpoint, applied data only in the page
    /// cache — and releases the directory lock so the same process can reopen it.
    func simulateCrash() {
        try? shutDown(checkpoint: false)
    }

    private func shutDown(checkpoint wanted: Bool) throws {
        let alreadyStopping: Bool = state.withLock {
            defer { stopping = true; state.signal() }
            return stopping
        }
        guard !alreadyStopping else { return }
        if !wanted {
            // A crash: a checkpoint not finished is abandoned (its header never written), and
            // a committer waiting for it fails its round instead.
            checkpointState.withLock {
                crashing = true
                checkpointFailure = checkpointFailure ?? .unavailable("chunk store \(directory) is closed")
                checkpointState.broadcast()
            }
        }
        committerDone.wait()
        checkpointState.withLock { checkpointerStopping = true; checkpointState.broadcast() }
        checkpointerDone.wait()
        defer {
            files.removeAll()
            journal.close()
            state.withLock { closed = true }
        }
        let failed = state.withLock { failure }
        if wanted && failed == nil { try checkpointNow() }
    }

    // MARK: Committer

    /// Space kept free on the data directory's file system. A mutation that could allocate
    /// more than the free space minus this is refused with `noSpace` before it is journaled:
    /// failing in the apply step instead would stop the whole store until it is reopened.
    static let spaceReserveBytes = 8 << 20

    /// Refuses the round's allocating mutations that do not fit; returns the others.
    private func admitSpace(_ round: [Mutation]) -> [Mutation] {
        guard round.contains(where: { $0.allocationBytesMax > 0 }) else { return round }
        var free = Int(clamping: Sys.freeBytes(directory))
        var admitted: [Mutation] = []
        admitted.reserveCapacity(round.count)
        for mutation in round {
            let need = mutation.allocationBytesMax
            if need > 0 && need + Self.spaceReserveBytes > free {
                mutation.continuation?.resume(throwing: CairnError.noSpace(
                    "data directory \(directory) is full (\(free) bytes free, \(Self.spaceReserveBytes) kept in reserve)"))
                continue
            }
            free -= need
            admitted.append(mutation)
        }
        return admitted
    }

    private func runCommitter() {
        while let all = nextRound() {
            let round = admitSpace(all)
            var batch = CommitBatch(journal.newBatch())
            do {
                for mutation in round { try add(mutation, to: &batch) }
                try flush(&batch)
                for mutation in round {
                    if let error = mutation.failure {
                        mutation.continuation?.resume(throwing: error)
                    } else {
                        mutation.continuation?.resume(returning: mutation.result)
                    }
                }
            } catch {
                let failure = (error as? CairnError) ?? .io("\(error)")
                state.withLock { self.failure = failure }
                for mutation in round { mutation.continuation?.resume(throwing: failure) }
            }
        }
        committerDone.signal()
    }

    /// Waits for work; nil once stopping and drained. Admits waiting callers.
    private func nextRound() -> [Mutation]? {
        state.lock()
        defer { state.unlock() }
        while queued.isEmpty && waiting.isEmpty && !stopping { state.wait() }
        if queued.isEmpty && waiting.isEmpty { return nil }
        let admitted = min(waiting.count, Self.mutationsQueuedMax - min(queued.count, Self.mutationsQueuedMax))
        queued.append(contentsOf: waiting.prefix(admitted))
        waiting.removeFirst(admitted)
        let round = queued
        queued = []
        if let error = failure {
            for mutation in round { mutation.continuation?.resume(throwing: error) }
            return []
        }
        return round
    }

    /// Encodes a mutation's records into the batch, flushing and checkpointing as needed.
    private func add(_ mutation: Mutation, to batch: inout CommitBatch) throws {
        switch mutation.kind {
        case .write(let offset, let data):
            let pieceMax = journal.recordPayloadMax
            var position = offset
            while position < offset + data.count {
                let stop = min(offset + data.count, (position / pieceMax + 1) * pieceMax)
                let record = JournalRecord(type: .write, key: mutation.key, offset: position, length: stop - position,
                                           version: mutation.version, payloadLength: stop - position)
                try append(record, .data(mutation, position - offset ..< stop - offset), to: &batch)
                position = stop
            }
        case .trim(let offset, let length):
            try append(JournalRecord(type: .trim, key: mutation.key, offset: offset, length: length,
                                     version: mutation.version), .none, to: &batch)
        case .put(let blocks, let overwriteBelow):
            // The version rule is judged against applied state, so earlier records of the
            // same chunk in this batch must be applied first.
            if batch.touchesAll || batch.keys.contains(mutation.key) { try flush(&batch) }
            let chosen = try selectCopies(mutation.key, blocks, overwriteBelow: overwriteBelow)
            for position in chosen {
                let copy = blocks[position]
                let hasData = copy.entry.state == .data
                let record = JournalRecord(type: .putBlock, key: mutation.key, offset: copy.index * blockSize,
                                           length: blockSize, version: copy.entry.version, entryState: copy.entry.state,
                                           entryCRC: copy.entry.crc, payloadLength: hasData ? blockSize : 0)
                try append(record, hasData ? .block(mutation, position) : .none, to: &batch)
            }
            mutation.result = chosen.count
        case .copy(let from):
            // Everything queued before (writes to the source) is applied first; the copy
            // is durable by itself (synced, renamed, directory synced), and the checkpoint
            // after it keeps older records of the target key (an earlier file's delete)
            // from ever being replayed over it.
            try flush(&batch)
            do {
                mutation.result = try copyChunkFile(from: from, to: mutation.key) ? 1 : 0
            } catch {
                mutation.failure = error  // The copy failed, the store did not.
            }
            if mutation.result == 1 {
                try checkpointNow()
                batch = CommitBatch(journal.newBatch())  // Of the generation the checkpoint started.
            }
        case .deleteChunk:
            try append(JournalRecord(type: .deleteChunk, key: mutation.key), .none, to: &batch)
        case .deleteVolume:
            try append(JournalRecord(type: .deleteVolume, key: mutation.key), .none, to: &batch)
            batch.touchesAll = true
        }
    }

    /// Committer thread: copies the chunk file `from` to `to` through a temporary file.
    private func copyChunkFile(from: ChunkKey, to: ChunkKey) throws -> Bool {
        let target = files.path(to)
        if Sys.exists(target) { return false }
        let fileBytes = ChunkFile.tableBytes(geometry) + geometry.chunkSize
        return try files.withFile(from, create: false) { source -> Bool in
            guard let source else { return false }
            let need = Int(clamping: Sys.allocatedBytes(source.path))
            let free = Int(clamping: Sys.freeBytes(directory))
            guard need + Self.spaceReserveBytes <= free else {
                throw CairnError.noSpace("data directory \(directory) has \(free) bytes free; copying chunk \(from) needs \(need)")
            }
            let volumeDirectory = files.volumeDirectory(to.volume)
            let newDirectory = !Sys.exists(volumeDirectory)
            try Sys.mkdir(volumeDirectory)
            let temporary = target + ".copy"
            let fd = try Sys.open(temporary, O_RDWR | O_CREAT | O_TRUNC)!
            var moved = false
            defer {
                Glibc.close(fd)
                if !moved { unlink(temporary) }
            }
            try Sys.ftruncate(fd, fileBytes, temporary)
            try source.lock.withReadLock { try Sys.copySparse(source.fd, fd, length: fileBytes, source.path) }
            try Sys.fdatasync(fd, temporary)
            moved = try files.install(to, from: temporary)
            guard moved else { return false }
            try Sys.fsyncDirectory(volumeDirectory)
            if newDirectory { try Sys.fsyncDirectory(chunksRoot) }
            return true
        }
    }

    private func selectCopies(_ key: ChunkKey, _ blocks: [BlockCopy], overwriteBelow: Epoch) throws -> [Int] {
        let low = blocks.map(\.index).min()!
        let high = blocks.map(\.index).max()!
        let stored = try files.withFile(key, create: false) { file in
            try file?.readEntries(first: low, count: high - low + 1)
        }
        return ChunkOps.selectCopies(blocks, overwriteBelow: overwriteBelow) { stored?[$0 - low].version ?? .zero }
    }

    private func append(_ record: JournalRecord, _ payload: PayloadSource, to batch: inout CommitBatch) throws {
        let size = record.encodedBytes
        if batch.records.byteCount + size > min(journal.bytesFree, Self.batchBytesMax) { try flush(&batch) }
        if size > journal.bytesFree {
            try rotate(waiting: true)
            batch = CommitBatch(journal.newBatch())
        }
        if case .data(let mutation, let range) = payload, case .write(_, let data) = mutation.kind {
            batch.records.append(record, borrowing: data, range: range)
        } else {
            payload.withBytes { batch.records.append(record, payload: $0) }
        }
        batch.pending.append((record, payload))
        batch.keys.insert(record.key)
    }

    /// Makes the batch durable, applies it, and checkpoints when the journal is half full.
    private func flush(_ batch: inout CommitBatch) throws {
        if !batch.records.isEmpty {
            try journal.append(batch.records)
            for (record, payload) in batch.pending {
                try payload.withBytes { try apply(record, payload: $0, replaying: false) }
            }
            try startWriteback()
        }
        if journal.segmentHalfFull { try rotate(waiting: false) }
        batch = CommitBatch(journal.newBatch())
    }

    /// Applies one durable record to the chunk files (page cache).
    private func apply(_ record: JournalRecord, payload: UnsafeRawBufferPointer?, replaying: Bool) throws {
        let key = record.key
        switch record.type {
        case .write, .trim, .putBlock:
            try files.withFile(key, create: true, created: { dirtyDirectories.insert($0) }) { file in
                let file = file!
                try file.lock.withWriteLock {
                    switch record.type {
                    case .write:
                        try ChunkOps.write(file, offset: record.offset, data: payload!, version: record.version,
                                           verifyOld: !replaying)
                    case .trim:
                        try ChunkOps.trim(file, offset: record.offset, length: record.length, version: record.version,
                                          verifyOld: !replaying)
                    default:
                        let entry = BlockEntry(state: record.entryState, crc: record.entryCRC, version: record.version)
                        try ChunkOps.put(file, index: record.offset / blockSize, entry: entry,
                                         data: record.entryState == .data ? payload : nil)
                    }
                }
            }
            dirtyChunks.insert(key)
            if !replaying && record.type == .write && record.length >= Self.writebackWriteBytesMin {
                unsubmittedBytes[key, default: 0] += record.length
            }
        case .deleteChunk:
            try files.removeFile(key)
            dirtyChunks.remove(key)
            unsubmittedBytes[key] = nil
            dirtyDirectories.insert(files.volumeDirectory(key.volume))
        case .deleteVolume:
            try files.removeVolume(key.volume)
            dirtyChunks = dirtyChunks.filter { $0.volume != key.volume }
            unsubmittedBytes = unsubmittedBytes.filter { $0.key.volume != key.volume }
            dirtyDirectories.remove(files.volumeDirectory(key.volume))
            dirtyDirectories.insert(chunksRoot)
        }
    }

    /// Starts the writeback of chunk files with at least `writebackStartBytes` applied since
    /// the last start, so the page cache drains to the disk while writes continue and a
    /// checkpoint's fdatasync finds little left to write (it waits, not the writes).
    private func startWriteback() throws {
        for (key, bytes) in unsubmittedBytes where bytes >= Self.writebackStartBytes {
            unsubmittedBytes[key] = nil
            try files.withFile(key, create: false) { file in
                if let file { Sys.startWriteback(file.fd) }
            }
        }
    }

    /// Committer: hands the generation being appended to the checkpointer and appends the
    /// next one. A running checkpoint is waited for (`waiting`: the segment is full) or
    /// leaves everything as it is.
    private func rotate(waiting: Bool) throws {
        try checkpointState.withLock {
            while checkpointJob != nil && checkpointFailure == nil {
                guard waiting else { return }
                rotationWaiting = true
                checkpointState.wait()
            }
            rotationWaiting = false
            if let checkpointFailure { throw checkpointFailure }
            journal.rotate()
            checkpointJob = CheckpointJob(generation: journal.generation - 1, chunks: dirtyChunks,
                                          directories: dirtyDirectories)
            checkpointState.broadcast()
        }
        dirtyChunks.removeAll()
        dirtyDirectories.removeAll()
    }

    /// Checkpoints on the calling thread (the committer, or open and close while it does not
    /// run): waits for a background checkpoint, syncs what the live records touched, and
    /// retires every live generation, one header at a time.
    private func checkpointNow() throws {
        try checkpointState.withLock {
            while checkpointJob != nil && checkpointFailure == nil { checkpointState.wait() }
            if let checkpointFailure { throw checkpointFailure }
        }
        try sync(chunks: dirtyChunks, directories: dirtyDirectories)
        if journal.oldestGeneration < journal.generation {
            try journal.retire(journal.oldestGeneration)  // After a replay of two generations.
        }
        journal.rotate()
        try journal.retire(journal.generation - 1)
        dirtyChunks.removeAll()
        dirtyDirectories.removeAll()
        unsubmittedBytes.removeAll()
    }

    /// Linux fsync flushes the file's dirty pages whichever descriptor wrote them, so files
    /// evicted from the cache since are simply reopened; files and directories deleted since
    /// were deleted by later records, which are replayed after these.
    private func sync(chunks: Set<ChunkKey>, directories: Set<String>) throws {
        for key in chunks {
            try files.withFile(key, create: false) { file in
                if let file { try Sys.fdatasync(file.fd, file.path) }
            }
        }
        for path in directories { try Sys.fsyncDirectory(path) }
    }

    // MARK: Checkpointer

    private func runCheckpointer() {
        while let job = nextCheckpoint() {
            guard proceed(past: .beforeSync) else { continue }
            do {
                try sync(chunks: job.chunks, directories: job.directories)
                guard proceed(past: .beforeHeader) else { continue }
                try journal.retire(job.generation)
                checkpointState.withLock { checkpointJob = nil; checkpointState.broadcast() }
            } catch {
                let failure = (error as? CairnError) ?? .io("\(error)")
                state.withLock { self.failure = failure }
                checkpointState.withLock { checkpointFailure = failure; checkpointState.broadcast() }
            }
        }
        checkpointerDone.signal()
    }

    /// Waits for a job; nil once stopping with none left (or crashing).
    private func nextCheckpoint() -> CheckpointJob? {
        checkpointState.lock()
        defer { checkpointState.unlock() }
        while true {
            if crashing { return nil }
            if let job = checkpointJob, checkpointFailure == nil { return job }
            if checkpointerStopping { return nil }
            checkpointState.wait()
        }
    }

    /// Waits while a test holds the checkpointer at `stage`; false once a simulated crash
    /// began (the job is abandoned: its header is never written).
    private func proceed(past stage: CheckpointStage) -> Bool {
        checkpointState.withLock {
            while hold == stage && !crashing && !checkpointerStopping {
                heldAt = stage
                checkpointState.wait()
            }
            heldAt = nil
            return !crashing
        }
    }
}

/// A generation handed to the checkpointer: what its records touched.
struct CheckpointJob {
    let generation: UInt64
    let chunks: Set<ChunkKey>
    let directories: Set<String>
}

/// Where a test may hold a background checkpoint (`DiskChunkStore.checkpointHold`).
enum CheckpointStage {
    /// Before any file of the generation is synced.
    case beforeSync
    /// After the files are synced, before the header that retires the generation.
    case beforeHeader
}

/// A queued mutation and the caller waiting for it.
final class Mutation: @unchecked Sendable {
    enum Kind {
        case write(offset: Int, data: ChunkPayload)
        case trim(offset: Int, length: Int)
        case put([BlockCopy], overwriteBelow: Epoch)
        case deleteChunk
        case deleteVolume
        /// Copy-up into `key` from another chunk of this store.
        case copy(from: ChunkKey)
    }
    let key: ChunkKey
    let kind: Kind
    let version: BlockVersion
    /// Set by the committer: blocks applied by a putBlocks.
    var result = 0
    /// Set by the committer when this mutation alone failed (a copy).
    var failure: Error?
    var continuation: CheckedContinuation<Int, Error>?

    init(key: ChunkKey, kind: Kind, version: BlockVersion) {
        self.key = key; self.kind = kind; self.version = version
    }

    /// The most disk space applying this mutation can take: every touched block newly
    /// allocated (overwrites of allocated blocks take none, but that is not known here).
    var allocationBytesMax: Int {
        switch kind {
        case .write(let offset, let data):
            let first = offset / blockSize, last = (offset + data.count + blockSize - 1) / blockSize
            return (last - first) * blockSize
        case .put(let blocks, _):
            return blocks.filter { $0.data != nil }.count * blockSize
        case .trim, .deleteChunk, .deleteVolume, .copy:
            return 0
        }
    }
}

/// Where a record's payload lives: in the mutation. Write payloads are never copied (the
/// journal borrows them); repair blocks are copied into the journal batch.
enum PayloadSource {
    case none
    case data(Mutation, Range<Int>)
    case block(Mutation, Int)

    func withBytes<T>(_ body: (UnsafeRawBufferPointer?) throws -> T) rethrows -> T {
        switch self {
        case .none:
            return try body(nil)
        case .data(let mutation, let range):
            guard case .write(_, let data) = mutation.kind else { preconditionFailure("write payload without write") }
            return try body(UnsafeRawBufferPointer(rebasing: data.bytes[range]))
        case .block(let mutation, let position):
            guard case .put(let blocks, _) = mutation.kind, let data = blocks[position].data else {
                preconditionFailure("block payload without block data")
            }
            return try data.withUnsafeBytes { try body($0) }
        }
    }
}

/// Records of one group commit and what to apply once they are durable.
struct CommitBatch {
    var records: JournalBatch
    var pending: [(JournalRecord, PayloadSource)] = []
    var keys = Set<ChunkKey>()
    /// A volume delete is in the batch: every later repair copy must see it applied.
    var touchesAll = false
    init(_ records: JournalBatch) { self.records = records }
}
