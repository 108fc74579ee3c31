// `cairn local up`: a whole cluster on one machine, each daemon its own child process
// (so a person can kill one and watch the cluster heal). Data, the secret and node ids
// live under --dir and survive a restart. Ctrl-C stops everything cleanly.
import ArgumentParser
import CairnClient
import CairnCore
import CairnEtcd
import Foundation

struct LocalCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "local", abstract: "A local cluster for trying Cairn and for tests.", subcommands: [Up.self])

    struct Up: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Start a manager and storage nodes as child processes; Ctrl-C stops them.")
        @Option(help: "Where data, logs, the secret and pid files live.") var dir = "./cairn-data"
        @Option(help: "Number of storage nodes.") var nodes = 3
        @Option(name: .customLong("manager-port")) var managerPort = 9400
        @Option(name: .customLong("storage-port"), help: "Port of the first storage node; the others follow.") var storagePort = 9411
        @Option(name: .customLong("heartbeat-timeout")) var heartbeatTimeout = "5s"
        @Option(name: .customLong("grace-period")) var gracePeriod = "30s"
        @Option(name: .customLong("chunk-size")) var chunkSize = "64MiB"
        @Option(name: .customLong("journal-size"), help: "Journal per storage node (a small one checkpoints often under large writes).")
        var journalSize = "256MiB"
        @Option(name: .customLong("rebuild-rate")) var rebuildRate = "256MiB"
        @Option(name: .customLong("nbd-port"), help: "Port of the NBD gateway (0: no gateway).") var nbdPort = 10809
        @Option(name: .customLong("iscsi-port"), help: "Port of the gateway's iSCSI target, no authentication (default 3260 if free; 0: none).")
        var iscsiPort: Int?
        @Option(name: .customLong("http-port"),
                help: "First port of /metrics, /healthz and /readyz: storage node i on PORT+i-1, the gateway on PORT+nodes (the manager serves them on its API port).")
        var httpPort = 9420
        @Option(help: "Where to write the client configuration (default: $CAIRN_CONFIG or ~/.config/cairn/config).")
        var config: String?
        @Option(help: "Metadata store of the manager: sqlite (a file under --dir) or etcd (a local etcd started as a child; needs Debian's etcd-server).")
        var meta = "sqlite"
        @Option(name: .customLong("etcd-port"), help: "With --meta etcd: etcd's client port (its peer port is the next one).")
        var etcdPort = 2379
        @Option(name: .customLong("fs-mount"),
                help: "Where to mount the shared filesystem 'default' (created if missing) with FUSE (default DIR/mnt; 'none': no mount).")
        var fsMount: String?

        func run() async throws {
            try await runReporting {
                guard (1...16).contains(nodes) else { throw CairnError.invalidArgument("--nodes must be 1 to 16") }
                guard meta == "sqlite" || meta == "etcd" else {
                    throw CairnError.invalidArgument("--meta must be sqlite or etcd, not '\(meta)'")
                }
                _ = try parseDuration(heartbeatTimeout); _ = try parseDuration(gracePeriod)
                _ = try ByteSize.parse(chunkSize); _ = try ByteSize.parse(journalSize)
                let root = URL(fileURLWithPath: dir).standardizedFileURL.path
                let fm = FileManager.default
                for sub in ["", "/logs", "/run", "/manager"] {
                    try fm.createDirectory(atPath: root + sub, withIntermediateDirectories: true)
                }
                let secretFile = root + "/secret"
                if !fm.fileExists(atPath: secretFile) {
                    try Data((ClientConfig.generateSecret() + "\n").utf8).write(to: URL(fileURLWithPath: secretFile))
                    chmod(secretFile, 0o600)
                }
                let secret = try ClientConfig.resolve(manager: nil, secretFile: secretFile).secret
                let managerURL = "http://127.0.0.1:\(managerPort)"
                let configPath = config ?? ClientConfig.defaultPath
                try ClientConfig(manager: managerURL, secret: secret).save(path: configPath)

                let children = ChildProcesses(runDir: root + "/run", logDir: root + "/logs")
                do {
                    var metaArgument = root + "/manager/meta.db"
                    if meta == "etcd" {
                        metaArgument = try await startEtcd(root: root, children: children)
                    }
                    try children.spawn("manager", [
                        "manager", "--listen", "127.0.0.1:\(managerPort)", "--meta", metaArgument,
                        "--secret-file", secretFile, "--heartbeat-timeout", heartbeatTimeout,
                        "--grace-period", gracePeriod, "--chunk-size", chunkSize, "--rebuild-rate", rebuildRate,
                    ])
                    let mc = ManagerClient(baseURL: managerURL, secret: secret, group: Runtime.group)
                    try await waitUntil("the manager to answer", children) { (try? await mc.nodes()) != nil }
                    var addresses: [String] = []
                    for i in 1...nodes {
                        let address = "127.0.0.1:\(storagePort + i - 1)"
                        addresses.append(address)
                        try children.spawn("node\(i)", [
                            "storage", "--data", root + "/node\(i)", "--listen", address, "--node-id", "node\(i)",
                            "--manager", managerURL, "--secret-file", secretFile, "--chunk-size", chunkSize,
                            "--journal-size", journalSize, "--http", "127.0.0.1:\(httpPort + i - 1)",
                        ])
                    }
                    try await waitUntil("\(nodes) storage nodes to report", children) {
                        let up = (try? await mc.nodes())?.filter { $0.state == .up && addresses.contains($0.address) }.count ?? 0
                        return up >= nodes
                    }
                    var nbdEndpoint = ""
                    if nbdPort > 0 {
                        let socket = root + "/run/nbd.sock"
                        try? fm.removeItem(atPath: socket)
                        try children.spawn("gateway", [
                            "gateway", "--nbd", "127.0.0.1:\(nbdPort)", "--nbd-socket", socket,
                            "--iscsi-allow-no-auth",
                        ] + (iscsiPort.map { ["--iscsi", $0 > 0 ? "127.0.0.1:\($0)" : "none"] } ?? []) + [
                            "--manager", managerURL, "--secret-file", secretFile,
                            "--http", "127.0.0.1:\(httpPort + nodes)",
                        ])
                        // A gateway that cannot start (say, the port is taken) leaves the
                        // cluster usable: say so and go on without it.
                        for _ in 0..<100 where !fm.fileExists(atPath: socket) && children.firstExited() == nil {
                            try await Task.sleep(for: .milliseconds(100))
                        }
                        if fm.fileExists(atPath: socket) {
                            nbdEndpoint = "\n  nbd:           nbd://127.0.0.1:\(nbdPort)/VOLUME  nbd+unix:///VOLUME?socket=\(socket)"
                            if iscsiPort != 0 {
                                nbdEndpoint += "\n  iscsi:         iscsi://127.0.0.1:\(iscsiPort ?? 3260)/iqn.2026-11.io.cairn:VOLUME/0 (see the gateway log)"
                            }
                        } else {
                            nbdEndpoint = "\n  nbd:           the gateway did not start; see \(root)/logs/gateway.log"
                        }
                    }
                    let fsLine = try await mountDefaultFilesystem(root: root, mc: mc, managerURL: managerURL,
                                                                  secretFile: secretFile, children: children)
                    print("""
                    Cairn local cluster is up (data in \(root)).
                      manager:       \(managerURL) (metadata: \(meta == "etcd" ? "etcd at http://127.0.0.1:\(etcdPort)" : "SQLite"))
                      storage nodes: \(addresses.enumerated().map { "node\($0.offset + 1)=\($0.element)" }.joined(separator: " "))
                      metrics:       \(managerURL)/metrics, storage nodes http://127.0.0.1:\(httpPort)-\(httpPort + nodes - 1)\(nbdPort > 0 ? ", gateway http://127.0.0.1:\(httpPort + nodes)" : "") (/metrics /healthz /readyz)
                      client config: \(configPath)\(nbdEndpoint)\(fsLine)
                      logs:          \(root)/logs
                    Try: cairn status; cairn volume create v1 --size 1GiB
                    Press Ctrl-C to stop.
                    """)
                    fflush(stdout)
                    _ = await Runtime.waitForTermination()
                    print("stopping the local cluster")
                    children.stopAll()
                } catch {
                    children.stopAll()
                    throw error
                }
            }
        }

        /// The filesystem volume `default`, created if missing, mounted at --fs-mount by a
        /// `cairn mount` child (stopped first at Ctrl-C, which unmounts it). A mount that
        /// cannot start (no /dev/fuse, say) leaves the cluster up: the line says why.
        func mountDefaultFilesystem(root: String, mc: ManagerClient, managerURL: String, secretFile: String,
                                    children: ChildProcesses) async throws -> String {
            let mountpoint = fsMount ?? root + "/mnt"
            guard mountpoint != "none" else { return "" }
            let fsName = "default"
            if (try? await mc.volume(fsName)) == nil {
                _ = try await mc.createVolume(CreateVolumeRequest(
                    name: fsName, sizeBytes: 1 << 40, replicas: min(nodes, 3), replicasMin: min(nodes, 2),
                    kind: .filesystem, requestID: "local-up-default-fs"))
            }
            try? FileManager.default.createDirectory(atPath: mountpoint, withIntermediateDirectories: true)
            try children.spawn("mount", [
                "mount", fsName, mountpoint, "--manager", managerURL, "--secret-file", secretFile,
            ])
            for _ in 0..<300 {
                if children.exited("mount") { break }
                if Self.isMounted(mountpoint) { return "\n  filesystem:    '\(fsName)' mounted on \(mountpoint) (shared; cairn mount \(fsName) DIR for more)" }
                try await Task.sleep(for: .milliseconds(100))
            }
            return "\n  filesystem:    '\(fsName)' was not mounted on \(mountpoint); see \(root)/logs/mount.log"
        }

        /// Whether /proc/self/mountinfo lists `path` as a mountpoint.
        static func isMounted(_ path: String) -> Bool { MountInfo.isMountpoint(path) }

        /// Starts a one-member etcd under ROOT/etcd and returns the manager's --meta for it.
        func startEtcd(root: String, children: ChildProcesses) async throws -> String {
            guard let etcd = ["/usr/bin/etcd", "/usr/local/bin/etcd"].first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
                throw CairnError.unavailable("--meta etcd needs the etcd server: apt-get install etcd-server")
            }
            let client = "http://127.0.0.1:\(etcdPort)", peer = "http://127.0.0.1:\(etcdPort + 1)"
            try children.spawn("etcd", executable: etcd, [
                "--name", "cairn-local", "--data-dir", root + "/etcd", "--listen-client-urls", client,
                "--advertise-client-urls", client, "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", "cairn-local=\(peer)", "--auto-compaction-retention", "1h",
            ])
            let store = try EtcdMetaStore(client: try EtcdClient(endpoints: [client], group: Runtime.group))
            store.client.retryWindow = .zero
            try await waitUntil("etcd to answer", children) { (try? await store.currentRevision()) != nil }
            return "etcd://127.0.0.1:\(etcdPort)"
        }

        func waitUntil(_ what: String, _ children: ChildProcesses, _ check: () async -> Bool) async throws {
            for _ in 0..<200 {
                if await check() { return }
                if let dead = children.firstExited() {
                    throw CairnError.unavailable("\(dead) exited while waiting for \(what); see \(children.logDir)/\(dead).log")
                }
                try await Task.sleep(for: .milliseconds(100))
            }
            throw CairnError.unavailable("timed out waiting for \(what); see the logs in \(children.logDir)")
        }
    }
}

