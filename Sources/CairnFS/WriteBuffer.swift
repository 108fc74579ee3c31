// Write buffering: a mount keeps each file's written bytes in memory (coalesced into
// extents) and stores them as new slices and map transactions when the file is
// flushed: on flush (every close), fsync, release, before a truncate or fallocate, when
// the file's buffer reaches `perFileBytes` or holds `pendingExtentsMax` separate
// extents (MapCompaction.swift), and when all buffers together reach `totalBytes`. So
// close-to-open holds (close flushes before it returns) and a write's cost is a memory
// copy; reads and stats on this mount see the buffered bytes (read-after-write), other
// mounts see them after the writer's close or fsync.
//
// Pipelined flushes: a flush takes the file's pending extents as one "flushing" layer
// and stores it in two steps: the data as a new slice (any number of a file's layers do
// this at once), then the map transaction, strictly in the order the layers were taken,
// so a newer layer's bytes always end up over an older one's. A flush started by a
// write's limit runs in the background (at most `flushesInFlightMax` layers per file;
// a write waits for a free slot); flush, fsync, close, truncate and fallocate wait for
// their own layer's commit, which comes after every older one. When a layer fails, it
// and every newer layer go back under the pending bytes, in order (nothing newer can have
// committed: commits are ordered), and the next flush stores them again; a file whose
// background flush failed stores its next flushes inline, so the writer sees the error
// and the buffer stays bounded.
//
// Reads overlay, in this order, the store's map, the flushing layers (oldest first) and
// the extents still pending. They take that snapshot before reading the inode from the
// store: bytes that leave the buffer are in the store before their layer is dropped, so
// a read sees every byte in one of them.
import CairnCore
import CairnMeta
import Foundation
import NIOCore

public struct WriteBufferLimits: Sendable {
    public var perFileBytes: Int
    public var totalBytes: Int
    public init(perFileBytes: Int, totalBytes: Int) { self.perFileBytes = perFileBytes; self.totalBytes = totalBytes }
    /// Every write is stored before it is acknowledged.
    public static let none = WriteBufferLimits(perFileBytes: 0, totalBytes: 0)
    public static let standard = WriteBufferLimits(perFileBytes: 8 << 20, totalBytes: 64 << 20)
}

/// Written bytes by file offset: sorted, non-overlapping, touching ranges merged. Each
/// extent's bytes are one ByteBuffer (readerIndex 0), so a sequential writer's extent
/// grows in place and goes to the store without another copy.
struct Extents {
    struct Extent {
        var offset: UInt64
        var bytes: ByteBuffer
        var count: Int { bytes.readableBytes }
        var end: UInt64 { offset + UInt64(bytes.readableBytes) }
    }
    private(set) var items: [Extent] = []
    private(set) var byteCount = 0

    var isEmpty: Bool { items.isEmpty }
    var end: UInt64 { items.last?.end ?? 0 }

    mutating func write(_ offset: UInt64, _ bytes: [UInt8]) {
        bytes.withUnsafeBytes { write(offset, $0) }
    }

    mutating func write(_ offset: UInt64, _ bytes: ByteBuffer) {
        bytes.withUnsafeReadableBytes { write(offset, $0) }
    }

