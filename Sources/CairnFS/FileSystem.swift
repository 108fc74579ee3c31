// The filesystem operations, each one metadata transaction (see Inode.swift for the
// invariants). Permission checks are the kernel's (mounts use default_permissions);
// this layer keeps the namespace and the file maps consistent.
import CairnCore
import CairnMeta
import Foundation
import NIOCore

/// Attribute changes of a setattr; nil fields stay as they are.
public struct AttributeChanges: Sendable {
    public var mode: UInt32?
    public var uid: UInt32?
    public var gid: UInt32?
    public var size: UInt64?
    public var atime: FSTime?
    public var mtime: FSTime?
    public init(mode: UInt32? = nil, uid: UInt32? = nil, gid: UInt32? = nil, size: UInt64? = nil,
                atime: FSTime? = nil, mtime: FSTime? = nil) {
        self.mode = mode; self.uid = uid; self.gid = gid; self.size = size; self.atime = atime; self.mtime = mtime
    }
}

public struct RenameFlags: OptionSet, Sendable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    /// Fail with EEXIST if the new name exists (Linux RENAME_NOREPLACE).
    public static let noReplace = RenameFlags(rawValue: 1)
    /// Swap the two names atomically (Linux RENAME_EXCHANGE).
    public static let exchange = RenameFlags(rawValue: 2)
}

public final class FileSystem: @unchecked Sendable {
    public static let rootInode: InodeNumber = 1
    public static let nameBytesMax = 255
    /// Largest file size (the kernel's limit for FUSE is far above what a map can hold).
    public static let fileSizeMax: UInt64 = 1 << 50
    public static let xattrValueBytesMax = 65_536
    /// Inode numbers a mount reserves at a time.
    static let inodeBatch: UInt64 = 256
    /// Attempts of one operation that keeps losing races at the store.
    static let attemptsMax = 1000

    let store: MetaStore
    let keys: FSKeys
    let data: SliceStore
    public let now: @Sendable () -> FSTime
    /// Reserved inode numbers not handed out yet: [next, end).
    private let reserved = Locked<(next: UInt64, end: UInt64)>((0, 0))
    /// Open handles of this mount by inode: an inode whose last name goes while it is
    /// open here stays (nlink 0, listed under o/) until its last release.
    let openHandles = Locked<[InodeNumber: Int]>([:])
    /// Whether this mount was the filesystem's only mount when last looked (OpenHandles.swift).
    let sessionView = Locked<SessionView?>(nil)
    /// Orphans (o/<ino>) this mount has open: its last release tries to remove them.
    let heldOrphans = Locked<Set<InodeNumber>>([])
    /// The collector's view of this mount's own data volume (OwnVolume.swift).
    let ownVolume = Locked<OwnVolumeState>(OwnVolumeState())
    /// This mount's id: owner of its locks, orphans and session record.
    public let mountID: String
    /// Which inode each entry last named here (LookupHints.swift): lookups in one round trip.
    let lookupHints = LookupHints()
    /// Locks this mount may hold (Locks.swift).
    let heldLocks = Locked<Set<HeldLock>>([])
    /// This mount's session record once started (MountSessions.swift).
    let session = Locked<MountRecord?>(nil)
    /// Other mounts' session records as the sweep last saw them: revision, and since when
    /// (monotonic nanoseconds) it has not moved.
    let sessionsSeen = Locked<[String: (revision: Int64, since: UInt64)]>([:])
    /// Writes not yet in the store, by inode (WriteBuffer.swift).
    let buffers = Locked<BufferState>(BufferState())
    let bufferLimits: WriteBufferLimits
    /// Inodes and entries kept coherent by a watch (MetaCache.swift); nil: every read
    /// asks the store (strict mode).
    let cache: MetaCache?
    /// Told what the kernel must forget after other mounts' changes (CacheWatcher.swift).
    let invalidationHandler = Locked<(@Sendable ([CacheInvalidation]) async -> Void)?>(nil)

    /// - Parameters:
    ///   - prefix: where this filesystem's keys live, e.g. "/fs/home/".
    ///   - mountID: this mount's id, unique among the filesystem's mounts.
    ///   - buffering: how much written data may wait before going to the store; `.none`
    ///     stores every write before acknowledging it.
    ///   - caching: keep a cache of inodes and entries (needs `runCacheWatcher` running;
    ///     until its first pass every read goes to the store).
    public init(store: MetaStore, prefix: String, data: SliceStore, mountID: String = "local",
                buffering: WriteBufferLimits = .none, caching: Bool = false, now: @escaping @Sendable () -> FSTime) {
        precondition(prefix.hasSuffix("/"), "a filesystem prefix ends with '/'")
        self.store = store; self.keys = FSKeys(prefix: prefix); self.data = data; self.now = now
        self.mountID = mountID; self.bufferLimits = buffering
        self.cache = caching ? MetaCache(keys: keys) : nil
    }

