// Mounting: one libfuse session on a mountpoint, served by libfuse's multi-threaded
// loop until the filesystem is unmounted (cairn umount, fusermount3 -u). The caller owns
// the signals: libfuse's own handlers only set a flag the loop's threads, blocked in
// read(2) on /dev/fuse, do not see; unmounting is what reliably ends the loop.
import CairnCore
import CairnFS
import CFuse3
import Foundation

public struct FuseMountOptions: Sendable {
    public var allowOther = false
    public var readOnly = false
    /// Shown by mount(8) as the source.
    public var sourceName = "cairn"
    public var threadsMax: UInt32 = 16
    /// Shown by mount(8) as fuse.SUBTYPE.
    public var subtype = "cairn"
    /// Ask the kernel to check permissions from the attributes.
    public var defaultPermissions = true
    public init() {}

    /// -o options for libfuse. The kernel checks permissions from the attributes
    /// (default_permissions) as for a local filesystem.
    var optionString: String {
        var o = ["fsname=\(sourceName)", "subtype=\(subtype)"]
        if defaultPermissions { o.insert("default_permissions", at: 0) }
        if allowOther { o.append("allow_other") }
        if readOnly { o.append("ro") }
        return o.joined(separator: ",")
    }
}

public enum FuseSession {
    /// A mountpoint whose daemon died answers ENOTCONN: unmount it so it can be reused.
    /// Returns whether there was such a stale mount.
    @discardableResult
    public static func cleanStaleMount(_ mountpoint: String) throws -> Bool {
        var st = stat()
        guard stat(mountpoint, &st) != 0, errno == ENOTCONN else { return false }
        try unmount(mountpoint, lazy: true)
        return true
    }