    /// Writes `bytes` at `offset` over whatever is there.
    mutating func write(_ offset: UInt64, _ bytes: UnsafeRawBufferPointer) {
        guard !bytes.isEmpty else { return }
        let end = offset + UInt64(bytes.count)
        // items[lo..<hi]: the extents the write overlaps or touches.
        var lo = 0, hi = items.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if items[mid].end < offset { lo = mid + 1 } else { hi = mid }
        }
        hi = lo
        while hi < items.count && items[hi].offset <= end { hi += 1 }
        if lo == hi {
            var b = ByteBufferAllocator().buffer(capacity: bytes.count)
            b.writeBytes(bytes)
            items.insert(Extent(offset: offset, bytes: b), at: lo)
            byteCount += bytes.count
            return
        }
        if hi == lo + 1 && items[lo].end == offset {  // an append: the common case, in place
            items[lo].bytes.writeBytes(bytes)
            byteCount += bytes.count
            return
        }
        if hi == lo + 1 && items[lo].offset <= offset && end <= items[lo].end {  // inside one extent
            items[lo].bytes.setBytes(bytes, at: Int(offset - items[lo].offset))
            return
        }
        let start = min(items[lo].offset, offset)
        let newEnd = max(items[hi - 1].end, end)
        var merged = ByteBufferAllocator().buffer(capacity: Int(newEnd - start))
        merged.writeRepeatingByte(0, count: Int(newEnd - start))
        for k in lo..<hi {
            byteCount -= items[k].count
            merged.setBuffer(items[k].bytes, at: Int(items[k].offset - start))
        }
        merged.setBytes(bytes, at: Int(offset - start))
        byteCount += merged.readableBytes
        items.replaceSubrange(lo..<hi, with: [Extent(offset: start, bytes: merged)])
    }

    /// Writes every extent of `newer` over these.
    mutating func write(_ newer: Extents) {
        for e in newer.items { write(e.offset, e.bytes) }
    }

    /// Copies the buffered bytes in [from, from + out.count) over `out`.
    func overlay(_ out: UnsafeMutableRawBufferPointer, from: UInt64) {
        let to = from + UInt64(out.count)
        for e in items where e.end > from && e.offset < to {
            let a = max(e.offset, from), b = min(e.end, to)
            e.bytes.withUnsafeReadableBytes { src in
                let part = UnsafeRawBufferPointer(rebasing: src[Int(a - e.offset)..<Int(b - e.offset)])
                UnsafeMutableRawBufferPointer(rebasing: out[Int(a - from)..<Int(b - from)]).copyMemory(from: part)
            }
        }
    }

    /// Whether any buffered byte falls in [from, to).
    func overlaps(from: UInt64, to: UInt64) -> Bool {
        items.contains { $0.end > from && $0.offset < to }
    }

    /// The bytes of every extent back to back (what one slice stores): the extent's own
    /// buffer when there is one.
    var joined: ByteBuffer {
        if items.count == 1 { return items[0].bytes }
        var out = ByteBufferAllocator().buffer(capacity: byteCount)
        for e in items { out.writeImmutableBuffer(e.bytes) }
        return out
    }

    /// Drops everything at or after `size`.
    mutating func truncate(_ size: UInt64) {
        var out = Extents()
        for e in items where e.offset < size {
            out.write(e.offset, e.bytes.getSlice(at: e.bytes.readerIndex, length: Int(min(e.end, size) - e.offset))!)
        }
        self = out
    }
}

/// A file's buffered bytes as a read or stat sees them: the flushing layers, oldest
/// first, then the pending extents (none in the summary a stat takes: holding them would
/// make the writer's next append copy its extent).
struct BufferedView {
    var layers: [Extents] = []
    var end: UInt64 = 0
    var mtime: FSTime?

    /// Copies the buffered bytes in [from, from + out.count) over `out`, newest last.
    func overlay(_ out: UnsafeMutableRawBufferPointer, from: UInt64) {
        for l in layers { l.overlay(out, from: from) }
    }

    func overlaps(from: UInt64, to: UInt64) -> Bool { layers.contains { $0.overlaps(from: from, to: to) } }
}

/// Pending extents taken by a flush, until the map references them.
struct FlushLayer {
    let id: UInt64
    let extents: Extents
    let mtime: FSTime?
}

/// One file's buffered writes.
struct FileBuffer {
    var pending = Extents()
    /// Being stored, oldest first; each leaves once the map references it.
    var flushing: [FlushLayer] = []
    /// Time of the last buffered write (the file's mtime when stored).
    var mtime: FSTime?
    /// A background flush failed and its bytes went back to `pending`: flushes that
    /// writes start run inline until one succeeds, so the writer sees the error.
    var backgroundFailed = false
    /// A getxattr of `security.capability` found none while the file had this buffer.
    /// The kernel asks for it before every write (to drop capabilities on a write), which
    /// would cost a metadata call per write; this mount's setxattr and removexattr
    /// clear it, other mounts' changes are seen once the buffer is gone (its last flush).
    var capabilityAbsent = false
    /// Failed layers so far, and the last one's error (for flushes waiting on them).
    var failures = 0
    var lastFailure: String?
    var flushingBytes: Int { flushing.reduce(0) { $0 + $1.extents.byteCount } }
}