    /// Runs `body` until its transaction commits. A first attempt may read from the
    /// cache; a commit that fails, or an error the body threw after reading cached
    /// values, is tried again reading the store, so no answer rests on a stale cache.
    func transact<R>(_ body: (FSTransaction) async throws -> R) async throws -> R {
        var cachedReads = cache != nil
        for _ in 0..<Self.attemptsMax {
            let t = FSTransaction(store: store, cache: cache, cachedReads: cachedReads)
            let r: R
            do {
                r = try await body(t)
            } catch where error is FSError && t.usedCache {
                cachedReads = false
                continue
            }
            if try await t.commit() { return r }
            cachedReads = false
            // A lost race may mean another mount started: look again before trusting the view.
            if t.usedSessionView { sessionView.withLock { $0 = nil } }
        }
        throw FSError.io("a metadata transaction lost the race \(Self.attemptsMax) times")
    }

    /// Creates the root directory unless it exists; returns it.
    @discardableResult
    public func ensureRoot(uid: UInt32, gid: UInt32, mode: UInt32 = 0o755) async throws -> Inode {
        try await transact { t in
            if let root = try await t.getJSON(keys.inode(Self.rootInode), as: Inode.self) { return root }
            var root = Inode(ino: Self.rootInode, mode: FileType.directory | mode, uid: uid, gid: gid, now: now())
            root.parent = Self.rootInode
            try t.put(keys.inode(Self.rootInode), root)
            return root
        }
    }

    func allocateInode() async throws -> InodeNumber {
        if let n = reserved.withLock({ r -> UInt64? in
            guard r.next < r.end else { return nil }
            defer { r.next += 1 }
            return r.next
        }) { return n }
        // The counter holds the first number nobody reserved; the root is 1.
        let end = try await store.update(key: keys.inodeCounter, retries: MetaLimits.updateRetriesMax) { (c: UInt64?) in
            (c ?? Self.rootInode + 1) + Self.inodeBatch
        }!
        let first = end - Self.inodeBatch
        reserved.withLock { $0 = (first + 1, end) }
        return first
    }

    // MARK: - Reads

    /// The inode as this mount sees it: its buffered writes count in size and mtime.
    public func getattr(_ ino: InodeNumber) async throws -> Inode {
        let b = buffered(ino)
        return withBuffered(try await currentInode(ino), b)
    }

    /// The inode from the cache, else from the store.
    func currentInode(_ ino: InodeNumber) async throws -> Inode {
        if let hit = cache?.inode(ino) { return hit.node }
        return try await storedInode(ino)
    }

    /// open: the inode read from the store (one round trip, whatever the cache holds), so
    /// an open after another mount's close sees that close's data and attributes. The
    /// cache takes the value (unless it holds a newer one). An inode without names that
    /// this mount does not have open cannot be opened by name any more (a stale kernel
    /// entry of a name another mount removed): ENOENT, as if its lookup had failed, so
    /// OpenHandles.swift's rule that such an inode is never opened again still holds.
    public func revalidate(_ ino: InodeNumber) async throws -> Inode {
        let b = buffered(ino)
        let node = try await storedInode(ino)
        if node.nlink == 0 && openHandles.withLock({ $0[ino, default: 0] == 0 }) {
            throw FSError.noEntry("inode \(ino) has no names left")
        }
        return withBuffered(node, b)
    }

    /// `node` with this mount's buffered writes `b` (taken before the inode was read).
    func withBuffered(_ node: Inode, _ b: BufferedView) -> Inode {
        var node = node
        let end = b.end
        if end > node.size { node.size = end }
        if let m = b.mtime, m.nanoseconds > node.mtime.nanoseconds { node.mtime = m; node.ctime = m }
        return node
    }

