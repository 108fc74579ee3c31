// The userspace fallback: `cairn attach-daemon` (its own session, started through
// setsid, logging to the state directory) mounts a one-file FUSE filesystem whose file is
// the volume, then a loop device is set up over the file.
//
// Fault model: the caller may be killed at any step; the record saved before each step
// names what may exist (mountpoint, pid file, device), and `detach` removes whatever of
// it is there. A daemon killed with SIGKILL leaves a mount answering ENOTCONN and a loop
// device whose I/O fails: `healthy` sees it, and the next attach tears it down.
import CairnCore
import CairnFuse
import Foundation

struct FuseLoopAttach: AttachBackend {
    let options: AttachOptions
    let store: AttachmentStore
    /// How long a daemon has to exit after SIGTERM before it is killed.
    static let stopTimeout: Duration = .seconds(15)

    func attach(_ record: Attachment) async throws -> Attachment {
        var a = record
        let volume = a.volume
        let mnt = store.mountpoint(volume)
        a.mountpoint = mnt
        a.backingFile = mnt + "/" + volume
        try store.save(a)
        try FileManager.default.createDirectory(atPath: mnt, withIntermediateDirectories: true)
        _ = try? FuseSession.cleanStaleMount(mnt)
        unlink(store.pidFile(volume))
        try startDaemon(a)
        a.daemonPID = try await waitForDaemon(a)
        try store.save(a)
        a.devicePath = try setUpLoop(a)
        a.loopDirectIO = SystemTools.loopDirectIO(a.devicePath)
        return a
    }

    /// `setsid --fork cairn attach-daemon ...`: the daemon is not the caller's child and
    /// not in its session, so signals to the caller's process group never reach it, and
    /// it holds none of the caller's descriptors.
    func startDaemon(_ a: Attachment) throws {
        var arguments = ["attach-daemon", a.volume, "--dir", a.mountpoint!, "--pid-file", store.pidFile(a.volume)]
        if a.readOnly { arguments.append("--read-only") }
        if !options.fuseDirectIO { arguments.append("--page-cache") }
        if options.force { arguments.append("--force") }
        var env = ProcessInfo.processInfo.environment
        env["CAIRN_MANAGER"] = options.managers.joined(separator: ",")
        env["CAIRN_SECRET"] = options.secret
        if let node = options.localNode { env["CAIRN_LOCAL_NODE"] = node }
        try SystemTools.spawnDetached(options.cairnBinary, arguments, environment: env, logFile: store.logFile(a.volume))
    }