struct BufferState {
    var files: [InodeNumber: FileBuffer] = [:]
    /// Bytes pending and flushing in all files.
    var bytes = 0
    var nextLayer: UInt64 = 1
    /// Tasks waiting for a change of a file's flushing layers (their turn to commit, a
    /// free slot, the end of a layer), by inode; all are woken at each change.
    var waiters: [InodeNumber: [CheckedContinuation<Bool, Never>]] = [:]
    /// Why layers that went back to pending (because an older one failed) were not
    /// stored, for their flushes to report.
    var returned: [UInt64: String] = [:]
}

/// What a buffered write still has to do.
public enum WriteFollowUp: Sendable {
    case none
    /// Store the file's buffer (a limit of the file was reached).
    case flushFile
    /// Store every file's buffer (the total limit was reached).
    case flushAll
}

extension FileSystem {
    /// Layers of one file being stored at once; a write that would start one more waits.
    public static let flushesInFlightMax = 4
    /// Rounds of a flush whose bytes keep coming back from failed layers.
    static let flushAttemptsMax = 3

    /// Buffers `bytes` at `offset`; stores the file's buffer when a limit is reached.
    public func write(_ ino: InodeNumber, offset: UInt64, bytes: [UInt8]) async throws -> Int {
        let followUp = try bytes.withUnsafeBytes { try bufferWrite(ino, offset: offset, bytes: $0) }
        try await finishWrite(ino, followUp)
        return bytes.count
    }

    /// The memory part of a write (no suspension, so a FUSE callback copies the request's
    /// bytes straight from libfuse's buffer): buffers `bytes` at `offset` and says what
    /// `finishWrite` has to do before the write is acknowledged.
    public func bufferWrite(_ ino: InodeNumber, offset: UInt64, bytes: UnsafeRawBufferPointer) throws -> WriteFollowUp {
        guard !bytes.isEmpty else { return .none }
        guard offset + UInt64(bytes.count) <= Self.fileSizeMax else { throw FSError.tooBig("write past the largest file size") }
        let time = now()
        let (pendingBytes, fileBytes, allBytes, extentCount) = buffers.withLock { s -> (Int, Int, Int, Int) in
            // In place: a copy of the FileBuffer would make the append copy the extent.
            let before = s.files[ino]?.pending.byteCount ?? 0
            s.files[ino, default: FileBuffer()].pending.write(offset, bytes)
            s.files[ino]!.mtime = time
            let f = s.files[ino]!
            s.bytes += f.pending.byteCount - before
            return (f.pending.byteCount, f.pending.byteCount + f.flushingBytes, s.bytes, f.pending.items.count)
        }
        if allBytes >= bufferLimits.totalBytes && bufferLimits.totalBytes > 0 && fileBytes < allBytes { return .flushAll }
        if pendingBytes >= bufferLimits.perFileBytes || extentCount >= Self.pendingExtentsMax { return .flushFile }
        return .none
    }

    /// What a write has to do after `bufferWrite` before it is acknowledged: a file's
    /// limit starts a background flush once the file has a free slot (inline after a
    /// failed one); the total limit flushes every file inline.
    public func finishWrite(_ ino: InodeNumber, _ followUp: WriteFollowUp) async throws {
        switch followUp {
        case .none: return
        case .flushAll: try await flushAll()
        case .flushFile:
            if bufferLimits.perFileBytes == 0 || buffers.withLock({ $0.files[ino]?.backgroundFailed ?? false }) {
                return try await flush(ino)
            }
            await waitForFile(ino) { f in f.flushing.count < Self.flushesInFlightMax }
            guard let layer = takePending(ino) else { return }
            Task { try? await self.storeLayer(ino, layer, background: true) }
        }
    }