    /// Several inodes as `getattr` sees them (nil for one that is gone), in one store
    /// call per `MetaLimits.getManyKeysMax` of them.
    public func getattrs(_ inos: [InodeNumber]) async throws -> [Inode?] {
        var out = [Inode?](repeating: nil, count: inos.count)
        var missing: [Int] = []
        for (i, ino) in inos.enumerated() {
            let view = buffered(ino)
            if let hit = cache?.inode(ino) { out[i] = withBuffered(hit.node, view) } else { missing.append(i) }
        }
        for start in stride(from: 0, to: missing.count, by: MetaLimits.getManyKeysMax) {
            let part = missing[start..<min(missing.count, start + MetaLimits.getManyKeysMax)]
            let views = part.map { buffered(inos[$0]) }
            let ticket = cache?.ticket()
            let kvs = try await store.getMany(part.map { keys.inode(inos[$0]) })
            for ((i, kv), view) in zip(zip(part, kvs), views) {
                guard let kv else { continue }
                cache?.fill(kv, ticket: ticket)
                out[i] = withBuffered(try Self.decode(kv.value, as: Inode.self), view)
            }
        }
        return out
    }

    /// The inode as the store has it.
    func storedInode(_ ino: InodeNumber) async throws -> Inode {
        let ticket = cache?.ticket()
        guard let kv = try await store.get(keys.inode(ino)) else { throw FSError.noEntry("no inode \(ino)") }
        cache?.fill(kv, ticket: ticket)
        return try Self.decode(kv.value, as: Inode.self)
    }

    /// The entry's inode. With a hint of which inode the name holds, the entry and that
    /// inode come in one store call; a wrong or missing hint costs a second call.
    public func lookup(_ parent: InodeNumber, _ name: String) async throws -> Inode {
        try Self.validate(name)
        let entryKey = keys.entry(parent, name)
        if let cache, let hit = cache.entry(entryKey) {
            let b = buffered(hit.entry.ino)
            if let node = cache.inode(hit.entry.ino) { return withBuffered(node.node, b) }
        }
        let entry: DirEntry
        let ticket = cache?.ticket()
        if let hint = lookupHints.inode(of: entryKey) {
            let b = buffered(hint)
            let kvs = try await store.getMany([entryKey, keys.inode(hint)])
            guard let entryKV = kvs[0] else {
                lookupHints.forget(entryKey)
                throw FSError.noEntry("no entry '\(name)' in directory \(parent)")
            }
            cache?.fill(entryKV, ticket: ticket)
            entry = try Self.decode(entryKV.value, as: DirEntry.self)
            if entry.ino == hint, let inodeKV = kvs[1] {
                cache?.fill(inodeKV, ticket: ticket)
                return withBuffered(try Self.decode(inodeKV.value, as: Inode.self), b)
            }
        } else {
            guard let kv = try await store.get(entryKey) else {
                throw FSError.noEntry("no entry '\(name)' in directory \(parent)")
            }
            cache?.fill(kv, ticket: ticket)
            entry = try Self.decode(kv.value, as: DirEntry.self)
        }
        lookupHints.note(entryKey, entry.ino)
        return try await getattr(entry.ino)
    }

    public func readlink(_ ino: InodeNumber) async throws -> String {
        let node = try await getattr(ino)
        guard let target = node.target else { throw FSError.invalid("inode \(ino) is not a symlink") }
        return target
    }

    /// The directory's entries in name order, "." and ".." first.
    public func readdir(_ ino: InodeNumber) async throws -> [(name: String, entry: DirEntry)] {
        let dir = try await getattr(ino)
        guard dir.isDirectory else { throw FSError.notDirectory("inode \(ino) is not a directory") }
        let prefix = keys.entries(ino)
        var out: [(name: String, entry: DirEntry)] = [
            (".", DirEntry(ino: ino, type: FileType.directory)),
            ("..", DirEntry(ino: dir.parent ?? ino, type: FileType.directory)),
        ]
        let ticket = cache?.ticket()
        for kv in try await store.rangeAll(prefix: prefix) {
            cache?.fill(kv, ticket: ticket)
            out.append((String(kv.key.dropFirst(prefix.count)), try Self.decode(kv.value, as: DirEntry.self)))
        }
        return out
    }

    public func read(_ ino: InodeNumber, offset: UInt64, length: Int) async throws -> [UInt8] {
        let parts = try await readBuffers(ino, offset: offset, length: length)
        var out: [UInt8] = []
        out.reserveCapacity(parts.reduce(0) { $0 + $1.readableBytes })
        for p in parts { out.append(contentsOf: p.readableBytesView) }
        return out
    }

