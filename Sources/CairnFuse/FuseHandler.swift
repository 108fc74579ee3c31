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
    /// How long the kernel may cache attributes / names. 0 (the default) makes every
    /// stat and lookup ask the store, which gives close-to-open between mounts.
    public var attributes: Double
    public var entries: Double
    public init(attributes: Double = 0, entries: Double = 0) { self.attributes = attributes; self.entries = entries }
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

    public init(fs: FileSystem, timeouts: FuseTimeouts,
                capacity: @escaping @Sendable () async -> (totalBytes: UInt64, freeBytes: UInt64)) {
        self.fs = fs; self.timeouts = timeouts; self.capacity = capacity
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