    /// Stores the file's buffered writes, and returns once every byte written before the
    /// call is in the store: its own layer committed (after every older one), or, with
    /// nothing pending, the layers in flight committed without a failure meanwhile.
    public func flush(_ ino: InodeNumber) async throws {
        for _ in 0..<Self.flushAttemptsMax {
            let failures = buffers.withLock { $0.files[ino]?.failures ?? 0 }
            if let layer = takePending(ino) {
                do {
                    try await storeLayer(ino, layer, background: false)
                    return
                } catch is ReturnedLayer {
                    continue  // an older layer failed; ours is pending again
                }
            }
            guard let last = buffers.withLock({ $0.files[ino]?.flushing.last?.id }) else { return }
            await waitForFile(ino) { f in !f.flushing.contains { $0.id == last } }
            // A failure sent bytes back to pending (or into a newer layer): store them.
            guard let f = buffers.withLock({ $0.files[ino] }), f.failures != failures else { return }
        }
        let why = buffers.withLock { $0.files[ino]?.lastFailure } ?? "unknown"
        throw FSError.io("storing the writes of inode \(ino) failed \(Self.flushAttemptsMax) times: \(why)")
    }

    /// Flushes every file with buffered writes (unmount, the total limit).
    public func flushAll() async throws {
        let inodes = buffers.withLock { Array($0.files.keys) }
        var firstError: Error?
        for ino in inodes {
            do { try await flush(ino) } catch { firstError = firstError ?? error }
        }
        if let firstError { throw firstError }
    }

    /// Moves the file's pending extents to a new flushing layer (the newest).
    func takePending(_ ino: InodeNumber) -> FlushLayer? {
        buffers.withLock { s -> FlushLayer? in
            guard let f = s.files[ino], !f.pending.isEmpty else { return nil }
            let layer = FlushLayer(id: s.nextLayer, extents: f.pending, mtime: f.mtime)
            s.nextLayer += 1
            s.files[ino]!.flushing.append(layer)
            s.files[ino]!.pending = Extents()
            return layer
        }
    }

    /// A layer that went back to pending because an older layer of its file failed.
    struct ReturnedLayer: Error, CustomStringConvertible {
        var description: String
    }

    /// Stores one layer: its data as a new slice (alongside the file's other layers),
    /// then, once every older layer of the file committed, its map transaction. On
    /// failure the layer and every newer one go back under the pending bytes.
    func storeLayer(_ ino: InodeNumber, _ layer: FlushLayer, background: Bool) async throws {
        let storing = beginStore()  // until the commit attempt ends: see OwnVolume.swift
        defer { endStore(storing) }
        var failure: Error?
        var at: (volume: String, offset: UInt64)?
        do { at = try await data.append(layer.extents.joined) } catch { failure = error }
        await waitForFile(ino) { f in f.flushing.first?.id == layer.id || !f.flushing.contains { $0.id == layer.id } }
        if let why = buffers.withLock({ $0.returned.removeValue(forKey: layer.id) }) {
            throw ReturnedLayer(description: "an older flush of inode \(ino) failed: \(why)")
        }
        var slices = 0
        if failure == nil, let at {
            do {
                slices = try await commitLayer(ino, layer, at: at)
            } catch let e as FSError where e.errno == FSError.noEntry("").errno {
                // The file is gone from every name and handle: its bytes have no reader.
            } catch {
                failure = error
            }
        }
        if let failure {
            returnLayers(ino, from: layer.id, because: failure, background: background)
            throw failure
        }
        // The bytes are stored; a compaction that fails leaves a correct, longer map
        // (MapCompaction.swift), so its error is not this flush's. It runs before the
        // file's next layer commits (that one waits for this layer to leave), so the map
        // never grows by more than one layer past the threshold.
        if slices > Self.mapSlicesCompactAt { try? await compactMap(ino) }
        buffers.withLock { s in
            guard var f = s.files[ino] else { return }
            precondition(f.flushing.first?.id == layer.id, "flush layers commit in the order they were taken")
            f.flushing.removeFirst()
            f.backgroundFailed = false
            s.bytes -= layer.extents.byteCount
            if f.pending.isEmpty && f.flushing.isEmpty { s.files.removeValue(forKey: ino) } else { s.files[ino] = f }
        }
        wakeFile(ino)
    }