    /// The file's bytes [offset, offset + length) up to its size, as consecutive buffers:
    /// the store's buffers as they came (no copy) unless this mount's buffered writes
    /// overlap the range, then one buffer with them copied over.
    public func readBuffers(_ ino: InodeNumber, offset: UInt64, length: Int) async throws -> [ByteBuffer] {
        let b = bufferedLayers(ino)  // before the inode is read (cache or store): see WriteBuffer.swift
        var node = try await currentInode(ino)
        node.size = max(node.size, b.end)
        guard !node.isDirectory else { throw FSError.isDirectory("inode \(ino) is a directory") }
        guard offset < node.size, length > 0 else { return [] }
        let end = min(node.size, offset + UInt64(length))
        let parts = try await readSlices(node.slices, from: offset, to: end)
        guard b.overlaps(from: offset, to: end) else { return parts }
        var out = Self.joined(parts)
        out.withUnsafeMutableReadableBytes { b.overlay($0, from: offset) }
        return [out]
    }

    /// Slices of one read being read at once.
    static let sliceReadsInFlightMax = 16

    /// The bytes [from, to) of a file with this map as consecutive buffers, holes as
    /// zeroes. The slices are read at once (up to `sliceReadsInFlightMax`).
    func readSlices(_ slices: [Slice], from offset: UInt64, to end: UInt64) async throws -> [ByteBuffer] {
        let parts = Self.readParts(slices, from: offset, to: end)
        var out = [ByteBuffer](repeating: ByteBuffer(), count: parts.count)
        var reads: [(index: Int, slice: Slice, from: UInt64, length: Int)] = []
        for (i, p) in parts.enumerated() {
            if let s = p.slice {
                reads.append((i, s, s.volumeOffset + (p.range.lowerBound - s.fileOffset), p.range.count))
            } else {
                out[i] = ByteBuffer(repeating: 0, count: p.range.count)
            }
        }
        if reads.count == 1 {
            let r = reads[0]
            out[r.index] = try await data.read(volume: r.slice.volume, offset: r.from, length: r.length)
            return out
        }
        try await withThrowingTaskGroup(of: (Int, ByteBuffer).self) { group in
            var next = 0
            func start() {
                let r = reads[next]
                next += 1
                group.addTask { (r.index, try await self.data.read(volume: r.slice.volume, offset: r.from, length: r.length)) }
            }
            while next < min(reads.count, Self.sliceReadsInFlightMax) { start() }
            for try await (i, b) in group {
                out[i] = b
                if next < reads.count { start() }
            }
        }
        return out
    }

    /// [from, to) cut where the map's slices start and end, each piece with its slice
    /// (nil: a hole), in file order.
    static func readParts(_ slices: [Slice], from offset: UInt64, to end: UInt64) -> [(range: Range<UInt64>, slice: Slice?)] {
        var out: [(range: Range<UInt64>, slice: Slice?)] = []
        var at = offset
        for s in slices where s.fileEnd > offset && s.fileOffset < end {
            let from = max(s.fileOffset, offset), to = min(s.fileEnd, end)
            if from > at { out.append((at..<from, nil)) }
            out.append((from..<to, s))
            at = to
        }
        if at < end { out.append((at..<end, nil)) }
        return out
    }

    /// The buffers back to back in one (the buffer itself when there is one).
    static func joined(_ parts: [ByteBuffer]) -> ByteBuffer {
        if parts.count == 1 { return parts[0] }
        var out = ByteBufferAllocator().buffer(capacity: parts.reduce(0) { $0 + $1.readableBytes })
        for p in parts { out.writeImmutableBuffer(p) }
        return out
    }

    // MARK: - Creating names

    /// mknod, mkdir, create and symlink: a new inode of `mode` under a new name.
    public func makeNode(_ parent: InodeNumber, _ name: String, mode: UInt32, uid: UInt32, gid: UInt32,
                         rdev: UInt64 = 0, target: String? = nil) async throws -> Inode {
        try Self.validate(name)
        let ino = try await allocateInode()
        let made: Inode = try await transact { t in
            t.assumeAbsent(keys.entry(parent, name))
            try await t.prefetch([keys.inode(parent), keys.entry(parent, name)])
            var dir = try await directory(t, parent)
            guard try await t.get(keys.entry(parent, name)) == nil else { throw FSError.exists("'\(name)' exists") }
            var node = Inode(ino: ino, mode: mode, uid: uid, gid: gid, now: now())
            node.rdev = rdev
            if let target { node.target = target; node.size = UInt64(target.utf8.count) }
            // A setgid directory hands its group (and, to directories, the bit) down.
            if dir.mode & 0o2000 != 0 {
                node.gid = dir.gid
                if node.isDirectory { node.mode |= 0o2000 }
            }
            if node.isDirectory { node.parent = parent; dir.nlink += 1 }
            touch(&dir)
            try t.put(keys.inode(parent), dir)
            try t.put(keys.inode(ino), node)
            try t.put(keys.entry(parent, name), DirEntry(ino: ino, type: node.type))
            return node
        }
        lookupHints.note(keys.entry(parent, name), ino)
        return made
    }

