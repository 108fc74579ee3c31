// Write buffering: a mount keeps each file's written bytes in memory (coalesced into
// extents) and stores them as one new slice and one map transaction when the file is
// flushed: on flush (every close), fsync, release, before a truncate or fallocate, when
// the file's buffer reaches `perFileBytes` or holds `pendingExtentsMax` separate
// extents (MapCompaction.swift), and when all buffers together reach `totalBytes`. So close-to-open holds (close flushes before it returns) and a write's
// cost is a memory copy; reads and stats on this mount see the buffered bytes
// (read-after-write), other mounts see them after the writer's close or fsync.
//
// Reads overlay, in this order, the store's map, the extents being flushed and the
// extents still pending. They take that snapshot before reading the inode from the
// store: bytes that leave the buffer are in the store before `flushing` is cleared, so
// a read sees every byte in one of the three.
import CairnCore
import CairnMeta
import Foundation

public struct WriteBufferLimits: Sendable {
    public var perFileBytes: Int
    public var totalBytes: Int
    public init(perFileBytes: Int, totalBytes: Int) { self.perFileBytes = perFileBytes; self.totalBytes = totalBytes }
    /// Every write is stored before it is acknowledged.
    public static let none = WriteBufferLimits(perFileBytes: 0, totalBytes: 0)
    public static let standard = WriteBufferLimits(perFileBytes: 8 << 20, totalBytes: 64 << 20)
}

/// Written bytes by file offset: sorted, non-overlapping, touching ranges merged.
struct Extents {
    struct Extent {
        var offset: UInt64
        var bytes: [UInt8]
        var end: UInt64 { offset + UInt64(bytes.count) }
    }
    private(set) var items: [Extent] = []
    private(set) var byteCount = 0

    var isEmpty: Bool { items.isEmpty }
    var end: UInt64 { items.last?.end ?? 0 }

    /// Writes `bytes` at `offset` over whatever is there.
    mutating func write(_ offset: UInt64, _ bytes: [UInt8]) {
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
            items.insert(Extent(offset: offset, bytes: bytes), at: lo)
            byteCount += bytes.count
            return
        }
        if hi == lo + 1 && items[lo].end == offset {  // an append: the common case
            items[lo].bytes.append(contentsOf: bytes)
            byteCount += bytes.count
            return
        }
        let start = min(items[lo].offset, offset)
        let newEnd = max(items[hi - 1].end, end)
        var merged = [UInt8](repeating: 0, count: Int(newEnd - start))
        for k in lo..<hi {
            byteCount -= items[k].bytes.count
            let at = Int(items[k].offset - start)
            merged.replaceSubrange(at..<at + items[k].bytes.count, with: items[k].bytes)
        }
        let at = Int(offset - start)
        merged.replaceSubrange(at..<at + bytes.count, with: bytes)
        byteCount += merged.count
        items.replaceSubrange(lo..<hi, with: [Extent(offset: start, bytes: merged)])
    }

    /// Copies the buffered bytes in [from, from + out.count) over `out`.
    func overlay(_ out: inout [UInt8], from: UInt64) {
        let to = from + UInt64(out.count)
        for e in items where e.end > from && e.offset < to {
            let a = max(e.offset, from), b = min(e.end, to)
            out.replaceSubrange(Int(a - from)..<Int(b - from), with: e.bytes[Int(a - e.offset)..<Int(b - e.offset)])
        }
    }

    /// Drops everything at or after `size`.
    mutating func truncate(_ size: UInt64) {
        var out = Extents()
        for e in items where e.offset < size {
            out.write(e.offset, Array(e.bytes.prefix(Int(min(e.end, size) - e.offset))))
        }
        self = out
    }
}

/// One file's buffered writes.
struct FileBuffer {
    var pending = Extents()
    /// Being stored by a flush; cleared once the map references it.
    var flushing: Extents?
    /// Time of the last buffered write (the file's mtime when stored).
    var mtime: FSTime?
}

struct BufferState {
    var files: [InodeNumber: FileBuffer] = [:]
    var bytes = 0
    /// Inodes being flushed, with the flushes waiting for their turn.
    var flushQueue: [InodeNumber: [CheckedContinuation<Void, Never>]] = [:]
}

