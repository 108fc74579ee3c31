// CairnAttach: a Cairn volume as a local block device, for the CSI node service and
// `cairn attach` / `cairn detach`.
//
// Methods, in order of preference: the kernel NBD client against the gateway's NBD
// export (when /dev/nbd* and nbd-client exist), open-iscsi against the gateway's iSCSI
// target (when iscsiadm exists), and the userspace fallback fuse-loop: a daemon of its
// own (`cairn attach-daemon`) serves the volume as one file through FUSE and a loop
// device is set up over that file.
//
// Invariants:
//  - Every attachment is recorded in the state directory (one directory per volume)
//    before anything is started, and its record is removed only after everything it
//    names is gone; so a caller killed at any point leaves state that the next attach or
//    detach of the volume finds and either reuses (when healthy) or tears down.
//  - Attach and detach of one volume are serialised by a lock file (flock), also across
//    processes; different volumes proceed in parallel.
//  - No daemon lives in the caller's process: killing the caller leaves devices working.
import CairnCore
import Foundation

public enum AttachMethod: String, Codable, Sendable, CaseIterable {
    case nbd, iscsi, fuseLoop = "fuse-loop"
}

public struct Attachment: Codable, Sendable, Equatable {
    public var volume: String
    public var method: AttachMethod
    /// The block device, e.g. /dev/loop3, /dev/nbd0, /dev/sdb. Empty while attaching.
    public var devicePath: String
    public var readOnly: Bool
    /// fuse-loop: the FUSE daemon's process id.
    public var daemonPID: Int32?
    /// fuse-loop: the file the loop device is set up over, and the FUSE mountpoint.
    public var backingFile: String?
    public var mountpoint: String?
    /// fuse-loop: whether the loop device does direct I/O on the file.
    public var loopDirectIO: Bool?
    /// iscsi: the target and portal logged in to.
    public var target: String?
    public var portal: String?
    /// When the device was set up (ISO 8601).
    public var attachedAt: String

    public init(volume: String, method: AttachMethod, devicePath: String, readOnly: Bool, attachedAt: String = Attachment.now()) {
        self.volume = volume; self.method = method; self.devicePath = devicePath; self.readOnly = readOnly
        self.attachedAt = attachedAt
    }

    public static func now() -> String { ISO8601DateFormatter().string(from: Date()) }
}

public struct AttachOptions: Sendable {
    /// Manager addresses (several: managers sharing one etcd).
    public var managers: [String]
    /// The cluster secret; handed to the attach daemon in its environment, never on its
    /// command line.
    public var secret: String
    /// Where attachments are recorded (one directory per volume) and where the fuse-loop
    /// daemons mount and log.
    public var stateDirectory: String
    /// The `cairn` executable that runs the attach daemons.
    public var cairnBinary: String
    /// The gateway's NBD address (nbd method) and iSCSI portal (iscsi method).
    public var nbdAddress: String
    public var iscsiPortal: String
    /// Storage node on this host whose replicas the daemon reads first.
    public var localNode: String?
    /// Ask the loop device for direct I/O on the FUSE file (no second page cache); falls
    /// back to buffered I/O when the kernel refuses it.
    public var loopDirectIO: Bool
    /// The FUSE file is opened with FOPEN_DIRECT_IO (see BlockFileOptions.directIO).
    public var fuseDirectIO: Bool
    /// Fence out another writer of the volume (its writes are refused from then on).
    public var force: Bool
    /// How long a daemon may take to mount, and a device to appear.
    public var startTimeout: Duration

    public static let stateDirectoryDefault = "/var/lib/cairn/attach"

    public init(managers: [String], secret: String, stateDirectory: String = AttachOptions.stateDirectoryDefault,
                cairnBinary: String = AttachOptions.currentExecutable(), nbdAddress: String = "127.0.0.1:10809",
                iscsiPortal: String = "127.0.0.1:3260", localNode: String? = nil, loopDirectIO: Bool = true,
                fuseDirectIO: Bool = true, force: Bool = false, startTimeout: Duration = .seconds(30)) {
        self.managers = managers; self.secret = secret; self.stateDirectory = stateDirectory
        self.cairnBinary = cairnBinary; self.nbdAddress = nbdAddress; self.iscsiPortal = iscsiPortal
        self.localNode = localNode; self.loopDirectIO = loopDirectIO; self.fuseDirectIO = fuseDirectIO
        self.force = force; self.startTimeout = startTimeout
    }

    /// The running executable (the CSI plugin and the CLI are the `cairn` binary itself).
    public static func currentExecutable() -> String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    }
}

/// The records of the state directory: `DIR/VOLUME/attachment.json`, beside the fuse-loop
/// daemon's mountpoint, pid file and log, and `DIR/VOLUME.lock`.
struct AttachmentStore {
    let directory: String

    func volumeDirectory(_ volume: String) -> String { directory + "/" + volume }
    func recordPath(_ volume: String) -> String { volumeDirectory(volume) + "/attachment.json" }
    func lockPath(_ volume: String) -> String { directory + "/" + volume + ".lock" }
    func mountpoint(_ volume: String) -> String { volumeDirectory(volume) + "/mnt" }
    func pidFile(_ volume: String) -> String { volumeDirectory(volume) + "/daemon.pid" }
    func logFile(_ volume: String) -> String { volumeDirectory(volume) + "/daemon.log" }

    func load(_ volume: String) -> Attachment? {
        guard let data = FileManager.default.contents(atPath: recordPath(volume)) else { return nil }
        return try? JSONDecoder().decode(Attachment.self, from: data)
    }

    /// Written under a temporary name, synced, then renamed: a crash leaves the old
    /// record or the new one.
    func save(_ a: Attachment) throws {
        try AtomicFile.writeJSON(a, to: recordPath(a.volume))
    }

    func remove(_ volume: String) throws {
        let dir = volumeDirectory(volume)
        guard FileManager.default.fileExists(atPath: dir) else { return }
        // The mountpoint must be unmounted by now: removing files under a live mount
        // would reach into the volume, so only the empty directory is removed.
        let mnt = mountpoint(volume)
        if FileManager.default.fileExists(atPath: mnt), rmdir(mnt) != 0 {
            throw CairnError.io("cannot remove \(mnt): \(String(cString: strerror(errno))) (still mounted?)")
        }
        try FileManager.default.removeItem(atPath: dir)
    }

    /// Volumes with a record.
    func volumes() -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return names.filter { FileManager.default.fileExists(atPath: directory + "/" + $0 + "/attachment.json") }.sorted()
    }

    /// Runs `body` holding the volume's lock file (flock, exclusive), waiting for it up to
    /// `timeout`. The lock dies with its holder, so a killed caller never leaves it held.
    func withLock<T>(_ volume: String, timeout: Duration, _ body: () async throws -> T) async throws -> T {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let fd = open(lockPath(volume), O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw CairnError.io("cannot open \(lockPath(volume)): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let deadline = ContinuousClock.now + timeout
        while flock(fd, LOCK_EX | LOCK_NB) != 0 {
            guard errno == EWOULDBLOCK || errno == EINTR else {
                throw CairnError.io("cannot lock \(lockPath(volume)): \(String(cString: strerror(errno)))")
            }
            guard ContinuousClock.now < deadline else {
                throw CairnError.unavailable("volume '\(volume)' is being attached or detached by another process; try again")
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        defer { flock(fd, LOCK_UN) }
        return try await body()
    }
}
