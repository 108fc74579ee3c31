// The libfuse low-level operations table. Built in a function outside main.swift: a
// closure formed in top-level code would be main-actor isolated and crash when a libfuse
// worker thread calls it. The closures capture nothing (C function pointers cannot);
// they reach the FuseHandler through fuse_req_userdata.
import CairnFS
import CFuse3
import Foundation

func string(_ p: UnsafePointer<CChar>?) -> String { String(cString: p!) }

func makeOperations() -> fuse_lowlevel_ops {
    var ops = fuse_lowlevel_ops()
    // Requests of up to 1 MiB (libfuse's buffers hold 256 pages): eight times fewer
    // round trips than the 128 KiB default for large reads and writes.
    ops.`init` = { _, conn in
        conn!.pointee.max_write = FuseHandler.requestBytesMax
        conn!.pointee.max_readahead = FuseHandler.requestBytesMax
        conn!.pointee.max_background = 64
        conn!.pointee.congestion_threshold = 48
    }
    ops.lookup = { req, parent, name in
        let h = FuseHandler.of(req), name = string(name)
        h.run(req) { r in h.replyEntry(r, try await h.fs.lookup(parent, name)) }
    }
    ops.forget = { req, _, _ in fuse_reply_none(req) }
    ops.getattr = { req, ino, _ in
        let h = FuseHandler.of(req)
        h.run(req) { r in h.replyAttr(r, try await h.fs.getattr(ino)) }
    }
    ops.setattr = { req, ino, attr, toSet, _ in
        let h = FuseHandler.of(req)
        let changes = FuseHandler.changes(attr!.pointee, toSet: toSet, now: h.fs.now())
        h.run(req) { r in h.replyAttr(r, try await h.fs.setattr(ino, changes)) }
    }
    ops.readlink = { req, ino in
        let h = FuseHandler.of(req)
        h.run(req) { r in
            let target = try await h.fs.readlink(ino)
            fuse_reply_readlink(r.raw, target)
        }
    }
    ops.mknod = { req, parent, name, mode, rdev in
        let h = FuseHandler.of(req), name = string(name)
        h.run(req) { r in
            let who = h.caller(r)
            h.replyEntry(r, try await h.fs.makeNode(parent, name, mode: mode, uid: who.uid, gid: who.gid, rdev: UInt64(rdev)))
        }
    }
    ops.mkdir = { req, parent, name, mode in
        let h = FuseHandler.of(req), name = string(name)
        h.run(req) { r in
            let who = h.caller(r)
            h.replyEntry(r, try await h.fs.makeNode(parent, name, mode: FileType.directory | (mode & 0o7777), uid: who.uid, gid: who.gid))
        }
    }
    ops.symlink = { req, link, parent, name in
        let h = FuseHandler.of(req), name = string(name), target = string(link)
        h.run(req) { r in
            let who = h.caller(r)
            h.replyEntry(r, try await h.fs.makeNode(parent, name, mode: FileType.symlink | 0o777, uid: who.uid, gid: who.gid, target: target))
        }
    }
    ops.unlink = { req, parent, name in
        let h = FuseHandler.of(req), name = string(name)
        h.run(req) { r in
            try await h.fs.unlink(parent, name)
            fuse_reply_err(r.raw, 0)
        }
    }
    ops.rmdir = { req, parent, name in
        let h = FuseHandler.of(req), name = string(name)
        h.run(req) { r in
            try await h.fs.rmdir(parent, name)
            fuse_reply_err(r.raw, 0)
        }
    }
    ops.rename = { req, parent, name, newParent, newName, flags in
        let h = FuseHandler.of(req), name = string(name), newName = string(newName)
        h.run(req) { r in
            try await h.fs.rename(parent, name, newParent, newName, flags: RenameFlags(rawValue: flags))
            fuse_reply_err(r.raw, 0)
        }
    }
    ops.link = { req, ino, newParent, newName in
        let h = FuseHandler.of(req), name = string(newName)
        h.run(req) { r in h.replyEntry(r, try await h.fs.link(ino, newParent, name)) }
    }
    ops.open = { req, ino, fi in
        let h = FuseHandler.of(req)
        let opened = fi!.pointee
        h.run(req) { r in
            // Close-to-open: the inode comes from the store whatever is cached, the
            // kernel forgets its attributes (size, mtime) of it, and with no keep_cache it
            // drops the file's cached pages at open.
            let node = try await h.fs.revalidate(ino)
            guard !node.isDirectory else { throw FSError.isDirectory("inode \(ino) is a directory") }
            // libfuse asks for atomic O_TRUNC by default: the kernel leaves the
            // truncation to this open (it sends no setattr).
            if opened.flags & O_TRUNC != 0 && node.isRegular && node.size > 0 {
                _ = try await h.fs.setattr(ino, AttributeChanges(size: 0))
            }
            if h.fs.caching { h.invalidateAttributes(ino) }
            var info = opened
            info.keep_cache = 0
            h.fs.opened(ino)
            fuse_reply_open(r.raw, &info)
        }
    }
    ops.create = { req, parent, name, mode, fi in
        let h = FuseHandler.of(req), name = string(name)
        let opened = fi!.pointee
        h.run(req) { r in
            let who = h.caller(r)
            let node = try await h.fs.makeNode(parent, name, mode: mode, uid: who.uid, gid: who.gid)
            h.known(node.ino)
            var e = fuse_entry_param()
            e.ino = node.ino
            e.generation = 1
            e.attr = FuseHandler.stat(of: node)
            e.attr_timeout = h.timeouts.attributes
            e.entry_timeout = h.timeouts.entries
            var info = opened
            info.keep_cache = 0
            h.fs.opened(node.ino)
            fuse_reply_create(r.raw, &e, &info)
        }
    }
    ops.read = { req, ino, size, offset, _ in
        let h = FuseHandler.of(req)
        h.run(req) { r in h.replyBuffers(r, try await h.fs.readBuffers(ino, offset: UInt64(offset), length: size)) }
    }
    // The bytes go from libfuse's buffer straight into the file's write buffer, on this
    // worker thread; only a write that has to wait for a flush continues in a Task.
    ops.write = { req, ino, buf, size, offset, _ in
        let h = FuseHandler.of(req)
        let followUp: WriteFollowUp
        do {
            followUp = try h.fs.bufferWrite(ino, offset: UInt64(offset), bytes: UnsafeRawBufferPointer(start: buf, count: size))
        } catch {
            fuse_reply_err(req, FuseHandler.errno(of: error))
            return
        }
        if case .none = followUp {
            fuse_reply_write(req, size)
            return
        }
        h.run(req) { r in
            try await h.fs.finishWrite(ino, followUp)
            fuse_reply_write(r.raw, size)
        }
    }
    // Writes wait in the mount's buffer (CairnFS WriteBuffer.swift): flush (every close),
    // fsync and release store them, so close-to-open holds. The kernel ends a POSIX
    // owner's locks at close through flush, and an open file's flock at its release.
    ops.flush = { req, ino, fi in
        let h = FuseHandler.of(req), owner = fi!.pointee.lock_owner
        h.run(req) { r in
            // The locks go even when storing the buffered writes failed.
            var flushError: Error?
            do { try await h.fs.flush(ino) } catch { flushError = error }
            try await h.fs.releaseLocks(ino, owner: owner, kind: .posix)
            if let flushError { throw flushError }
            fuse_reply_err(r.raw, 0)
        }
    }
    ops.release = { req, ino, fi in
        let h = FuseHandler.of(req), owner = fi!.pointee.lock_owner, flockRelease = fi!.pointee.flock_release != 0
        h.run(req) { r in
            if flockRelease { try await h.fs.releaseLocks(ino, owner: owner, kind: .flock) }
            try await h.fs.released(ino)
            fuse_reply_err(r.raw, 0)
        }
    }
    ops.fsync = { req, ino, _, _ in
        let h = FuseHandler.of(req)
        h.run(req) { r in
            try await h.fs.flush(ino)
            fuse_reply_err(r.raw, 0)
        }
    }
    ops.fallocate = { req, ino, mode, offset, length, _ in
        let h = FuseHandler.of(req)
        h.run(req) { r in
            guard offset >= 0, length > 0 else { throw FSError.invalid("bad fallocate range") }
            try await h.fs.allocate(ino, mode: FileSystem.AllocateMode(rawValue: mode), offset: UInt64(offset), length: UInt64(length))
            fuse_reply_err(r.raw, 0)
        }
    }
    ops.access = { req, ino, mask in
        let h = FuseHandler.of(req)
        h.run(req) { r in
            let who = h.caller(r)
            try await h.fs.access(ino, mask: mask, uid: who.uid, groups: [who.gid] + h.groups(r))
            fuse_reply_err(r.raw, 0)
        }
    }
    ops.getlk = { req, ino, fi, lock in
        let h = FuseHandler.of(req), owner = fi!.pointee.lock_owner, asked = lock!.pointee
        h.run(req) { r in
            var answer = asked
            if let held = try await h.fs.testLock(ino, FuseHandler.fileLock(asked, owner: owner, mount: h.fs.mountID)) {
                answer.l_type = Int16(held.exclusive ? F_WRLCK : F_RDLCK)
                answer.l_whence = Int16(SEEK_SET)
                answer.l_start = off_t(held.start)
                answer.l_len = held.end == .max ? 0 : off_t(held.end - held.start + 1)
                answer.l_pid = pid_t(held.pid)
            } else {
                answer.l_type = Int16(F_UNLCK)
            }
            fuse_reply_lock(r.raw, &answer)
        }
    }
    ops.setlk = { req, ino, fi, lock, sleep in
        let h = FuseHandler.of(req), owner = fi!.pointee.lock_owner, asked = lock!.pointee
        h.run(req) { r in
            let action: LockAction = Int32(asked.l_type) == F_UNLCK ? .unlock : Int32(asked.l_type) == F_WRLCK ? .exclusive : .shared
            try await h.fs.setLock(ino, action, FuseHandler.fileLock(asked, owner: owner, mount: h.fs.mountID),
                                   wait: sleep != 0) { fuse_req_interrupted(r.raw) != 0 }
            fuse_reply_err(r.raw, 0)
        }
    }
    ops.flock = { req, ino, fi, op in
        let h = FuseHandler.of(req), owner = fi!.pointee.lock_owner
        h.run(req) { r in
            let action: LockAction = op & LOCK_UN != 0 ? .unlock : op & LOCK_EX != 0 ? .exclusive : .shared
            let lock = FileLock(kind: .flock, exclusive: action == .exclusive, mount: h.fs.mountID, owner: owner, pid: 0)
            try await h.fs.setLock(ino, action, lock, wait: op & LOCK_NB == 0) { fuse_req_interrupted(r.raw) != 0 }
            fuse_reply_err(r.raw, 0)
        }
    }
    ops.fsyncdir = { req, _, _, _ in fuse_reply_err(req, 0) }
    ops.opendir = { req, ino, fi in
        let h = FuseHandler.of(req)
        let opened = fi!.pointee
        h.run(req) { r in
            var info = opened
            info.fh = try h.openDirectory(try await h.fs.readdir(ino))
            fuse_reply_open(r.raw, &info)
        }
    }
    ops.readdir = { req, _, size, offset, fi in
        let h = FuseHandler.of(req)
        h.readdir(req!, size: size, offset: offset, fh: fi!.pointee.fh)
    }
    ops.readdirplus = { req, _, size, offset, fi in
        let h = FuseHandler.of(req), fh = fi!.pointee.fh
        h.run(req) { r in try await h.readdirplus(r, size: size, offset: offset, fh: fh) }
    }
    ops.releasedir = { req, _, fi in
        FuseHandler.of(req).closeDirectory(fi!.pointee.fh)
        fuse_reply_err(req, 0)
    }
    ops.statfs = { req, _ in
        let h = FuseHandler.of(req)
        h.run(req) { r in
            let c = await h.capacity()
            var st = statvfs()
            st.f_bsize = 4096
            st.f_frsize = 4096
            st.f_blocks = UInt(c.totalBytes / 4096)
            st.f_bfree = UInt(c.freeBytes / 4096)
            st.f_bavail = UInt(c.freeBytes / 4096)
            st.f_files = UInt(1) << 40
            st.f_ffree = UInt(1) << 40
            st.f_favail = UInt(1) << 40
            st.f_namemax = UInt(FileSystem.nameBytesMax)
            fuse_reply_statfs(r.raw, &st)
        }
    }
    ops.setxattr = { req, ino, name, value, size, flags in
        let h = FuseHandler.of(req), name = string(name)
        let bytes = [UInt8](UnsafeRawBufferPointer(start: value, count: size))
        h.run(req) { r in
            try await h.fs.setxattr(ino, name, bytes, flags: FileSystem.XattrFlags(rawValue: flags))
            fuse_reply_err(r.raw, 0)
        }
    }
    ops.getxattr = { req, ino, name, size in
        let h = FuseHandler.of(req), name = string(name)
        h.run(req) { r in h.replyXattr(r, try await h.fs.getxattr(ino, name), size: size) }
    }
    ops.listxattr = { req, ino, size in
        let h = FuseHandler.of(req)
        h.run(req) { r in
            let names = try await h.fs.listxattr(ino)
            h.replyXattr(r, names.flatMap { Array($0.utf8) + [0] }, size: size)
        }
    }
    ops.removexattr = { req, ino, name in
        let h = FuseHandler.of(req), name = string(name)
        h.run(req) { r in
            try await h.fs.removexattr(ino, name)
            fuse_reply_err(r.raw, 0)
        }
    }
    return ops
}