    /// The failed layer `id` (the oldest of its file) and every newer one go back under
    /// the pending bytes, in order; the newer ones' flushes report `error`.
    func returnLayers(_ ino: InodeNumber, from id: UInt64, because error: Error, background: Bool) {
        buffers.withLock { s in
            guard var f = s.files[ino] else { return }
            precondition(f.flushing.first?.id == id, "only the oldest layer fails")
            var back = Extents()
            for l in f.flushing {
                back.write(l.extents)
                if l.id != id { s.returned[l.id] = "\(error)" }
            }
            back.write(f.pending)
            s.bytes += back.byteCount - f.pending.byteCount - f.flushingBytes
            f.pending = back
            f.flushing = []
            f.failures += 1
            f.lastFailure = "\(error)"
            if background { f.backgroundFailed = true }
            s.files[ino] = f
        }
        wakeFile(ino)
    }

    /// The map transaction of a stored layer. Returns how many slices the file's map has then.
    func commitLayer(_ ino: InodeNumber, _ layer: FlushLayer, at: (volume: String, offset: UInt64)) async throws -> Int {
        var slices: [Slice] = []
        var volumeOffset = at.offset
        for e in layer.extents.items {
            slices.append(Slice(fileOffset: e.offset, length: UInt64(e.count), volume: at.volume, volumeOffset: volumeOffset))
            volumeOffset += UInt64(e.count)
        }
        var attempts = 0
        return try await transact { t in
            attempts += 1
            try await requireOwnVolume(t, recheck: attempts > 1)
            var node = try await inode(t, ino)
            guard node.isRegular else { throw FSError.invalid("inode \(ino) is not a regular file") }
            for s in slices {
                node.slices = SliceMap.write(node.slices, s)
                node.size = max(node.size, s.fileEnd)
            }
            node.mtime = layer.mtime ?? now()
            node.ctime = node.mtime
            try t.put(keys.inode(ino), node)
            return node.slices.count
        }
    }

    /// The size and mtime the file's buffered writes give it, for stats.
    func buffered(_ ino: InodeNumber) -> BufferedView {
        buffers.withLock { s in
            guard let f = s.files[ino] else { return BufferedView() }
            return BufferedView(end: max(f.pending.end, f.flushing.reduce(0) { max($0, $1.extents.end) }), mtime: f.mtime)
        }
    }

    /// The file's buffered writes (flushing layers, then pending), for reads.
    func bufferedLayers(_ ino: InodeNumber) -> BufferedView {
        buffers.withLock { s in
            guard let f = s.files[ino] else { return BufferedView() }
            var v = BufferedView(layers: f.flushing.map(\.extents), mtime: f.mtime)
            if !f.pending.isEmpty { v.layers.append(f.pending) }
            v.end = v.layers.reduce(0) { max($0, $1.end) }
            return v
        }
    }

    static let capabilityXattr = "security.capability"

    /// Whether a getxattr of `security.capability` already found none while the file has
    /// its current buffer (see `FileBuffer.capabilityAbsent`).
    func capabilityKnownAbsent(_ ino: InodeNumber) -> Bool {
        buffers.withLock { $0.files[ino]?.capabilityAbsent ?? false }
    }

    /// Notes (or forgets, after this mount changed the file's attributes) that the file
    /// has no `security.capability`, for as long as it has a buffer.
    func noteCapabilityAbsent(_ ino: InodeNumber, _ absent: Bool) {
        buffers.withLock { s in
            guard s.files[ino] != nil else { return }
            s.files[ino]!.capabilityAbsent = absent
        }
    }

    /// Bytes buffered in all files of this mount (pending and being stored).
    public var bufferedByteCount: Int { buffers.withLock { $0.bytes } }

    /// Waits until `ready` holds for the file's buffer (a file without one counts as empty).
    func waitForFile(_ ino: InodeNumber, until ready: (FileBuffer) -> Bool) async {
        while true {
            let isReady: Bool = await withCheckedContinuation { (c: CheckedContinuation<Bool, Never>) in
                let now = buffers.withLock { s -> Bool in
                    if ready(s.files[ino] ?? FileBuffer()) { return true }
                    s.waiters[ino, default: []].append(c)
                    return false
                }
                if now { c.resume(returning: true) }
            }
            if isReady { return }
        }
    }

    /// Wakes every task waiting on the file; each checks its condition again.
    func wakeFile(_ ino: InodeNumber) {
        let woken = buffers.withLock { $0.waiters.removeValue(forKey: ino) ?? [] }
        for c in woken { c.resume(returning: false) }
    }
}