extension FileSystem {
    /// Buffers `bytes` at `offset`; stores the file's buffer when a limit is reached.
    public func write(_ ino: InodeNumber, offset: UInt64, bytes: [UInt8]) async throws -> Int {
        guard !bytes.isEmpty else { return 0 }
        guard offset + UInt64(bytes.count) <= Self.fileSizeMax else { throw FSError.tooBig("write past the largest file size") }
        let time = now()
        let (fileBytes, allBytes, extentCount) = buffers.withLock { s -> (Int, Int, Int) in
            var f = s.files[ino] ?? FileBuffer()
            let before = f.pending.byteCount
            f.pending.write(offset, bytes)
            f.mtime = time
            s.bytes += f.pending.byteCount - before
            s.files[ino] = f
            return (f.pending.byteCount, s.bytes, f.pending.items.count)
        }
        if allBytes >= bufferLimits.totalBytes && bufferLimits.totalBytes > 0 && fileBytes < allBytes {
            try await flushAll()
        } else if fileBytes >= bufferLimits.perFileBytes || extentCount >= Self.pendingExtentsMax {
            try await flush(ino)
        }
        return bytes.count
    }

    /// Stores the file's buffered writes: one slice append, one map transaction.
    public func flush(_ ino: InodeNumber) async throws {
        guard buffers.withLock({ $0.files[ino] != nil }) else { return }
        await beginFlush(ino)
        defer { endFlush(ino) }
        let taken = buffers.withLock { s -> (Extents, FSTime?)? in
            guard var f = s.files[ino], !f.pending.isEmpty else { return nil }
            f.flushing = f.pending
            f.pending = Extents()
            s.files[ino] = f
            return (f.flushing!, f.mtime)
        }
        guard let (extents, mtime) = taken else { return }
        var slices = 0
        do {
            slices = try await store(ino, extents, mtime: mtime)
        } catch let e as FSError where e.errno == FSError.noEntry("").errno {
            // The file is gone from every name and handle: its bytes have no reader.
        } catch {
            // Keep the bytes for a later flush, under anything written meanwhile.
            buffers.withLock { s in
                guard var f = s.files[ino] else { return }
                var back = extents
                for e in f.pending.items { back.write(e.offset, e.bytes) }
                s.bytes += back.byteCount - f.pending.byteCount - extents.byteCount
                f.pending = back
                f.flushing = nil
                s.files[ino] = f
            }
            throw error
        }
        buffers.withLock { s in
            guard var f = s.files[ino] else { return }
            s.bytes -= extents.byteCount
            f.flushing = nil
            if f.pending.isEmpty { s.files.removeValue(forKey: ino) } else { s.files[ino] = f }
        }
        // The bytes are stored; a compaction that fails leaves a correct, longer map
        // (MapCompaction.swift), so its error is not this flush's.
        if slices > Self.mapSlicesCompactAt { try? await compactMap(ino) }
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

    /// The data first, durably, as one new slice; then the map, in one transaction.
    /// Returns how many slices the file's map has then.
    @discardableResult
    func store(_ ino: InodeNumber, _ extents: Extents, mtime: FSTime?) async throws -> Int {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(extents.byteCount)
        for e in extents.items { bytes += e.bytes }
        let storing = beginStore()  // until the commit attempt ends: see OwnVolume.swift
        defer { endStore(storing) }
        let at = try await data.append(bytes)
        var slices: [Slice] = []
        var volumeOffset = at.offset
        for e in extents.items {
            slices.append(Slice(fileOffset: e.offset, length: UInt64(e.bytes.count), volume: at.volume, volumeOffset: volumeOffset))
            volumeOffset += UInt64(e.bytes.count)
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
            node.mtime = mtime ?? now()
            node.ctime = node.mtime
            try t.put(keys.inode(ino), node)
            return node.slices.count
        }
    }

    /// The file's buffered writes (being flushed, then pending), for reads and stats.
    func buffered(_ ino: InodeNumber) -> (flushing: Extents?, pending: Extents?, mtime: FSTime?) {
        buffers.withLock { s in
            guard let f = s.files[ino] else { return (nil, nil, nil) }
            return (f.flushing, f.pending, f.mtime)
        }
    }

    /// Bytes buffered in all files of this mount.
    public var bufferedByteCount: Int { buffers.withLock { $0.bytes } }

    private func beginFlush(_ ino: InodeNumber) async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let proceed = buffers.withLock { s -> Bool in
                if s.flushQueue[ino] == nil {
                    s.flushQueue[ino] = []
                    return true
                }
                s.flushQueue[ino]!.append(c)
                return false
            }
            if proceed { c.resume() }
        }
    }

    private func endFlush(_ ino: InodeNumber) {
        let next = buffers.withLock { s -> CheckedContinuation<Void, Never>? in
            guard var q = s.flushQueue[ino], !q.isEmpty else {
                s.flushQueue.removeValue(forKey: ino)
                return nil
            }
            let c = q.removeFirst()
            s.flushQueue[ino] = q
            return c
        }
        next?.resume()
    }
}