    /// Unmounts with fusermount3 (which an unprivileged user may run); the serving
    /// loop then ends. `lazy` detaches even while files are open or a process has its
    /// working directory inside.
    public static func unmount(_ mountpoint: String, lazy: Bool) throws {
        guard MountInfo.isMountpoint(mountpoint) else { throw CairnError.notFound("\(mountpoint) is not mounted") }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", lazy ? "exec fusermount3 -u -z \"$0\"" : "exec fusermount3 -u \"$0\"", mountpoint]
        try p.run()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { throw CairnError.io("fusermount3 -u \(mountpoint) failed") }
    }

    /// The kernel's control files of FUSE connections (the fusectl filesystem).
    static let connectionsDirectory = "/sys/fs/fuse/connections"

    /// Aborts the FUSE connection of the mount at `mountpoint`: every request waiting on
    /// its daemon fails (ENOTCONN) and the daemon's loop ends. The connection is found
    /// from mountinfo (its device minor), never by touching the path, which a hung daemon
    /// would block. Mounts fusectl on its usual place when nothing is mounted there.
    public static func abortConnection(_ mountpoint: String) throws {
        guard let entry = MountInfo.mount(at: MountInfo.absolute(mountpoint), in: MountInfo.current()) else {
            throw CairnError.notFound("\(mountpoint) is not mounted")
        }
        guard entry.fsType.hasPrefix("fuse") else {
            throw CairnError.invalidArgument("\(mountpoint) is a \(entry.fsType) mount, not a FUSE mount")
        }
        guard let minor = entry.device.split(separator: ":").last.flatMap({ Int($0) }) else {
            throw CairnError.internalError("mountinfo gives \(mountpoint) the device '\(entry.device)'")
        }
        if MountInfo.mount(at: connectionsDirectory, in: MountInfo.current()) == nil {
            guard mount("fusectl", connectionsDirectory, "fusectl", 0, nil) == 0 else {
                throw CairnError.unavailable("cannot mount fusectl on \(connectionsDirectory) to abort the connection: \(String(cString: strerror(errno)))")
            }
        }
        let abort = "\(connectionsDirectory)/\(minor)/abort"
        guard let handle = FileHandle(forWritingAtPath: abort) else {
            throw CairnError.io("cannot open \(abort): \(String(cString: strerror(errno)))")
        }
        defer { try? handle.close() }
        try handle.write(contentsOf: Data("1".utf8))
    }

    /// Kernel readahead of a mount, in KiB. The kernel takes the smaller of the init
    /// reply's max_readahead and the mount's backing device setting (128 KiB by default),
    /// so a sequential reader sends 128-256 KiB requests; the device setting is raised to
    /// the request size, so a 1 MiB read is one request and the next is read ahead.
    static let readaheadKiB = Int(FuseHandler.requestBytesMax) >> 10

    /// Sets the mount's backing device readahead (/sys/class/bdi/MAJOR:MINOR, found in
    /// /proc/self/mountinfo without touching the mount, which is not served yet: the
    /// path was resolved before mounting). Needs root; without it the kernel's default
    /// stays, which only costs speed.
    static func raiseReadahead(resolvedMountpoint path: String) {
        guard let device = MountInfo.mount(at: path, in: MountInfo.current())?.device else { return }
        try? "\(readaheadKiB)".write(toFile: "/sys/class/bdi/\(device)/read_ahead_kb", atomically: false, encoding: .utf8)
    }

    /// `mounted` runs once the kernel has the mount, before requests are served.
    public static func run(_ handler: FuseHandler, mountpoint: String, options: FuseMountOptions,
                           mounted: () -> Void) throws {
        try serve(makeOperations(), userdata: handler, mountpoint: mountpoint, options: options, mounted: mounted,
                  session: { handler.attach($0) })
    }

    /// Serves a one-file filesystem (see BlockFile.swift) until it is unmounted.
    public static func run(_ handler: BlockFileHandler, mountpoint: String, options: FuseMountOptions,
                           mounted: () -> Void) throws {
        try serve(makeBlockFileOperations(), userdata: handler, mountpoint: mountpoint, options: options, mounted: mounted)
    }

    /// `session` is given the libfuse session once mounted and nil before it is destroyed.
    static func serve(_ operations: fuse_lowlevel_ops, userdata handler: AnyObject, mountpoint: String,
                      options: FuseMountOptions, mounted: () -> Void, session: (OpaquePointer?) -> Void = { _ in }) throws {
        var args = fuse_args(argc: 0, argv: nil, allocated: 0)
        defer { fuse_opt_free_args(&args) }
        for a in ["cairn", "-o", options.optionString] { _ = fuse_opt_add_arg(&args, a) }
        var ops = operations
        let userdata = Unmanaged.passRetained(handler)
        defer { userdata.release() }
        // Resolved before the mount: afterwards a stat of it would wait for this loop.
        let resolved = URL(fileURLWithPath: mountpoint).standardizedFileURL.resolvingSymlinksInPath().path
        guard let se = fuse_session_new(&args, &ops, MemoryLayout<fuse_lowlevel_ops>.size, userdata.toOpaque()) else {
            throw CairnError.invalidArgument("libfuse refused the mount options \(options.optionString)")
        }
        defer { fuse_session_destroy(se) }
        guard fuse_session_mount(se, mountpoint) == 0 else {
            throw CairnError.io("cannot mount on \(mountpoint) (does it exist? is /dev/fuse usable?)")
        }
        defer { fuse_session_unmount(se) }
        raiseReadahead(resolvedMountpoint: resolved)
        session(se)
        defer { session(nil) }
        mounted()
        let config = fuse_loop_cfg_create()
        defer { fuse_loop_cfg_destroy(config) }
        fuse_loop_cfg_set_max_threads(config, options.threadsMax)
        let rc = fuse_session_loop_mt(se, config)
        guard rc == 0 || rc == SIGINT || rc == SIGTERM || rc == -SIGINT || rc == -SIGTERM else {
            throw CairnError.io("the FUSE loop ended with \(rc)")
        }
    }
}
