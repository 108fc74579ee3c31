// The one place that calls the C library for file I/O. Every failure becomes a
// `CairnError.io` (or `.noSpace`) naming the call, the path and errno's text.
import CCairnShims
import CairnCore
import Glibc

enum Sys {
    static func error(_ call: String, _ path: String, _ code: Int32 = errno) -> CairnError {
        let text = String(cString: strerror(code))
        if code == ENOSPC || code == EDQUOT { return .noSpace("\(call) \(path): \(text)") }
        return .io("\(call) \(path): \(text)")
    }

    /// open(2); returns nil for ENOENT when `missingOK`.
    static func open(_ path: String, _ flags: Int32, mode: mode_t = 0o644, missingOK: Bool = false) throws -> Int32? {
        while true {
            let fd = Glibc.open(path, flags | O_CLOEXEC, mode)
            if fd >= 0 { return fd }
            if errno == EINTR { continue }
            if missingOK && errno == ENOENT { return nil }
            throw error("open", path)
        }
    }

    /// Reads up to `buffer.count` bytes at `offset`; bytes past the end of file read as zero.
    static func preadFull(_ fd: Int32, _ buffer: UnsafeMutableRawBufferPointer, _ offset: Int, _ path: String) throws {
        var done = 0
        while done < buffer.count {
            let n = Glibc.pread(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset + done))
            if n < 0 {
                if errno == EINTR { continue }
                throw error("pread", path)
            }
            if n == 0 {
                memset(buffer.baseAddress! + done, 0, buffer.count - done)
                return
            }
            done += n
        }
    }

    static func pwriteFull(_ fd: Int32, _ buffer: UnsafeRawBufferPointer, _ offset: Int, _ path: String) throws {
        var done = 0
        while done < buffer.count {
            let n = Glibc.pwrite(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset + done))
            if n < 0 {
                if errno == EINTR { continue }
                throw error("pwrite", path)
            }
            done += n
        }
    }

    /// Most iovecs one pwritev(2) takes (IOV_MAX on Linux).
    static let iovecsPerCallMax = 1024

    /// Writes the concatenation of `pieces` at `offset` with as few pwritev calls as
    /// IOV_MAX and short writes allow. `pieces` is consumed (advanced past what was written).
    static func pwritevFull(_ fd: Int32, _ pieces: inout [iovec], _ offset: Int, _ path: String) throws {
        var position = offset
        var first = 0
        while first < pieces.count {
            if pieces[first].iov_len == 0 { first += 1; continue }
            let count = min(pieces.count - first, iovecsPerCallMax)
            let n = pieces.withUnsafeBufferPointer { Glibc.pwritev(fd, $0.baseAddress! + first, Int32(count), off_t(position)) }
            if n < 0 {
                if errno == EINTR { continue }
                throw error("pwritev", path)
            }
            position += n
            var left = n
            while left > 0 {
                let piece = pieces[first].iov_len
                if left >= piece {
                    left -= piece
                    first += 1
                } else {
                    pieces[first].iov_base = pieces[first].iov_base! + left
                    pieces[first].iov_len -= left
                    left = 0
                }
            }
        }
    }

    static func fdatasync(_ fd: Int32, _ path: String) throws {
        guard Glibc.fdatasync(fd) == 0 else { throw error("fdatasync", path) }
    }

    static func fsync(_ fd: Int32, _ path: String) throws {
        guard Glibc.fsync(fd) == 0 else { throw error("fsync", path) }
    }

    /// Starts writeback of the file's dirty pages without waiting for it
    /// (sync_file_range(SYNC_FILE_RANGE_WRITE)). Best effort: it makes a later fdatasync
    /// find less to write, but durability still comes only from that fdatasync, which also
    /// reports any write error, so a failure here is ignored.
    static func startWriteback(_ fd: Int32) {
        _ = cairn_start_writeback(fd)
    }

    /// fsync of a directory, so entries created, renamed or removed in it are durable.
    static func fsyncDirectory(_ path: String) throws {
        guard let fd = try open(path, O_RDONLY | O_DIRECTORY, missingOK: true) else { return }
        defer { Glibc.close(fd) }
        try fsync(fd, path)
    }

    /// Frees the space of [offset, offset+length) keeping the file size; it reads as zeroes.
    static func punchHole(_ fd: Int32, _ offset: Int, _ length: Int, _ path: String) throws {
        let punchHoleKeepSize: Int32 = 0x02 | 0x01  // FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
        guard fallocate(fd, punchHoleKeepSize, off_t(offset), off_t(length)) == 0 else {
            throw error("fallocate(punch hole)", path)
        }
    }

    static func ftruncate(_ fd: Int32, _ size: Int, _ path: String) throws {
        guard Glibc.ftruncate(fd, off_t(size)) == 0 else { throw error("ftruncate", path) }
    }

    /// Copies the data extents of [0, length) from `input` to `output` (see cairn_copy_sparse).
    static func copySparse(_ input: Int32, _ output: Int32, length: Int, _ path: String) throws {
        let rc = cairn_copy_sparse(input, output, Int64(length))
        guard rc == 0 else { throw error("copy", path, -rc) }
    }

    static func rename(_ from: String, _ to: String) throws {
        guard Glibc.rename(from, to) == 0 else { throw error("rename", from) }
    }

    static func exists(_ path: String) -> Bool { access(path, F_OK) == 0 }

    static func mkdir(_ path: String) throws {
        guard Glibc.mkdir(path, 0o755) == 0 || errno == EEXIST else { throw error("mkdir", path) }
    }

    /// Allocated bytes of a file (st_blocks × 512), 0 if it is gone.
    static func allocatedBytes(_ path: String) -> UInt64 {
        var st = stat()
        guard stat(path, &st) == 0 else { return 0 }
        return UInt64(st.st_blocks) * 512
    }

    static func capacityBytes(_ path: String) -> UInt64 {
        var st = statvfs()
        guard statvfs(path, &st) == 0 else { return 0 }
        return UInt64(st.f_blocks) * UInt64(st.f_frsize)
    }

    /// Bytes an unprivileged writer may still allocate on the file system holding `path`.
    static func freeBytes(_ path: String) -> UInt64 {
        var st = statvfs()
        guard statvfs(path, &st) == 0 else { return 0 }
        return UInt64(st.f_bavail) * UInt64(st.f_frsize)
    }
}