    public func link(_ ino: InodeNumber, _ parent: InodeNumber, _ name: String) async throws -> Inode {
        try Self.validate(name)
        return try await transact { t in
            try await t.prefetch([keys.inode(ino), keys.inode(parent), keys.entry(parent, name)])
            var node = try await inode(t, ino)
            guard !node.isDirectory else { throw FSError.notPermitted("hard links to directories are not allowed") }
            guard node.nlink > 0 else { throw FSError.noEntry("inode \(ino) has no names left") }
            var dir = try await directory(t, parent)
            guard try await t.get(keys.entry(parent, name)) == nil else { throw FSError.exists("'\(name)' exists") }
            guard node.nlink < UInt32.max else { throw FSError.tooManyLinks("inode \(ino) has too many links") }
            node.nlink += 1
            node.ctime = now()
            touch(&dir)
            try t.put(keys.inode(ino), node)
            try t.put(keys.inode(parent), dir)
            try t.put(keys.entry(parent, name), DirEntry(ino: ino, type: node.type))
            return node
        }
    }

    // MARK: - Removing names

    public func unlink(_ parent: InodeNumber, _ name: String) async throws {
        try await removeName(parent, name, directory: false)
    }

    public func rmdir(_ parent: InodeNumber, _ name: String) async throws {
        try await removeName(parent, name, directory: true)
    }

    /// unlink (`directory` false) or rmdir (true) of one name.
    func removeName(_ parent: InodeNumber, _ name: String, directory wantDirectory: Bool) async throws {
        try Self.validate(name)
        try await ensureSessionView()
        let entryKey = keys.entry(parent, name)
        try await transact { t in
            try await t.prefetch([keys.inode(parent), entryKey] + (lookupHints.inode(of: entryKey).map { [keys.inode($0)] } ?? []))
            var dir = try await directory(t, parent)
            let entry = try await entry(t, parent, name)
            let node = try await inode(t, entry.ino)
            t.delete(keys.entry(parent, name))
            if wantDirectory {
                guard node.isDirectory else { throw FSError.notDirectory("'\(name)' is not a directory") }
                try await requireEmpty(node)
                t.delete(keys.inode(node.ino))
                dir.nlink -= 1
            } else {
                guard !node.isDirectory else { throw FSError.isDirectory("'\(name)' is a directory") }
                try dropLink(t, node)
            }
            touch(&dir)
            try t.put(keys.inode(parent), dir)
        }
    }

    /// One name of `node` is gone. With its last link the inode goes at once only when
    /// no mount can have it open (this one does not, and it is the only mount); otherwise
    /// it stays, orphaned, until no mount holds it (OpenHandles.swift).
    func dropLink(_ t: FSTransaction, _ node: Inode) throws {
        var node = node
        node.nlink -= 1
        node.ctime = now()
        if node.nlink > 0 {
            try t.put(keys.inode(node.ino), node)
        } else if mayDeleteAtOnce(t, node.ino) {
            // The data slices become garbage for the collector (docs/ARCHITECTURE.md).
            t.delete(keys.inode(node.ino))
        } else {
            try t.put(keys.inode(node.ino), node)
            try t.put(keys.orphan(node.ino), OrphanRecord(ino: node.ino, mount: mountID))
            if openHandles.withLock({ $0[node.ino, default: 0] > 0 }) { heldOrphans.withLock { _ = $0.insert(node.ino) } }
        }
    }

    /// A file handle of this mount opened the inode.
    public func opened(_ ino: InodeNumber) {
        openHandles.withLock { $0[ino, default: 0] += 1 }
    }

