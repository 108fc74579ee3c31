// `cairn mount FS MOUNTPOINT` (a foreground FUSE daemon) and `cairn umount MOUNTPOINT`.
//
// A mount creates its own data volume `<fs>.d.<mount id>` (replicated like the
// filesystem volume) and is its only writer; its metadata goes through the manager's
// metadata proxy, so any number of mounts on any hosts share one namespace.
import ArgumentParser
import CairnClient
import CairnCore
import CairnFS
import CairnFuse
import CairnMeta
import CairnNet
import Foundation

struct MountCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mount",
        abstract: "Mount a shared filesystem volume with FUSE (runs in the foreground until unmounted or signalled).")
    @Argument(help: "The filesystem volume (created with `cairn volume create NAME --kind filesystem`).") var name: String
    @Argument(help: "An existing empty directory.") var mountpoint: String
    @Option(name: .customShort("o"), help: "Mount options, comma separated: allow_other, ro.") var options: [String] = []
    @Option(help: "Seconds the kernel may cache attributes. The mount's metadata cache tells the kernel of other mounts' changes as they happen; this bounds how long one can stay unseen while that watch is broken. --attr-timeout 0 --entry-timeout 0: no cache, every stat and lookup asks the store.")
    var attrTimeout: Double = FuseTimeouts.standardSeconds
    @Option(help: "Seconds the kernel may cache names (see --attr-timeout).") var entryTimeout: Double = FuseTimeouts.standardSeconds
    @Option(help: "Size of this mount's data volume (thin: space is used as data is written).") var dataVolumeSize: SizeArgument = SizeArgument(argument: "256GiB")!
    @Option(help: "Address to serve /metrics, /healthz and /readyz on (default none: several mounts share a host).")
    var http = "none"
    @Option(help: "Written data a mount keeps per file before storing it (stored at close, fsync and this size; 0: store every write at once).")
    var writeBuffer: SizeArgument = SizeArgument(argument: "8MiB")!
    @Option(help: "Age of the append mark below which `cairn fs gc` may trim this mount's unreferenced data (e.g. 30s).")
    var gcGrace = DurationArgument(argument: "30s")!
    @Option(help: "How often this mount collects garbage by itself: its own volume's unreferenced data, and (one mount per interval) ended mounts' volumes (e.g. 10m; 0: only when `cairn fs gc` asks).")
    var gcInterval = DurationArgument(argument: "10m")!
    @OptionGroup var client: ClientOptions

    /// A data volume's name adds ".d." and 8 hex digits to the filesystem's.
    static let nameBytesMax = 63 - 11

    func run() async throws {
        try await runReporting {
            var mountOptions = FuseMountOptions()
            mountOptions.sourceName = "cairn:\(name)"
            for o in options.flatMap({ $0.split(separator: ",") }) {
                switch o {
                case "allow_other": mountOptions.allowOther = true
                case "ro": mountOptions.readOnly = true
                case "rw": mountOptions.readOnly = false
                default: throw CairnError.invalidArgument("unknown mount option '\(o)': use allow_other, ro")
                }
            }
            guard attrTimeout >= 0, entryTimeout >= 0, attrTimeout.isFinite, entryTimeout.isFinite else {
                throw CairnError.invalidArgument("--attr-timeout and --entry-timeout are seconds, 0 or more")
            }
            let timeouts = FuseTimeouts(attributes: attrTimeout, entries: entryTimeout)
            guard name.utf8.count <= Self.nameBytesMax else {
                throw CairnError.invalidArgument("a filesystem name has at most \(Self.nameBytesMax) characters")
            }
            let c = try ClientConfig.resolve(manager: client.manager, secretFile: client.secretFile)
            let mc = ManagerClient(baseURL: c.manager, secret: c.secret, group: Runtime.group)
            let fsVolume = try await mc.volume(name).volume
            guard fsVolume.kind == .filesystem else {
                throw CairnError.invalidArgument("volume '\(name)' is a \(fsVolume.kind.rawValue) volume; create one with --kind filesystem")
            }
            if try FuseSession.cleanStaleMount(mountpoint) {
                FileHandle.standardError.write(Data("cairn: cleaned up a stale mount on \(mountpoint)\n".utf8))
            }
            let mountID = String(format: "%08x", UInt32.random(in: 0...UInt32.max))
            let slices = try await openDataVolume(fsVolume, mountID: mountID, mc: mc, secret: c.secret)
            let store = RemoteMetaStore(managers: c.manager, secret: c.secret, filesystem: name, group: Runtime.group)
            let perFile = Int(min(writeBuffer.bytes, 1 << 30))
            let fs = FileSystem(store: store, prefix: MetaWire.filesystemPrefix(name), data: slices, mountID: mountID,
                                buffering: perFile == 0 ? .none : WriteBufferLimits(perFileBytes: perFile, totalBytes: max(perFile * 8, 64 << 20)),
                                caching: !timeouts.strict, now: Self.wallClock)
            try await fs.ensureRoot(uid: getuid(), gid: getgid())
            try await fs.startSession(MountRecord(host: ProcessInfo.processInfo.hostName, pid: getpid(),
                                                  dataVolume: slices.writer.name, started: Self.wallClock()))
            let grace = gcGrace.value
            let sessionLoop = Task { await Self.keepSession(fs, collectGrace: grace) }
            let admin = ManagerDataVolumes(manager: mc, secret: c.secret)
            let collector = Collector(store: store, prefix: MetaWire.filesystemPrefix(name), admin: admin)
            let interval = gcInterval.value
            let collectLoop = Task {
                await Self.collectPeriodically(fs, collector, sizeOf: admin.writtenBytes, interval: interval, grace: grace)
            }
            let replicas = UInt64(max(fsVolume.replicas, 1))
            let handler = FuseHandler(fs: fs, timeouts: timeouts) {
                // Every byte stored takes `replicas` bytes of the cluster's raw space.
                guard let s = try? await mc.status() else { return (0, 0) }
                return (s.capacityBytes / replicas, s.capacityBytes > s.usedBytes ? (s.capacityBytes - s.usedBytes) / replicas : 0)
            }
            let status = try await GatewayStatus.start(http: http, manager: mc, logger: Runtime.logger("cairn.fuse"),
                                                       role: "fuse")
            defer { Task { await status.stop() } }
            let mountpoint = self.mountpoint
            let options = mountOptions
            let announcement = "mounted \(name) on \(mountpoint) (data volume \(slices.writer.name))"
            // SIGINT/SIGTERM: a lazy unmount, which ends the serving loop.
            let signals = Task {
                let sig = await Runtime.waitForTermination()
                FileHandle.standardError.write(Data("cairn: signal \(sig): unmounting \(mountpoint)\n".utf8))
                try? FuseSession.unmount(mountpoint, lazy: true)
            }
            // After the handler exists: it is the watcher's invalidation handler.
            let cacheWatcher = Task { await fs.runCacheWatcher() }
            let result: Result<Void, Error> = await withCheckedContinuation { cont in
                // libfuse's loop blocks its thread: give it one of its own.
                let t = Thread {
                    cont.resume(returning: Result { try FuseSession.run(handler, mountpoint: mountpoint, options: options) {
                        print(announcement)
                        fflush(nil)
                    } })
                }
                t.start()
            }
            signals.cancel()
            sessionLoop.cancel()
            collectLoop.cancel()
            cacheWatcher.cancel()
            do { try await fs.flushAll() } catch {
                FileHandle.standardError.write(Data("cairn: writes still buffered at unmount were lost: \(error)\n".utf8))
            }
            do { try await fs.endSession() } catch {
                FileHandle.standardError.write(Data("cairn: could not end the mount session (others will in \(FileSystem.deadAfter)): \(error)\n".utf8))
            }
            await slices.close()
            try result.get()
            print("unmounted \(mountpoint)")
        }
    }

    @Sendable static func wallClock() -> FSTime {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return FSTime(nanoseconds: Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec))
    }

    /// The heartbeat of this mount's session record, the sweep that ends dead mounts'
    /// sessions (their locks and holds), the removal of orphans nobody holds, and the
    /// answer to `cairn fs gc` (trimming this mount's own volume), until cancelled.
    static func keepSession(_ fs: FileSystem, collectGrace: Duration) async {
        let clock = ContinuousClock()
        let start = clock.now
        while !Task.isCancelled {
            do {
                if try await !fs.heartbeat() {
                    FileHandle.standardError.write(Data("cairn: this mount was taken for dead (no heartbeat for \(FileSystem.deadAfter)); its locks were dropped\n".utf8))
                }
                let elapsed = clock.now - start
                let nanos = UInt64(elapsed.components.seconds) * 1_000_000_000 + UInt64(elapsed.components.attoseconds / 1_000_000_000)
                for id in try await fs.sweepDeadMounts(monotonicNow: nanos) {
                    FileHandle.standardError.write(Data("cairn: mount \(id) stopped beating: its locks and open-unlinked files were released\n".utf8))
                }
                try await fs.collectOrphans()
                fs.noteAppendMark(monotonicNow: nanos)
                if let trimmed = try await fs.answerCollectRequest(monotonicNow: nanos, grace: collectGrace) {
                    FileHandle.standardError.write(Data("cairn: garbage collection trimmed \(trimmed) bytes of this mount's data volume\n".utf8))
                }
            } catch {
                FileHandle.standardError.write(Data("cairn: mount session heartbeat: \(error)\n".utf8))
            }
            try? await Task.sleep(for: FileSystem.heartbeatInterval)
        }
    }

    /// The timed garbage collection (CairnFS PeriodicCollection.swift), until cancelled:
    /// off the heartbeat loop, because a scan of every map can take longer than a beat.
    static func collectPeriodically(_ fs: FileSystem, _ collector: Collector,
                                    sizeOf: @escaping @Sendable (String) async throws -> UInt64,
                                    interval: Duration, grace: Duration) async {
        guard interval > .zero else { return }
        let clock = ContinuousClock()
        let start = clock.now
        var schedule = CollectionSchedule(interval: interval)
        let tick = min(interval, .seconds(1))
        while !Task.isCancelled {
            let elapsed = clock.now - start
            let nanos = UInt64(elapsed.components.seconds) * 1_000_000_000 + UInt64(elapsed.components.attoseconds / 1_000_000_000)
            if schedule.isDue(monotonicNow: nanos, jitter: Double.random(in: 0...1)) {
                do {
                    let trimmed = try await fs.collectOwnVolume(monotonicNow: nanos, grace: grace)
                    if trimmed > 0 {
                        FileHandle.standardError.write(Data("cairn: timed garbage collection trimmed \(trimmed) bytes of this mount's data volume\n".utf8))
                    }
                    if try await fs.claimEndedCollection(interval: interval) {
                        let r = try await collector.collectEnded(sizeOf: sizeOf)
                        if !r.retired.isEmpty || !r.deleted.isEmpty || r.trimmedBytes > 0 {
                            FileHandle.standardError.write(Data("cairn: timed garbage collection of ended mounts: retired \(r.retired.sorted()), deleted \(r.deleted.sorted()), trimmed \(r.trimmedBytes) bytes\n".utf8))
                        }
                    }
                } catch {
                    FileHandle.standardError.write(Data("cairn: timed garbage collection: \(error)\n".utf8))
                }
            }
            try? await Task.sleep(for: tick)
        }
    }

    /// Creates and attaches this mount's data volume; other mounts' volumes open read-only.
    func openDataVolume(_ fsVolume: VolumeRecord, mountID: String, mc: ManagerClient, secret: String) async throws -> VolumeSliceStore {
        let dataName = "\(name).d.\(mountID)"
        _ = try await mc.createVolume(CreateVolumeRequest(
            name: dataName, sizeBytes: dataVolumeSize.bytes / 4096 * 4096, replicas: fsVolume.replicas,
            replicasMin: fsVolume.replicasMin, kind: .block, requestID: "mount-\(mountID)"))
        let clientID = "fuse-\(ProcessInfo.processInfo.hostName)-\(mountID)"
        let pool = DataConnectionPool(secret: secret, client: clientID, group: Runtime.group)
        var writerOptions = VolumeClientOptions(clientID: clientID)
        writerOptions.localNode = ProcessInfo.processInfo.environment["CAIRN_LOCAL_NODE"]
        writerOptions.frontend = "fuse"
        var readerOptions = writerOptions
        readerOptions.readOnly = true
        readerOptions.refreshMapBeforeHoleRead = true
        let readOnly = readerOptions
        let logger = Runtime.logger("cairn.fuse")
        let writer = try await VolumeClient.open(dataName, control: mc, transport: pool, options: writerOptions, logger: logger)
        return VolumeSliceStore(writer: writer) { volume in
            try await VolumeClient.open(volume, control: mc, transport: pool, options: readOnly, logger: logger)
        }
    }
}

struct UmountCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "umount", abstract: "Unmount a Cairn FUSE mount (its daemon then exits).")
    @Argument var mountpoint: String
    @Flag(help: "For a mount that is busy or whose daemon hangs: abort its FUSE connection (waiting and later calls on it fail with ENOTCONN; the daemon still stores what it buffered when it runs again), then detach it even if files are open.")
    var force = false

    func run() async throws {
        try await runReporting {
            guard force else { return try FuseSession.unmount(mountpoint, lazy: false) }
            try FuseSession.abortConnection(mountpoint)
            try FuseSession.unmount(mountpoint, lazy: true)
        }
    }
}
