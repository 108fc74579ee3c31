// The node service's seam to the host: mounts, commands, detached daemons, statfs and
// the state directory. LinuxNodeSystem is the only implementation that touches them.
import CairnCore
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// statfs numbers, in bytes and inodes.
public struct FilesystemUsage: Sendable, Equatable {
    public var totalBytes: UInt64
    public var availableBytes: UInt64
    public var usedBytes: UInt64
    public var totalInodes: UInt64
    public var freeInodes: UInt64
}

public protocol NodeSystem: Sendable {
    func mounts() throws -> [MountEntry]
    /// Runs a command to its end; its status and its stdout+stderr.
    func run(_ argv: [String]) throws -> (status: Int32, output: String)
    /// Starts a daemon in its own session, output to `log`; its pid.
    func spawnDaemon(_ argv: [String], environment: [String: String], log: String) throws -> Int32
    func isAlive(_ pid: Int32) -> Bool
    func usage(_ path: String) throws -> FilesystemUsage
    func fileExists(_ path: String) -> (exists: Bool, isDirectory: Bool)
    func makeDirectory(_ path: String) throws
    /// Creates an empty regular file (a bind-mount target for a device) if absent.
    func makeFile(_ path: String) throws
    /// Removes a file or an empty directory; absent is fine.
    func remove(_ path: String) throws
    func read(_ path: String) throws -> [UInt8]?
    /// Replaces the file atomically (write aside, then rename).
    func write(_ path: String, _ bytes: [UInt8]) throws
    func list(_ directory: String) -> [String]
}

public struct LinuxNodeSystem: NodeSystem {
    public init() {}

    public func mounts() throws -> [MountEntry] {
        MountInfo.parse(try String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8))
    }

    public func run(_ argv: [String]) throws -> (status: Int32, output: String) {
        try Subprocess.run(argv, environment: nil)
    }

    public func spawnDaemon(_ argv: [String], environment: [String: String], log: String) throws -> Int32 {
        // sh starts setsid in the background; setsid (not a group leader there) calls
        // setsid() and execs, so $! is the daemon's own pid and the daemon outlives the
        // plugin (a kill -9 of the plugin leaves it serving).
        let quoted = argv.map(Self.shellQuote).joined(separator: " ")
        // The pid goes through a file, not a pipe: the daemon would inherit the pipe's
        // write end and keep it open for as long as it runs.
        let pidFile = log + ".pid"
        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment { env[k] = v }
        let sh = try Subprocess.run(["/bin/sh", "-c",
                                     "setsid \(quoted) >>\(Self.shellQuote(log)) 2>&1 </dev/null & echo $! > \(Self.shellQuote(pidFile))"],
                                    environment: env)
        let text = (try? String(contentsOfFile: pidFile, encoding: .utf8)) ?? ""
        unlink(pidFile)
        guard sh.status == 0, let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)) else {
            throw CSIError(.internalError, "could not start \(argv.joined(separator: " "))")
        }
        return pid
    }

    static func shellQuote(_ s: String) -> String { "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'" }

    public func isAlive(_ pid: Int32) -> Bool {
        guard pid > 0, kill(pid, 0) == 0 else { return false }
        // A zombie (exited, not yet reaped) is not alive.
        let stat = (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)) ?? ""
        guard let close = stat.lastIndex(of: ")") else { return false }
        return !stat[close...].hasPrefix(") Z")
    }

    public func usage(_ path: String) throws -> FilesystemUsage {
        var s = statvfs()
        guard statvfs(path, &s) == 0 else {
            throw CSIError(errno == ENOENT ? .notFound : .internalError, "statfs \(path): \(String(cString: strerror(errno)))")
        }
        let unit = UInt64(s.f_frsize)
        let total = UInt64(s.f_blocks) * unit
        let free = UInt64(s.f_bfree) * unit
        return FilesystemUsage(totalBytes: total, availableBytes: UInt64(s.f_bavail) * unit,
                               usedBytes: total > free ? total - free : 0,
                               totalInodes: UInt64(s.f_files), freeInodes: UInt64(s.f_ffree))
    }

    public func fileExists(_ path: String) -> (exists: Bool, isDirectory: Bool) {
        var isDir: ObjCBool = false
        let e = FileManager.default.fileExists(atPath: path, isDirectory: &isDir)
        return (e, isDir.boolValue)
    }

    public func makeDirectory(_ path: String) throws {
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    public func makeFile(_ path: String) throws {
        let parent = (path as NSString).deletingLastPathComponent
        try makeDirectory(parent)
        if !FileManager.default.fileExists(atPath: path) {
            guard FileManager.default.createFile(atPath: path, contents: nil) else {
                throw CSIError(.internalError, "cannot create \(path)")
            }
        }
    }

    public func remove(_ path: String) throws {
        if unlink(path) == 0 || errno == ENOENT { return }
        if errno == EISDIR || errno == EPERM, rmdir(path) == 0 || errno == ENOENT { return }
        throw CSIError(.internalError, "cannot remove \(path): \(String(cString: strerror(errno)))")
    }

    public func read(_ path: String) throws -> [UInt8]? {
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        return [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
    }

    public func write(_ path: String, _ bytes: [UInt8]) throws {
        try makeDirectory((path as NSString).deletingLastPathComponent)
        try Data(bytes).write(to: URL(fileURLWithPath: path), options: .atomic)
    }

    public func list(_ directory: String) -> [String] {
        (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
    }
}

/// posix_spawn and waitpid, nothing else: Foundation's Process waited forever here for a
/// shell that had exited (its exit notice never arrived), so the plugin runs its own.
enum Subprocess {
    /// Runs `argv` (looked up on PATH) with stdin from /dev/null, stdout and stderr into
    /// one pipe; returns the exit status (128+N for a signal) and the output.
    static func run(_ argv: [String], environment: [String: String]?) throws -> (status: Int32, output: String) {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { throw CSIError(.internalError, "pipe: \(String(cString: strerror(errno)))") }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, fds[1], 1)
        posix_spawn_file_actions_adddup2(&actions, fds[1], 2)
        posix_spawn_file_actions_addclose(&actions, fds[0])
        posix_spawn_file_actions_addclose(&actions, fds[1])
        let cArgs = argv.map { strdup($0) } + [nil]
        let envList = environment.map { $0.map { "\($0.key)=\($0.value)" } }
        let cEnv = envList.map { $0.map { strdup($0) } + [nil] }
        defer {
            cArgs.forEach { free($0) }
            cEnv?.forEach { free($0) }
        }
        var pid: pid_t = 0
        let rc: Int32 = cEnv.map { env in posix_spawnp(&pid, argv[0], &actions, nil, cArgs, env) }
            ?? posix_spawnp(&pid, argv[0], &actions, nil, cArgs, environ)
        close(fds[1])
        guard rc == 0 else {
            close(fds[0])
            throw CSIError(.internalError, "cannot run \(argv[0]): \(String(cString: strerror(rc)))")
        }
        var output: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = read(fds[0], &buffer, buffer.count)
            if n > 0 { output += buffer[0..<n]; continue }
            if n < 0 && errno == EINTR { continue }
            break
        }
        close(fds[0])
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            guard errno == EINTR else { throw CSIError(.internalError, "waitpid \(argv[0]): \(String(cString: strerror(errno)))") }
        }
        let signal = status & 0x7f
        return (signal == 0 ? (status >> 8) & 0xff : 128 + signal, String(decoding: output, as: UTF8.self))
    }
}