/// Child daemons of `cairn local up`, with pid files and logs.
final class ChildProcesses: @unchecked Sendable {
    let runDir: String
    let logDir: String
    private let children = Locked<[(String, Process)]>([])

    init(runDir: String, logDir: String) { self.runDir = runDir; self.logDir = logDir }

    static var executable: String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    }

    func spawn(_ name: String, executable: String = ChildProcesses.executable, _ args: [String]) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: executable)
        p.arguments = args
        let logPath = logDir + "/\(name).log"
        FileManager.default.createFile(atPath: logPath, contents: nil)
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        log.seekToEndOfFile()
        p.standardOutput = log
        p.standardError = log
        p.standardInput = FileHandle.nullDevice
        try p.run()
        try Data("\(p.processIdentifier)\n".utf8).write(to: URL(fileURLWithPath: runDir + "/\(name).pid"))
        children.withLock { $0.append((name, p)) }
    }

    func exited(_ name: String) -> Bool {
        children.withLock { c in c.contains { $0.0 == name && !$0.1.isRunning } }
    }

    func firstExited() -> String? {
        children.withLock { c in c.first { !$0.1.isRunning }?.0 }
    }

    /// SIGTERM to every child (storage nodes first, the manager last), then SIGKILL to any
    /// still running after 10 seconds.
    func stopAll() {
        let all = children.withLock { $0 }
        for (name, p) in all.reversed() where p.isRunning {
            kill(p.processIdentifier, SIGTERM)
            let deadline = Date().addingTimeInterval(10)
            while p.isRunning && Date() < deadline { usleep(20_000) }
            if p.isRunning { kill(p.processIdentifier, SIGKILL) }
            try? FileManager.default.removeItem(atPath: runDir + "/\(name).pid")
        }
    }
}