    /// A file handle of this mount closed; the last one of an orphan removes it.
    public func released(_ ino: InodeNumber) async throws {
        // The handle goes even when storing its buffered writes failed (the error is
        // still reported, after the bookkeeping).
        var flushError: Error?
        do { try await flush(ino) } catch { flushError = error }
        if let flushError {
            try await releaseHandle(ino)
            throw flushError
        }
        try await releaseHandle(ino)
    }

    func releaseHandle(_ ino: InodeNumber) async throws {
        let last = openHandles.withLock { h -> Bool in
            let n = h[ino, default: 0]
            precondition(n > 0, "release of inode \(ino) that this mount has not opened")
            if n == 1 { h.removeValue(forKey: ino); return true }
            h[ino] = n - 1
            return false
        }
        guard last, heldOrphans.withLock({ $0.contains(ino) }) else { return }
        try await collectOrphans(only: ino)
    }

    /// The directory has no entries. Its inode was read through the transaction, and
    /// every entry change rewrites that inode, so the check holds at commit.
    func requireEmpty(_ dir: Inode) async throws {
        let page = try await store.range(prefix: keys.entries(dir.ino), after: nil, limit: 1)
        guard page.items.isEmpty else { throw FSError.notEmpty("directory \(dir.ino) is not empty") }
    }

    // MARK: - Rename

    public func rename(_ parent: InodeNumber, _ name: String, _ newParent: InodeNumber, _ newName: String,
                       flags: RenameFlags = []) async throws {
        try Self.validate(name)
        try Self.validate(newName)
        guard !(flags.contains(.noReplace) && flags.contains(.exchange)) else {
            throw FSError.invalid("RENAME_NOREPLACE and RENAME_EXCHANGE together")
        }
        try await ensureSessionView()
        try await transact { t in
            try await t.prefetch([keys.inode(parent), keys.inode(newParent), keys.entry(parent, name), keys.entry(newParent, newName)])
            _ = try await directory(t, parent)
            _ = try await directory(t, newParent)
            let moving = try await entry(t, parent, name)
            let existing = try await t.getJSON(keys.entry(newParent, newName), as: DirEntry.self)
            if parent == newParent && name == newName { return }
            if moving.type == FileType.directory { try await refuseCycle(t, moving: moving.ino, into: newParent) }
            if flags.contains(.exchange) {
                guard let existing else { throw FSError.noEntry("'\(newName)' does not exist") }
                if existing.type == FileType.directory { try await refuseCycle(t, moving: existing.ino, into: parent) }
                try t.put(keys.entry(parent, name), existing)
                try t.put(keys.entry(newParent, newName), moving)
                try await reparent(t, existing, from: newParent, to: parent)
                try await reparent(t, moving, from: parent, to: newParent)
                try await touchDirectories(t, parent, newParent)
                return
            }
            if let existing {
                guard !flags.contains(.noReplace) else { throw FSError.exists("'\(newName)' exists") }
                if existing.ino == moving.ino { return }  // Two links of one inode: POSIX does nothing.
                let victim = try await inode(t, existing.ino)
                if moving.type == FileType.directory {
                    guard victim.isDirectory else { throw FSError.notDirectory("'\(newName)' is not a directory") }
                    try await requireEmpty(victim)
                    t.delete(keys.inode(victim.ino))
                    try await modify(t, newParent) { $0.nlink -= 1 }
                } else {
                    guard !victim.isDirectory else { throw FSError.isDirectory("'\(newName)' is a directory") }
                    try dropLink(t, victim)
                }
            }
            t.delete(keys.entry(parent, name))
            try t.put(keys.entry(newParent, newName), moving)
            try await reparent(t, moving, from: parent, to: newParent)
            try await touchDirectories(t, parent, newParent)
        }
    }

    /// A directory may not move below itself: walk up from the destination to the root.
    func refuseCycle(_ t: FSTransaction, moving: InodeNumber, into dir: InodeNumber) async throws {
        var at = dir
        for _ in 0..<4096 {
            if at == moving { throw FSError.invalid("a directory cannot move below itself") }
            if at == Self.rootInode { return }
            guard let up = try await inode(t, at).parent else { return }
            at = up
        }
        throw FSError.io("directory \(dir) is more than 4096 levels deep")
    }

    func reparent(_ t: FSTransaction, _ entry: DirEntry, from: InodeNumber, to: InodeNumber) async throws {
        try await modify(t, entry.ino) { node in
            node.ctime = now()
            if node.isDirectory { node.parent = to }
        }
        if entry.type == FileType.directory && from != to {
            try await modify(t, from) { $0.nlink -= 1 }
            try await modify(t, to) { $0.nlink += 1 }
        }
    }

