// A FUSE filesystem of exactly one regular file whose bytes are a block store (a Cairn
// volume): the userspace half of the fuse-loop attach method (CairnAttach), where a loop
// device is set up over the file.
//
// Shape, as for the shared filesystem: each callback copies what it needs out of the
// request's C memory, starts a Task, and replies from the Task, so libfuse's few worker
// threads go straight back to reading /dev/fuse and many requests are in flight to the
// volume at once. Exactly one reply per request.
//
// Limits: the file cannot be truncated, renamed or removed; nothing else can be created.
// Its size follows the backend (`sizeBytes`), which grows when the volume is resized
// and the backend refreshed; attributes are never cached by the kernel (timeout 0), so a
// stat after a refresh shows the new size and `losetup -c` picks it up.
import CairnCore
import CFuse3
import Foundation
import NIOCore

/// The store behind the one file. Every call may run concurrently with the others.
public protocol BlockFileBackend: Sendable {
    var sizeBytes: UInt64 { get }
    func read(offset: UInt64, length: Int) async throws -> ByteBuffer
    /// Acknowledged only when durable (the volume client's writes are).
    func write(offset: UInt64, data: ByteBuffer) async throws
    func flush() async throws
    /// Gives the range back; it reads as zeroes afterwards.
    func trim(offset: UInt64, length: Int) async throws
    func writeZeroes(offset: UInt64, length: Int) async throws
}

public struct BlockFileOptions: Sendable {
    /// The file's name in the mount's root directory.
    public var fileName: String
    public var readOnly: Bool
    /// Largest read and write request the kernel sends (bytes); the kernel caps it at
    /// its own maximum (256 pages).
    public var requestBytesMax: UInt32 = 1 << 20
    /// Requests the kernel keeps in flight in the background (asynchronous direct I/O
    /// from the loop device is background I/O); the kernel's default is 12.
    public var backgroundRequestsMax: UInt16 = 128
    /// Opens with FOPEN_DIRECT_IO: the file's pages are never cached by the kernel, so
    /// the loop device above it is the only cache. Measured in tools/bench/attach.
    public var directIO = true
    public init(fileName: String, readOnly: Bool) { self.fileName = fileName; self.readOnly = readOnly }
}

/// What the callbacks reach through fuse_req_userdata.
public final class BlockFileHandler: @unchecked Sendable {
    static let rootIno: UInt64 = 1
    static let fileIno: UInt64 = 2
    let backend: BlockFileBackend
    let options: BlockFileOptions
    let owner: (uid: UInt32, gid: UInt32)
    let mountTime: timespec

    public init(backend: BlockFileBackend, options: BlockFileOptions) {
        precondition(!options.fileName.isEmpty && !options.fileName.contains("/"), "a file name without slashes")
        self.backend = backend; self.options = options
        self.owner = (getuid(), getgid())
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        self.mountTime = ts
    }

    static func of(_ req: fuse_req_t?) -> BlockFileHandler {
        Unmanaged<BlockFileHandler>.fromOpaque(fuse_req_userdata(req!)!).takeUnretainedValue()
    }

    func run(_ req: fuse_req_t?, _ body: @escaping @Sendable (Request) async throws -> Void) {
        runReplying(req, body)
    }

    func stat(_ ino: UInt64) -> stat? {
        var st = Glibc.stat()
        st.st_ino = UInt(ino)
        st.st_uid = owner.uid
        st.st_gid = owner.gid
        st.st_atim = mountTime
        st.st_mtim = mountTime
        st.st_ctim = mountTime
        st.st_blksize = 4096
        switch ino {
        case Self.rootIno:
            st.st_mode = S_IFDIR | 0o755
            st.st_nlink = 2
        case Self.fileIno:
            st.st_mode = S_IFREG | (options.readOnly ? 0o400 : 0o600)
            st.st_nlink = 1
            st.st_size = Int(backend.sizeBytes)
            st.st_blocks = Int((backend.sizeBytes + 511) / 512)
        default:
            return nil
        }
        return st
    }