/// fallocate(2) is declared only under _GNU_SOURCE, which the Glibc module does not set;
/// it is looked up once in the C library instead.
private let fallocate: @convention(c) (Int32, Int32, off_t, off_t) -> Int32 = {
    guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "fallocate") else {
        preconditionFailure("the C library has no fallocate")
    }
    return unsafeBitCast(symbol, to: (@convention(c) (Int32, Int32, off_t, off_t) -> Int32).self)
}()

/// A pthread reader/writer lock. Readers of a chunk share it; the committer applying a
/// mutation to that chunk holds it exclusively, so a read never sees a block's data and
/// its table entry from different writes.
final class ReadWriteLock: @unchecked Sendable {
    private let lock = UnsafeMutablePointer<pthread_rwlock_t>.allocate(capacity: 1)
    init() { precondition(pthread_rwlock_init(lock, nil) == 0) }
    deinit {
        pthread_rwlock_destroy(lock)
        lock.deallocate()
    }
    func withReadLock<T>(_ body: () throws -> T) rethrows -> T {
        precondition(pthread_rwlock_rdlock(lock) == 0)
        defer { pthread_rwlock_unlock(lock) }
        return try body()
    }
    func withWriteLock<T>(_ body: () throws -> T) rethrows -> T {
        precondition(pthread_rwlock_wrlock(lock) == 0)
        defer { pthread_rwlock_unlock(lock) }
        return try body()
    }
}