    /// Waits for the daemon's pid file (written once the mount is up) and the file on the
    /// mount; a daemon that exits first is an error carrying the end of its log.
    func waitForDaemon(_ a: Attachment) async throws -> Int32 {
        let pidFile = store.pidFile(a.volume)
        let deadline = ContinuousClock.now + options.startTimeout
        while ContinuousClock.now < deadline {
            if let text = SystemTools.readTrimmed(pidFile), let pid = Int32(text) {
                var st = stat()
                if stat(a.backingFile!, &st) == 0 { return pid }
                if !SystemTools.processAlive(pid) { break }
            } else if SystemTools.processes(withArguments: daemonArguments(a)).isEmpty {
                // No pid file and no process: it failed before mounting (or is being
                // reaped: the pid file is written before the serving loop starts).
                if SystemTools.readTrimmed(pidFile) == nil { break }
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw CairnError.io("the attach daemon of '\(a.volume)' did not come up: \(logTail(a.volume))")
    }

    func logTail(_ volume: String) -> String {
        let text = SystemTools.readTrimmed(store.logFile(volume)) ?? ""
        let lines = text.split(separator: "\n").suffix(3).joined(separator: " / ")
        return lines.isEmpty ? "no output (see \(store.logFile(volume)))" : lines
    }

    /// The daemon's pid, if that process is really this attachment's daemon.
    func daemonPID(_ a: Attachment) -> Int32? {
        let pid = a.daemonPID ?? SystemTools.readTrimmed(store.pidFile(a.volume)).flatMap { Int32($0) }
        guard let pid, daemonArguments(a).allSatisfy(SystemTools.commandLine(pid).contains) else { return nil }
        return pid
    }

    func daemonArguments(_ a: Attachment) -> [String] {
        ["attach-daemon", a.volume, a.mountpoint ?? store.mountpoint(a.volume)]
    }

    func setUpLoop(_ a: Attachment) throws -> String {
        var args = ["--find", "--show"]
        if options.loopDirectIO { args.append("--direct-io=on") }
        if a.readOnly { args.append("--read-only") }
        args.append(a.backingFile!)
        let out = try SystemTools.run("losetup", args)
        let device = out.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        guard device.hasPrefix("/dev/loop") else { throw CairnError.io("losetup printed '\(device)', not a loop device") }
        return device
    }

    func healthy(_ a: Attachment) -> Bool {
        guard let file = a.backingFile, let pid = daemonPID(a), SystemTools.processAlive(pid) else { return false }
        var st = stat()
        guard stat(file, &st) == 0 else { return false }
        return SystemTools.loopBackingFile(a.devicePath) == file
    }

    func detach(_ a: Attachment) async throws {
        let mnt = a.mountpoint ?? store.mountpoint(a.volume)
        let file = a.backingFile ?? mnt + "/" + a.volume
        // The loop device, if it is still ours.
        if !a.devicePath.isEmpty, SystemTools.loopBackingFile(a.devicePath) == file {
            if SystemTools.deviceBusy(a.devicePath) {
                throw CairnError.conflict("\(a.devicePath) (volume '\(a.volume)') is mounted or in use; unmount it first")
            }
            try SystemTools.run("losetup", ["-d", a.devicePath])
            _ = await SystemTools.waitUntil(.seconds(5)) { SystemTools.loopBackingFile(a.devicePath) != file }
        }
        // A loop device set up over the file by a caller killed before it saved the device.
        for device in loopDevices(over: file) where device != a.devicePath {
            guard !SystemTools.deviceBusy(device) else {
                throw CairnError.conflict("\(device) (volume '\(a.volume)') is mounted or in use; unmount it first")
            }
            try SystemTools.run("losetup", ["-d", device])
        }
        // The daemon unmounts on SIGTERM and detaches from the volume. One started by a
        // caller killed before the daemon wrote its pid file is found by its arguments.
        var daemons = SystemTools.processes(withArguments: daemonArguments(a))
        if let pid = daemonPID(a), !daemons.contains(pid) { daemons.append(pid) }
        for pid in daemons {
            kill(pid, SIGTERM)
            if !(await SystemTools.waitUntil(Self.stopTimeout) { !SystemTools.processAlive(pid) }) {
                kill(pid, SIGKILL)
                _ = await SystemTools.waitUntil(.seconds(5)) { !SystemTools.processAlive(pid) }
            }
        }
        if SystemTools.isMountpoint(mnt) {
            try FuseSession.unmount(mnt, lazy: true)
        }
        unlink(store.pidFile(a.volume))
    }

    /// Loop devices whose backing file is `file` (from /sys/block/loop*/loop/backing_file).
    func loopDevices(over file: String) -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: "/sys/block")) ?? []
        return names.filter { $0.hasPrefix("loop") }.map { "/dev/" + $0 }.filter { SystemTools.loopBackingFile($0) == file }
    }

    /// SIGHUP makes the daemon re-read the volume's map; once the file shows the new size,
    /// `losetup -c` makes the loop device take it.
    func refreshSize(_ a: Attachment, sizeBytes: UInt64) async throws {
        guard let pid = daemonPID(a), let file = a.backingFile else {
            throw CairnError.unavailable("the attach daemon of '\(a.volume)' is not running; detach and attach again")
        }
        kill(pid, SIGHUP)
        let grown = await SystemTools.waitUntil(options.startTimeout) {
            var st = stat()
            return stat(file, &st) == 0 && UInt64(st.st_size) >= sizeBytes
        }
        guard grown else { throw CairnError.io("the attach daemon of '\(a.volume)' did not take the new size \(sizeBytes)") }
        try SystemTools.run("losetup", ["-c", a.devicePath])
    }
}
