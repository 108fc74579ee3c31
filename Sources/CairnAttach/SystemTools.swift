// The host's tools and kernel state the attach methods use: running losetup, nbd-client,
// iscsiadm; reading /sys and /proc. Everything here is a thin wrapper with a clear error.
import CairnCore
import CCairnShims
import Foundation

enum SystemTools {
    struct Output {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    /// Runs `tool` (found on PATH unless absolute) and waits for it.
    @discardableResult
    static func run(_ tool: String, _ arguments: [String], check: Bool = true) throws -> Output {
        guard let path = which(tool) else { throw CairnError.unavailable("\(tool) is not installed") }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: path)
        p.arguments = arguments
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        p.standardInput = FileHandle.nullDevice
        try p.run()
        // Read both pipes before waiting: a tool that fills one would block otherwise.
        let errData = Locked(Data())
        let reader = Thread { errData.withLock { $0 = err.fileHandleForReading.readDataToEndOfFile() } }
        reader.start()
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        while !reader.isFinished { usleep(1000) }
        let result = Output(status: p.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
                            stderr: String(decoding: errData.snapshot, as: UTF8.self))
        if check && result.status != 0 {
            let detail = result.stderr.trimmingCharacters(in: .whitespacesAndNewlines)
            throw CairnError.io("\(tool) \(arguments.joined(separator: " ")) failed (status \(result.status)): \(detail)")
        }
        return result
    }

    /// Starts `setsid --fork EXECUTABLE ARGUMENTS...` with stdin from /dev/null, stdout and
    /// stderr appended to `logFile`, and no other descriptor of ours (posix_spawn with
    /// closefrom(3)), and waits for setsid, which exits at once: the program runs on as
    /// an orphan in a session of its own, reaped by PID 1, never by the caller.
    ///
    /// Not Foundation's Process: it hands the child a socket whose end-of-file is how it
    /// learns the child exited, so a daemon that inherited it would make the wait last as
    /// long as the daemon (and hold the caller's other descriptors too).
    static func spawnDetached(_ executable: String, _ arguments: [String], environment: [String: String],
                              logFile: String) throws {
        guard let setsid = which("setsid") else { throw CairnError.unavailable("setsid is not installed") }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, logFile, O_WRONLY | O_CREAT | O_APPEND, 0o640)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        _ = cairn_spawn_addclosefrom(&actions, 3)
        let argv = [setsid, "--fork", executable] + arguments
        let envp = environment.map { "\($0.key)=\($0.value)" }
        var pid: pid_t = 0
        let rc = withCStrings(argv) { cArgv in
            withCStrings(envp) { cEnvp in posix_spawn(&pid, setsid, &actions, nil, cArgv, cEnvp) }
        }
        guard rc == 0 else { throw CairnError.io("cannot start \(executable): \(String(cString: strerror(rc)))") }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        guard status == 0 else { throw CairnError.io("setsid could not start \(executable) (status \(status))") }
    }

    /// A NULL-terminated array of C strings valid during `body`.
    static func withCStrings<R>(_ strings: [String], _ body: ([UnsafeMutablePointer<CChar>?]) -> R) -> R {
        let pointers = strings.map { strdup($0) } + [nil]
        defer { for p in pointers { free(p) } }
        return body(pointers)
    }

    static func which(_ tool: String) -> String? {
        if tool.hasPrefix("/") { return FileManager.default.isExecutableFile(atPath: tool) ? tool : nil }
        let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
        let dirs = path.split(separator: ":").map(String.init) + ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
        return dirs.map { $0 + "/" + tool }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    static func readTrimmed(_ path: String) -> String? {
        guard let d = FileManager.default.contents(atPath: path) else { return nil }
        return String(decoding: d, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// A zombie counts as gone: the daemons are orphans, reaped by whatever PID 1 is.
    static func processAlive(_ pid: Int32) -> Bool {
        guard kill(pid, 0) == 0 || errno == EPERM else { return false }
        guard let stat = readTrimmed("/proc/\(pid)/stat"), let close = stat.lastIndex(of: ")") else { return true }
        return stat[stat.index(after: close)...].trimmingCharacters(in: .whitespaces).first != "Z"
    }

    /// The command line of a process, its arguments split.
    static func commandLine(_ pid: Int32) -> [String] {
        guard let d = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return [] }
        return d.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
    }

    /// Processes whose command line contains every one of `arguments`.
    static func processes(withArguments arguments: [String]) -> [Int32] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return names.compactMap(Int32.init).filter { pid in
            let args = commandLine(pid)
            return arguments.allSatisfy(args.contains) && processAlive(pid)
        }
    }

    /// Whether `path` is a mountpoint right now.
    static func isMountpoint(_ path: String) -> Bool { MountInfo.isMountpoint(path) }

    /// Whether a block device is held by a mount or another exclusive opener (O_EXCL on a
    /// block device fails with EBUSY then).
    static func deviceBusy(_ device: String) -> Bool {
        let fd = open(device, O_RDONLY | O_EXCL | O_CLOEXEC)
        if fd >= 0 { close(fd); return false }
        return errno == EBUSY
    }

    /// The file a loop device is set up over, nil when it is free or gone.
    static func loopBackingFile(_ device: String) -> String? {
        let name = (device as NSString).lastPathComponent
        return readTrimmed("/sys/block/\(name)/loop/backing_file")
    }

    static func loopDirectIO(_ device: String) -> Bool {
        let name = (device as NSString).lastPathComponent
        return readTrimmed("/sys/block/\(name)/loop/dio") == "1"
    }

    /// Polls `condition` every 50 ms until it holds or `timeout` passes.
    static func waitUntil(_ timeout: Duration, _ condition: () -> Bool) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while !condition() {
            guard ContinuousClock.now < deadline else { return false }
            try? await Task.sleep(for: .milliseconds(50))
        }
        return true
    }
}