    func touchDirectories(_ t: FSTransaction, _ a: InodeNumber, _ b: InodeNumber) async throws {
        try await modify(t, a) { touch(&$0) }
        if b != a { try await modify(t, b) { touch(&$0) } }
    }

    // MARK: - Attributes and data

    public func setattr(_ ino: InodeNumber, _ changes: AttributeChanges) async throws -> Inode {
        if changes.size != nil || changes.mtime != nil { try await flush(ino) }
        return try await transact { t in
            var node = try await inode(t, ino)
            let time = now()
            if let mode = changes.mode { node.mode = (node.mode & FileType.mask) | (mode & 0o7777) }
            if let uid = changes.uid { node.uid = uid }
            if let gid = changes.gid { node.gid = gid }
            if let size = changes.size {
                guard !node.isDirectory else { throw FSError.isDirectory("inode \(ino) is a directory") }
                guard node.isRegular else { throw FSError.invalid("inode \(ino) is not a regular file") }
                guard size <= Self.fileSizeMax else { throw FSError.tooBig("\(size) bytes is over the largest file size") }
                node.slices = SliceMap.truncate(node.slices, size: size)
                node.size = size
                node.mtime = time
            }
            if let atime = changes.atime { node.atime = atime }
            if let mtime = changes.mtime { node.mtime = mtime }
            node.ctime = time
            try t.put(keys.inode(ino), node)
            return node
        }
    }

    public struct AllocateMode: OptionSet, Sendable {
        public let rawValue: Int32
        public init(rawValue: Int32) { self.rawValue = rawValue }
        // Linux FALLOC_FL_* values.
        public static let keepSize = AllocateMode(rawValue: 0x01)
        public static let punchHole = AllocateMode(rawValue: 0x02)
        public static let zeroRange = AllocateMode(rawValue: 0x10)
    }

    /// fallocate(2). Mode 0 (and KEEP_SIZE) makes [offset, offset+length) part of the
    /// file, growing its size unless KEEP_SIZE; the range reads as before (holes as
    /// zeroes). Space is not reserved: data volumes are thin, so a later write can still
    /// meet a full cluster (named limit, docs/ARCHITECTURE.md). PUNCH_HOLE (with
    /// KEEP_SIZE) and ZERO_RANGE drop the range's slices, so it reads as zeroes; other
    /// modes (collapse, insert, unshare) are EOPNOTSUPP.
    public func allocate(_ ino: InodeNumber, mode: AllocateMode, offset: UInt64, length: UInt64) async throws {
        guard length > 0 else { throw FSError.invalid("fallocate of 0 bytes") }
        guard mode.subtracting([.keepSize, .punchHole, .zeroRange]).isEmpty else {
            throw FSError(95, "fallocate mode \(mode.rawValue) is not supported")
        }
        if mode.contains(.punchHole) && (!mode.contains(.keepSize) || mode.contains(.zeroRange)) {
            throw FSError(95, "PUNCH_HOLE goes with KEEP_SIZE only")
        }
        let (end, overflow) = offset.addingReportingOverflow(length)
        guard !overflow, end <= Self.fileSizeMax else { throw FSError.tooBig("fallocate past the largest file size") }
        try await flush(ino)
        try await transact { t in
            var node = try await inode(t, ino)
            guard !node.isDirectory else { throw FSError.isDirectory("inode \(ino) is a directory") }
            guard node.isRegular else { throw FSError(19, "inode \(ino) is not a regular file") }
            let clearing = mode.contains(.punchHole) || mode.contains(.zeroRange)
            if clearing { node.slices = SliceMap.cut(node.slices, from: offset, to: end) }
            let grows = !mode.contains(.keepSize) && end > node.size
            if grows { node.size = end }
            guard clearing || grows else { return }
            node.mtime = now()
            node.ctime = node.mtime
            try t.put(keys.inode(ino), node)
        }
    }

    /// access(2) for a caller: mask bits R 4, W 2, X 1 (0: existence). Root passes
    /// read and write, and execute if any execute bit is set.
    public func access(_ ino: InodeNumber, mask: Int32, uid: UInt32, groups: [UInt32]) async throws {
        let node = try await getattr(ino)
        guard mask & 7 != 0 else { return }
        let mode = node.mode
        if uid == 0 {
            if mask & 1 != 0 && !node.isDirectory && mode & 0o111 == 0 { throw FSError(13, "not executable") }
            return
        }
        let bits: UInt32
        if uid == node.uid { bits = (mode >> 6) & 7 } else if groups.contains(node.gid) { bits = (mode >> 3) & 7 } else { bits = mode & 7 }
        guard UInt32(mask & 7) & ~bits == 0 else { throw FSError(13, "permission denied") }
    }