    func replyAttr(_ req: fuse_req_t?, _ ino: UInt64) {
        guard var st = stat(ino) else { fuse_reply_err(req, ENOENT); return }
        fuse_reply_attr(req, &st, 0)
    }

    /// Clamps a request to the end of the file: a read past it returns fewer bytes, a
    /// write past it is ENOSPC (the file cannot grow by writing).
    func clamp(offset: off_t, length: Int) -> Int {
        let size = backend.sizeBytes
        guard offset >= 0, UInt64(offset) < size else { return 0 }
        return Int(min(UInt64(length), size - UInt64(offset)))
    }
}

func makeBlockFileOperations() -> fuse_lowlevel_ops {
    var ops = fuse_lowlevel_ops()
    ops.`init` = { userdata, conn in
        let h = Unmanaged<BlockFileHandler>.fromOpaque(userdata!).takeUnretainedValue()
        let c = conn!
        c.pointee.max_write = h.options.requestBytesMax
        c.pointee.max_readahead = h.options.requestBytesMax
        c.pointee.max_background = UInt32(h.options.backgroundRequestsMax)
        c.pointee.congestion_threshold = UInt32(h.options.backgroundRequestsMax) * 3 / 4
        let wanted = UInt32(FUSE_CAP_ASYNC_DIO) | UInt32(FUSE_CAP_ASYNC_READ)
        c.pointee.want |= wanted & c.pointee.capable
        // Attributes change only when the volume grows; nothing to gain from the kernel
        // asking on every read.
        c.pointee.want &= ~UInt32(FUSE_CAP_AUTO_INVAL_DATA)
    }
    ops.lookup = { req, parent, name in
        let h = BlockFileHandler.of(req)
        guard parent == BlockFileHandler.rootIno, String(cString: name!) == h.options.fileName,
              let st = h.stat(BlockFileHandler.fileIno) else { fuse_reply_err(req, ENOENT); return }
        var e = fuse_entry_param()
        e.ino = BlockFileHandler.fileIno
        e.generation = 1
        e.attr = st
        e.attr_timeout = 0
        e.entry_timeout = 3600
        fuse_reply_entry(req, &e)
    }
    ops.forget = { req, _, _ in fuse_reply_none(req) }
    ops.getattr = { req, ino, _ in BlockFileHandler.of(req).replyAttr(req, ino) }
    ops.setattr = { req, ino, attr, toSet, _ in
        let h = BlockFileHandler.of(req)
        // Times are accepted and forgotten; the size is the volume's.
        if toSet & FUSE_SET_ATTR_SIZE != 0, UInt64(attr!.pointee.st_size) != h.backend.sizeBytes {
            fuse_reply_err(req, EPERM)
            return
        }
        if toSet & (FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID) != 0 {
            fuse_reply_err(req, EPERM)
            return
        }
        h.replyAttr(req, ino)
    }
    ops.open = { req, ino, fi in
        let h = BlockFileHandler.of(req)
        guard ino == BlockFileHandler.fileIno else { fuse_reply_err(req, EISDIR); return }
        let accessMode = fi!.pointee.flags & O_ACCMODE
        if h.options.readOnly && accessMode != O_RDONLY { fuse_reply_err(req, EROFS); return }
        var info = fi!.pointee
        info.direct_io = h.options.directIO ? 1 : 0
        info.keep_cache = h.options.directIO ? 0 : 1
        fuse_reply_open(req, &info)
    }
    ops.read = { req, _, size, offset, _ in
        let h = BlockFileHandler.of(req)
        let length = h.clamp(offset: offset, length: size)
        guard length > 0 else { fuse_reply_buf(req, nil, 0); return }
        h.run(req) { r in
            let data = try await h.backend.read(offset: UInt64(offset), length: length)
            data.withUnsafeReadableBytes { b in
                _ = fuse_reply_buf(r.raw, b.baseAddress?.assumingMemoryBound(to: CChar.self), b.count)
            }
        }
    }
    ops.write = { req, _, buf, size, offset, _ in
        let h = BlockFileHandler.of(req)
        guard !h.options.readOnly else { fuse_reply_err(req, EROFS); return }
        guard h.clamp(offset: offset, length: size) == size else { fuse_reply_err(req, ENOSPC); return }
        // The request's buffer is libfuse's, reused once this callback returns: one copy.
        let data = ByteBuffer(bytes: UnsafeRawBufferPointer(start: buf, count: size))
        h.run(req) { r in
            try await h.backend.write(offset: UInt64(offset), data: data)
            fuse_reply_write(r.raw, size)
        }
    }
    // Every acknowledged write is durable on the replicas: flush and fsync only wait for
    // the backend's own flush (a no-op for a volume client).
    ops.flush = { req, _, _ in fuse_reply_err(req, 0) }
    ops.release = { req, _, _ in fuse_reply_err(req, 0) }
    ops.fsync = { req, _, _, _ in
        let h = BlockFileHandler.of(req)
        h.run(req) { r in
            try await h.backend.flush()
            fuse_reply_err(r.raw, 0)
        }
    }
    ops.fallocate = { req, _, mode, offset, length, _ in
        let h = BlockFileHandler.of(req)
        guard !h.options.readOnly else { fuse_reply_err(req, EROFS); return }
        let keepSize = mode & FALLOC_FL_KEEP_SIZE != 0
        let punch = mode & FALLOC_FL_PUNCH_HOLE != 0
        let zero = mode & FALLOC_FL_ZERO_RANGE != 0
        let n = h.clamp(offset: offset, length: Int(length))
        // Plain fallocate within the file has nothing to do: every byte already exists.
        if mode == 0 || mode == FALLOC_FL_KEEP_SIZE {
            fuse_reply_err(req, n == Int(length) || keepSize ? 0 : ENOSPC)
            return
        }
        guard (punch && keepSize) || zero, n > 0 else { fuse_reply_err(req, n == 0 ? 0 : EOPNOTSUPP); return }
        h.run(req) { r in
            if punch {
                try await h.backend.trim(offset: UInt64(offset), length: n)
            } else {
                try await h.backend.writeZeroes(offset: UInt64(offset), length: n)
            }
            fuse_reply_err(r.raw, 0)
        }
    }
    ops.opendir = { req, ino, fi in
        guard ino == BlockFileHandler.rootIno else { fuse_reply_err(req, ENOTDIR); return }
        var info = fi!.pointee
        fuse_reply_open(req, &info)
    }
    ops.readdir = { req, _, size, offset, _ in
        let h = BlockFileHandler.of(req)
        let entries: [(String, UInt64, mode_t)] = [
            (".", BlockFileHandler.rootIno, S_IFDIR), ("..", BlockFileHandler.rootIno, S_IFDIR),
            (h.options.fileName, BlockFileHandler.fileIno, S_IFREG),
        ]
        var buffer = [CChar](repeating: 0, count: size)
        var used = 0
        var index = Int(offset)
        buffer.withUnsafeMutableBufferPointer { b in
            while index < entries.count {
                var st = Glibc.stat()
                st.st_ino = UInt(entries[index].1)
                st.st_mode = entries[index].2
                let need = fuse_add_direntry(req, b.baseAddress! + used, size - used, entries[index].0, &st, off_t(index + 1))
                if used + need > size { break }
                used += need
                index += 1
            }
            fuse_reply_buf(req, b.baseAddress, used)
        }
    }
    ops.releasedir = { req, _, _ in fuse_reply_err(req, 0) }
    ops.statfs = { req, _ in
        let h = BlockFileHandler.of(req)
        var st = statvfs()
        st.f_bsize = 4096
        st.f_frsize = 4096
        st.f_blocks = UInt(h.backend.sizeBytes / 4096)
        st.f_namemax = 255
        fuse_reply_statfs(req, &st)
    }
    return ops
}
