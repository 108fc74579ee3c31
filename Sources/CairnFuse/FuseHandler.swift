// CairnFuse: the FUSE frontend, the only module that calls libfuse (CFuse3).
//
// Shape: libfuse's worker threads call the @convention(c) callbacks of
// FuseOperations.swift; each copies what it needs out of the request's C memory,
// starts a Task that runs the CairnFS operation, and replies from that Task (the
// low-level API allows a reply from any thread). A write that only fills the buffer
// is done and answered on the worker thread itself (no Task). Exactly one reply per request:
// `run` replies with the error's errno when the body throws before replying.
import CairnCore
import CairnFS
import CFuse3
import Foundation
import NIOCore

/// Runs `body` in a Task; a thrown error becomes the reply (every handler's callbacks).
func runReplying(_ req: fuse_req_t?, _ body: @escaping @Sendable (Request) async throws -> Void) {
    let r = Request(raw: req!)
    Task {
        do {
            try await body(r)
        } catch {
            fuse_reply_err(r.raw, FuseHandler.errno(of: error))
        }
    }
}

/// A libfuse request handle carried into a Task.
struct Request: @unchecked Sendable {
    let raw: fuse_req_t
}

public struct FuseTimeouts: Sendable {
    /// How long the kernel may cache attributes / names, in seconds. With the mount's
    /// metadata cache these bound only how long a change another mount made can stay
    /// unseen when the cache's watch is broken (the watch tells the kernel at once
    /// otherwise); open always asks the store, so close-to-open holds whatever they are.
    /// Both 0: strict mode, every stat and lookup asks the store.
    public var attributes: Double
    public var entries: Double
    public init(attributes: Double = FuseTimeouts.standardSeconds, entries: Double = FuseTimeouts.standardSeconds) {
        self.attributes = attributes; self.entries = entries
    }
    /// The default of both (`cairn mount --attr-timeout/--entry-timeout`).
    public static let standardSeconds = 1.0
    /// Both 0: no metadata cache, every stat and lookup asks the store.
    public var strict: Bool { attributes == 0 && entries == 0 }
}

/// What the callbacks reach through fuse_req_userdata. Sendable: its state is the
/// filesystem (itself thread-safe) and the directory snapshots behind a lock.
public final class FuseHandler: @unchecked Sendable {
    let fs: FileSystem
    let timeouts: FuseTimeouts
    let capacity: @Sendable () async -> (totalBytes: UInt64, freeBytes: UInt64)
    /// Directory listings taken at opendir, by file handle: readdir offsets index them,
    /// so they stay stable while the directory changes.
    let directories = Locked<(next: UInt64, open: [UInt64: [(name: String, entry: DirEntry)]])>((1, [:]))
    /// Largest read or write request the kernel sends.
    static let requestBytesMax: UInt32 = 1 << 20
    /// Bound on directory handles open at once.
    static let openDirectoriesMax = 65_536
    /// Inodes remembered as known to the kernel (for invalidating all of them when the
    /// cache's watch broke); past it the kernel's copies age out by the timeouts.
    static let knownInodesMax = 262_144
    /// The libfuse session while the loop serves (notifications go to it) and how many
    /// notifications use it right now. The lock is only ever held briefly, never across
    /// a call into the kernel: an entry invalidation waits for the directory's lock,
    /// which a request in flight on that directory (a create) holds until its reply, and
    /// that reply must never wait for this lock.
    let session = Locked<(se: OpaquePointer?, users: Int)>((nil, 0))
    /// The inodes the kernel was told about.
    let knownInodes = Locked<Set<UInt64>>([])
    /// Notifications to the kernel run on a thread of their own, never on the Swift
    /// pool (see `session`).
    let notifyQueue = DispatchQueue(label: "cairn.fuse.notify")

    public init(fs: FileSystem, timeouts: FuseTimeouts,
                capacity: @escaping @Sendable () async -> (totalBytes: UInt64, freeBytes: UInt64)) {
        self.fs = fs; self.timeouts = timeouts; self.capacity = capacity
        fs.setInvalidationHandler { [weak self] items in await self?.invalidate(items) }
    }

    // MARK: - Kernel cache notifications

    /// The session once mounted; nil before it is destroyed, which waits until no
    /// notification uses it (one blocked in the kernel returns when the unmount aborts
    /// the requests it waits for).
    func attach(_ se: OpaquePointer?) {
        session.withLock { $0.se = se }
        guard se == nil else { return }
        while session.withLock({ $0.users > 0 }) { usleep(1000) }
    }

    /// Runs `body` with the session if there is one, without holding the lock meanwhile.
    func withSession(_ body: (OpaquePointer) -> Void) {
        guard let se = session.withLock({ s -> OpaquePointer? in
            guard let se = s.se else { return nil }
            s.users += 1
            return se
        }) else { return }
        defer { session.withLock { $0.users -= 1 } }
        body(se)
    }

    func known(_ ino: UInt64) {
        guard fs.caching else { return }
        knownInodes.withLock { k in
            guard !k.contains(ino) else { return }
            if k.count >= Self.knownInodesMax { k.removeAll() }
            k.insert(ino)
        }
    }