extension FuseHandler {
    /// A POSIX lock request as CairnFS sees it (libfuse already made l_start absolute;
    /// l_len 0 reaches to the end of any file).
    static func fileLock(_ l: flock, owner: UInt64, mount: String) -> FileLock {
        let start = UInt64(max(l.l_start, 0))
        let end = l.l_len <= 0 ? UInt64.max : start + UInt64(l.l_len) - 1
        return FileLock(kind: .posix, exclusive: Int32(l.l_type) == F_WRLCK, start: start, end: end, mount: mount,
                        owner: owner, pid: UInt32(max(l.l_pid, 0)))
    }

    static func changes(_ attr: stat, toSet: Int32, now: FSTime) -> AttributeChanges {
        func has(_ flag: Int32) -> Bool { toSet & flag != 0 }
        func time(_ t: timespec) -> FSTime { FSTime(nanoseconds: Int64(t.tv_sec) * 1_000_000_000 + Int64(t.tv_nsec)) }
        var c = AttributeChanges()
        if has(FUSE_SET_ATTR_MODE) { c.mode = attr.st_mode }
        if has(FUSE_SET_ATTR_UID) { c.uid = attr.st_uid }
        if has(FUSE_SET_ATTR_GID) { c.gid = attr.st_gid }
        if has(FUSE_SET_ATTR_SIZE) { c.size = UInt64(attr.st_size) }
        if has(FUSE_SET_ATTR_ATIME_NOW) { c.atime = now } else if has(FUSE_SET_ATTR_ATIME) { c.atime = time(attr.st_atim) }
        if has(FUSE_SET_ATTR_MTIME_NOW) { c.mtime = now } else if has(FUSE_SET_ATTR_MTIME) { c.mtime = time(attr.st_mtim) }
        return c
    }