    // MARK: - Extended attributes

    public struct XattrFlags: OptionSet, Sendable {
        public let rawValue: Int32
        public init(rawValue: Int32) { self.rawValue = rawValue }
        public static let create = XattrFlags(rawValue: 1)
        public static let replace = XattrFlags(rawValue: 2)
    }

    public func setxattr(_ ino: InodeNumber, _ name: String, _ value: [UInt8], flags: XattrFlags) async throws {
        noteCapabilityAbsent(ino, false)
        guard !name.isEmpty, name.utf8.count <= Self.nameBytesMax else { throw FSError.range("bad attribute name") }
        guard value.count <= Self.xattrValueBytesMax else { throw FSError.tooBig("attribute value over \(Self.xattrValueBytesMax) bytes") }
        try await modifyDirect(ino) { node in
            let has = node.xattrs[name] != nil
            if flags.contains(.create) && has { throw FSError.exists("attribute \(name) exists") }
            if flags.contains(.replace) && !has { throw FSError.noData("no attribute \(name)") }
            node.xattrs[name] = value
        }
        noteCapabilityAbsent(ino, false)  // again: a getxattr may have raced the change
    }

    public func getxattr(_ ino: InodeNumber, _ name: String) async throws -> [UInt8] {
        let capability = name == Self.capabilityXattr
        if capability && capabilityKnownAbsent(ino) { throw FSError.noData("no attribute \(name)") }
        guard let v = try await getattr(ino).xattrs[name] else {
            if capability { noteCapabilityAbsent(ino, true) }
            throw FSError.noData("no attribute \(name)")
        }
        return v
    }

    public func listxattr(_ ino: InodeNumber) async throws -> [String] { try await getattr(ino).xattrs.keys.sorted() }

    public func removexattr(_ ino: InodeNumber, _ name: String) async throws {
        noteCapabilityAbsent(ino, false)
        try await modifyDirect(ino) { node in
            guard node.xattrs.removeValue(forKey: name) != nil else { throw FSError.noData("no attribute \(name)") }
        }
    }

    // MARK: - Helpers

    func modifyDirect(_ ino: InodeNumber, _ body: @escaping (inout Inode) throws -> Void) async throws {
        try await transact { t in
            try await modify(t, ino) { node in
                try body(&node)
                node.ctime = now()
            }
        }
    }

    func modify(_ t: FSTransaction, _ ino: InodeNumber, _ body: (inout Inode) throws -> Void) async throws {
        var node = try await inode(t, ino)
        try body(&node)
        try t.put(keys.inode(ino), node)
    }

    func inode(_ t: FSTransaction, _ ino: InodeNumber) async throws -> Inode {
        guard let node = try await t.getJSON(keys.inode(ino), as: Inode.self) else { throw FSError.noEntry("no inode \(ino)") }
        return node
    }

    func directory(_ t: FSTransaction, _ ino: InodeNumber) async throws -> Inode {
        let node = try await inode(t, ino)
        guard node.isDirectory else { throw FSError.notDirectory("inode \(ino) is not a directory") }
        return node
    }

    func entry(_ t: FSTransaction, _ dir: InodeNumber, _ name: String) async throws -> DirEntry {
        guard let e = try await t.getJSON(keys.entry(dir, name), as: DirEntry.self) else {
            throw FSError.noEntry("no entry '\(name)' in directory \(dir)")
        }
        return e
    }

    func touch(_ dir: inout Inode) {
        dir.mtime = now()
        dir.ctime = dir.mtime
    }

    static func validate(_ name: String) throws {
        guard !name.isEmpty, name != ".", name != "..", !name.contains("/") else { throw FSError.invalid("bad name '\(name)'") }
        guard name.utf8.count <= nameBytesMax else { throw FSError.nameTooLong("name over \(nameBytesMax) bytes") }
    }

    static func decode<T: Decodable>(_ bytes: [UInt8], as: T.Type) throws -> T {
        do { return try JSONDecoder().decode(T.self, from: Data(bytes)) } catch {
            throw FSError.io("metadata record is unreadable: \(error)")
        }
    }
}