    /// Tells the kernel to forget what another mount changed. Runs from the cache's
    /// watcher, outside every request handler (libfuse's deadlock rule for
    /// fuse_lowlevel_notify_inval_entry); errors (an inode or name the kernel does not
    /// hold: ENOENT) mean there was nothing to forget.
    func invalidate(_ items: [CacheInvalidation]) async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            notifyQueue.async {
                self.withSession { se in
                    for item in items {
                        switch item {
                        case .inode(let ino, let data):
                            _ = fuse_lowlevel_notify_inval_inode(se, ino, data ? 0 : -1, 0)
                        case .entry(let parent, let name):
                            _ = name.withCString { fuse_lowlevel_notify_inval_entry(se, parent, $0, strlen($0)) }
                        case .all:
                            for ino in self.knownInodes.snapshot { _ = fuse_lowlevel_notify_inval_inode(se, ino, 0, 0) }
                        }
                    }
                }
                c.resume()
            }
        }
    }

    /// The kernel forgets its attributes of `ino` (open: they may predate what the open
    /// read). Attributes only: no lock is taken, so this is safe inside open's handler.
    func invalidateAttributes(_ ino: UInt64) {
        withSession { _ = fuse_lowlevel_notify_inval_inode($0, ino, -1, 0) }
    }

    static func of(_ req: fuse_req_t?) -> FuseHandler {
        Unmanaged<FuseHandler>.fromOpaque(fuse_req_userdata(req!)!).takeUnretainedValue()
    }

    func run(_ req: fuse_req_t?, _ body: @escaping @Sendable (Request) async throws -> Void) {
        runReplying(req, body)
    }

    static func errno(of error: Error) -> Int32 {
        switch error {
        case let e as FSError: return e.errno
        case CairnError.noSpace: return ENOSPC
        case CairnError.notFound: return ENOENT
        case CairnError.invalidArgument: return EINVAL
        default: return EIO
        }
    }

    func caller(_ req: Request) -> (uid: UInt32, gid: UInt32) {
        let ctx = fuse_req_ctx(req.raw)!.pointee
        return (ctx.uid, ctx.gid)
    }

    /// The caller's supplementary groups (empty where the kernel does not tell).
    func groups(_ req: Request) -> [UInt32] {
        var list = [gid_t](repeating: 0, count: 64)
        let n = fuse_req_getgroups(req.raw, Int32(list.count), &list)
        guard n > 0 else { return [] }
        return Array(list.prefix(Int(min(n, Int32(list.count)))))
    }

    // MARK: - Replies

    static func stat(of n: Inode) -> stat {
        var st = Glibc.stat()
        st.st_ino = UInt(n.ino)
        st.st_mode = n.mode
        st.st_nlink = UInt(n.nlink)
        st.st_uid = n.uid
        st.st_gid = n.gid
        st.st_size = Int(n.size)
        st.st_rdev = UInt(n.rdev)
        st.st_blksize = 4096
        st.st_blocks = Int(n.slices.reduce(UInt64(0)) { $0 + $1.length } + 511) / 512
        st.st_atim = timespec(of: n.atime)
        st.st_mtim = timespec(of: n.mtime)
        st.st_ctim = timespec(of: n.ctime)
        return st
    }

    static func timespec(of t: FSTime) -> Glibc.timespec {
        Glibc.timespec(tv_sec: Int(t.seconds), tv_nsec: Int(t.subsecondNanoseconds))
    }

    func replyEntry(_ req: Request, _ n: Inode) {
        known(n.ino)
        var e = fuse_entry_param()
        e.ino = n.ino
        e.generation = 1
        e.attr = Self.stat(of: n)
        e.attr_timeout = timeouts.attributes
        e.entry_timeout = timeouts.entries
        fuse_reply_entry(req.raw, &e)
    }

    func replyAttr(_ req: Request, _ n: Inode) {
        var st = Self.stat(of: n)
        fuse_reply_attr(req.raw, &st, timeouts.attributes)
    }

    func replyBytes(_ req: Request, _ bytes: [UInt8]) {
        bytes.withUnsafeBufferPointer { b in
            _ = b.baseAddress!.withMemoryRebound(to: CChar.self, capacity: max(b.count, 1)) { p in
                fuse_reply_buf(req.raw, p, b.count)
            }
        }
    }

    /// Replies with the buffers back to back, from their own memory (fuse_reply_iov).
    func replyBuffers(_ req: Request, _ parts: [ByteBuffer]) {
        var iov: [iovec] = []
        iov.reserveCapacity(parts.count)
        Self.withIovecs(parts[...], &iov) { v in
            _ = v.withUnsafeBufferPointer { fuse_reply_iov(req.raw, $0.baseAddress, Int32($0.count)) }
        }
    }

    /// Calls `body` with iovecs of every buffer's readable bytes (valid only inside it).
    static func withIovecs(_ parts: ArraySlice<ByteBuffer>, _ iov: inout [iovec], _ body: ([iovec]) -> Void) {
        guard let first = parts.first else { return body(iov) }
        first.withUnsafeReadableBytes { b in
            iov.append(iovec(iov_base: UnsafeMutableRawPointer(mutating: b.baseAddress), iov_len: b.count))
            withIovecs(parts.dropFirst(), &iov, body)
        }
    }

    // MARK: - Directory snapshots

    func openDirectory(_ listing: [(name: String, entry: DirEntry)]) throws -> UInt64 {
        try directories.withLock { d in
            guard d.open.count < Self.openDirectoriesMax else { throw FSError(EMFILE, "too many open directories") }
            let fh = d.next
            d.next += 1
            d.open[fh] = listing
            return fh
        }
    }

    func listing(_ fh: UInt64) -> [(name: String, entry: DirEntry)]? { directories.withLock { $0.open[fh] } }

    func closeDirectory(_ fh: UInt64) { _ = directories.withLock { $0.open.removeValue(forKey: fh) } }
}