    /// size 0 asks for the length; a smaller buffer than the value is ERANGE.
    func replyXattr(_ req: Request, _ value: [UInt8], size: Int) {
        if size == 0 {
            fuse_reply_xattr(req.raw, value.count)
        } else if size < value.count {
            fuse_reply_err(req.raw, ERANGE)
        } else {
            replyBytes(req, value)
        }
    }

    /// readdir with each entry's attributes (saves `ls -l` a lookup per name): the
    /// attributes of the entries that can fit are read in batches (`FileSystem.getattrs`,
    /// one store call per 64); a name whose inode went meanwhile is listed without them.
    func readdirplus(_ req: Request, size: Int, offset: off_t, fh: UInt64) async throws {
        guard let entries = listing(fh) else { fuse_reply_err(req.raw, EBADF); return }
        let first = Int(offset)
        // An entry takes at least 152 bytes (fuse_direntplus plus an 8-byte name).
        let last = min(entries.count, first + max(1, size / 152))
        var nodes = [Inode?](repeating: nil, count: max(0, last - first))
        let wanted = (first..<max(first, last)).filter { entries[$0].name != "." && entries[$0].name != ".." }
        for (i, node) in zip(wanted, try await fs.getattrs(wanted.map { entries[$0].entry.ino })) { nodes[i - first] = node }
        var buffer = [CChar](repeating: 0, count: size)
        var used = 0
        buffer.withUnsafeMutableBufferPointer { b in
            var index = first
            while index < entries.count {
                var e = fuse_entry_param()
                if index < last, let node = nodes[index - first] {
                    known(node.ino)
                    e.ino = node.ino
                    e.generation = 1
                    e.attr = Self.stat(of: node)
                    e.attr_timeout = timeouts.attributes
                    e.entry_timeout = timeouts.entries
                } else if index >= last {
                    break
                } else {
                    e.attr.st_ino = UInt(entries[index].entry.ino)  // e.ino 0: no entry made
                    e.attr.st_mode = entries[index].entry.type
                }
                let need = fuse_add_direntry_plus(req.raw, b.baseAddress! + used, size - used, entries[index].name, &e, off_t(index + 1))
                if used + need > size { break }
                used += need
                index += 1
            }
            fuse_reply_buf(req.raw, b.baseAddress, used)
        }
    }

    /// Entries of the opendir snapshot from index `offset`, as many as fit in `size`.
    func readdir(_ req: fuse_req_t, size: Int, offset: off_t, fh: UInt64) {
        guard let entries = listing(fh) else { fuse_reply_err(req, EBADF); return }
        var buffer = [CChar](repeating: 0, count: size)
        var used = 0
        var index = Int(offset)
        buffer.withUnsafeMutableBufferPointer { b in
            while index < entries.count {
                var st = Glibc.stat()
                st.st_ino = UInt(entries[index].entry.ino)
                st.st_mode = entries[index].entry.type
                let need = fuse_add_direntry(req, b.baseAddress! + used, size - used, entries[index].name, &st, off_t(index + 1))
                if used + need > size { break }
                used += need
                index += 1
            }
            fuse_reply_buf(req, b.baseAddress, used)
        }
    }
}
