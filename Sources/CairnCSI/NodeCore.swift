// The Node service's logic. What is staged where is read back from the kernel
// (/proc/self/mountinfo) and from small records in the state directory, never from
// memory, so every call gives the same answer after a restart of the plugin. Mount and
// attach daemons run in their own sessions, outside the plugin.
import CairnCSIProto
import CairnCore
import Foundation

/// A volume attached as a local block device.
public struct AttachedDevice: Sendable, Equatable {
    public var devicePath: String
    public var method: String
    public init(devicePath: String, method: String) { self.devicePath = devicePath; self.method = method }
}

/// Attaches volumes as block devices on this host (CairnAttach in production).
public protocol DeviceAttacher: Sendable {
    /// Idempotent: an attached volume answers its device.
    func attach(volume: String, method: String?, readOnly: Bool) async throws -> AttachedDevice
    /// Idempotent: a detached volume is fine.
    func detach(volume: String) async throws
    func attached(volume: String) -> AttachedDevice?
    /// Makes the device show the volume's current size; the new size in bytes.
    func refreshSize(volume: String) async throws -> UInt64
}

/// What NodeStageVolume did, kept in STATE/volumes/NAME.json.
public struct StageRecord: Codable, Sendable, Equatable {
    public var volume: String
    public var stagingPath: String
    public var access: VolumeAccess
    public var devicePath: String?
    public var fsType: String?
    /// The `cairn mount` daemon of a shared filesystem.
    public var daemonPID: Int32?
    public var readOnly: Bool
}

/// Calls on one volume run one at a time; a second one meanwhile gets ABORTED, as the
/// spec asks ("an operation is pending for the volume").
final class VolumeOperations: Sendable {
    private let busy = Locked<Set<String>>([])
    func run<T>(_ volume: String, _ body: () async throws -> T) async throws -> T {
        let taken = busy.withLock { $0.insert(volume).inserted }
        guard taken else { throw CSIError(.aborted, "an operation on volume '\(volume)' is in progress") }
        defer { _ = busy.withLock { $0.remove(volume) } }
        return try await body()
    }
}

public struct NodeOptions: Sendable {
    public var nodeID: String
    public var zone: String?
    public var stateDirectory: String
    /// The `cairn` executable, to start `cairn mount` daemons.
    public var cairnBinary: String
    /// CAIRN_MANAGER and CAIRN_SECRET for those daemons.
    public var daemonEnvironment: [String: String]
    /// How long a new FUSE mount may take to appear.
    public var mountTimeout: Duration = .seconds(60)
    public init(nodeID: String, zone: String?, stateDirectory: String, cairnBinary: String, daemonEnvironment: [String: String]) {
        self.nodeID = nodeID; self.zone = zone; self.stateDirectory = stateDirectory
        self.cairnBinary = cairnBinary; self.daemonEnvironment = daemonEnvironment
    }
}

public struct NodeCore: Sendable {
    let options: NodeOptions
    let system: NodeSystem
    let attacher: DeviceAttacher?
    let operations = VolumeOperations()

    public init(options: NodeOptions, system: NodeSystem, attacher: DeviceAttacher?) {
        self.options = options; self.system = system; self.attacher = attacher
    }

    func recordPath(_ volume: String) -> String { "\(options.stateDirectory)/volumes/\(volume).json" }
    func logPath(_ volume: String) -> String { "\(options.stateDirectory)/logs/\(volume).log" }

    func record(_ volume: String) throws -> StageRecord? {
        guard let bytes = try system.read(recordPath(volume)) else { return nil }
        return try JSONDecoder().decode(StageRecord.self, from: Data(bytes))
    }

    func save(_ r: StageRecord) throws {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .prettyPrinted]
        try system.write(recordPath(r.volume), [UInt8](try e.encode(r)))
    }

    // MARK: Info

    public func getInfo() -> Csi_V1_NodeGetInfoResponse {
        .with { r in
            r.nodeID = options.nodeID
            r.maxVolumesPerNode = CSILimits.volumesPerNodeMax
            if let z = options.zone { r.accessibleTopology = .with { $0.segments = [CSILimits.zoneKey: z] } }
        }
    }

    public static func getCapabilities() -> Csi_V1_NodeGetCapabilitiesResponse {
        let types: [Csi_V1_NodeServiceCapability.RPC.TypeEnum] = [
            .stageUnstageVolume, .expandVolume, .getVolumeStats, .volumeCondition, .singleNodeMultiWriter,
        ]
        return .with { r in r.capabilities = types.map { t in .with { $0.rpc = .with { $0.type = t } } } }
    }

    // MARK: Stage

    public func stage(_ req: Csi_V1_NodeStageVolumeRequest) async throws -> Csi_V1_NodeStageVolumeResponse {
        guard !req.volumeID.isEmpty else { throw CSIError.invalid("volume_id is missing") }
        guard !req.stagingTargetPath.isEmpty else { throw CSIError.invalid("staging_target_path is missing") }
        guard req.hasVolumeCapability else { throw CSIError.invalid("volume_capability is missing") }
        let kind = VolumeKind(rawValue: req.volumeContext["kind"] ?? "") ?? .block
        let access = try req.volumeCapability.access(for: kind).get()
        let readOnly = req.volumeCapability.accessMode.mode.isReadOnly || req.publishContext["readonly"] == "true"
        let staging = MountInfo.normalise(req.stagingTargetPath)
        return try await operations.run(req.volumeID) {
            if let r = try record(req.volumeID) {
                guard r.stagingPath == staging, r.access == access else {
                    throw CSIError(.alreadyExists, "volume '\(req.volumeID)' is staged at \(r.stagingPath) as \(r.access.rawValue)")
                }
            }
            switch access {
            case .shared: try await stageShared(req.volumeID, staging: staging, readOnly: readOnly)
            case .mount: try await stageMount(req, staging: staging, readOnly: readOnly)
            case .block: try await stageBlock(req, staging: staging, readOnly: readOnly)
            }
            return .init()
        }
    }

    /// The shared filesystem: a `cairn mount` daemon at the staging path.
    func stageShared(_ volume: String, staging: String, readOnly: Bool) async throws {
        if let m = MountInfo.mount(at: staging, in: try system.mounts()), m.fsType.hasPrefix("fuse") {
            if (try? system.usage(staging)) != nil { return }   // staged and serving
            // A daemon that died leaves "Transport endpoint is not connected": clean it up.
            _ = try system.run(["umount", "-l", staging])
        }
        try system.makeDirectory(staging)
        try system.makeDirectory("\(options.stateDirectory)/logs")
        var argv = [options.cairnBinary, "mount", volume, staging, "-o", "allow_other"]
        if readOnly { argv += ["-o", "ro"] }
        let pid = try system.spawnDaemon(argv, environment: options.daemonEnvironment, log: logPath(volume))
        try save(StageRecord(volume: volume, stagingPath: staging, access: .shared, daemonPID: pid, readOnly: readOnly))
        let clock = ContinuousClock()
        let deadline = clock.now + options.mountTimeout
        while clock.now < deadline {
            if let m = MountInfo.mount(at: staging, in: try system.mounts()), m.fsType.hasPrefix("fuse") { return }
            guard system.isAlive(pid) else {
                throw CSIError(.internalError, "cairn mount of '\(volume)' exited: \(logTail(volume))")
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw CSIError(.deadlineExceeded, "cairn mount of '\(volume)' did not mount within \(options.mountTimeout)")
    }

    func logTail(_ volume: String) -> String {
        let text = String(decoding: (try? system.read(logPath(volume))) ?? [], as: UTF8.self)
        return text.split(separator: "\n").suffix(3).joined(separator: " | ")
    }

    func attacherOrFail() throws -> DeviceAttacher {
        guard let a = attacher else {
            throw CSIError(.failedPrecondition, "this node cannot attach block devices (no attach method available)")
        }
        return a
    }

    /// A raw device: attach it and remember where.
    func stageBlock(_ req: Csi_V1_NodeStageVolumeRequest, staging: String, readOnly: Bool) async throws {
        let dev = try await attacherOrFail().attach(volume: req.volumeID, method: req.volumeContext["attachMethod"], readOnly: readOnly)
        try system.makeDirectory(staging)
        try save(StageRecord(volume: req.volumeID, stagingPath: staging, access: .block, devicePath: dev.devicePath,
                             readOnly: readOnly))
    }

    /// ext4/xfs: attach, make the filesystem only on a device without one, mount.
    func stageMount(_ req: Csi_V1_NodeStageVolumeRequest, staging: String, readOnly: Bool) async throws {
        let dev = try await attacherOrFail().attach(volume: req.volumeID, method: req.volumeContext["attachMethod"], readOnly: readOnly)
        let mount = req.volumeCapability.mount
        let wanted = !mount.fsType.isEmpty ? mount.fsType : (req.volumeContext["fsType"] ?? "ext4")
        try save(StageRecord(volume: req.volumeID, stagingPath: staging, access: .mount, devicePath: dev.devicePath,
                             fsType: wanted, readOnly: readOnly))
        if let m = MountInfo.mount(at: staging, in: try system.mounts()) {
            guard m.source == dev.devicePath else {
                throw CSIError(.alreadyExists, "\(staging) already holds \(m.source), not \(dev.devicePath)")
            }
            return
        }
        let found = try existingFilesystem(dev.devicePath)
        let fsType = found ?? wanted
        if found == nil {
            guard !readOnly else { throw CSIError(.failedPrecondition, "volume '\(req.volumeID)' has no filesystem and is read-only") }
            let mkfs = fsType == "xfs" ? ["mkfs.xfs", "-q", dev.devicePath] : ["mkfs.ext4", "-q", "-F", dev.devicePath]
            let r = try system.run(mkfs)
            guard r.status == 0 else { throw CSIError(.internalError, "\(mkfs[0]) failed: \(r.output)") }
        }
        try system.makeDirectory(staging)
        var opts = mount.mountFlags
        if readOnly { opts.append("ro") }
        var argv = ["mount", "-t", fsType]
        if !opts.isEmpty { argv += ["-o", opts.joined(separator: ",")] }
        argv += [dev.devicePath, staging]
        let r = try system.run(argv)
        guard r.status == 0 else { throw CSIError(.internalError, "mount failed: \(r.output)") }
    }

    /// The filesystem type blkid finds on the device, nil if none. Never guesses: any
    /// other blkid failure stops the stage instead of formatting over data.
    func existingFilesystem(_ device: String) throws -> String? {
        let r = try system.run(["blkid", "-p", "-s", "TYPE", "-o", "value", device])
        switch r.status {
        case 0: return r.output.trimmingCharacters(in: .whitespacesAndNewlines)
        case 2: return nil   // blkid: nothing found
        default: throw CSIError(.internalError, "blkid -p \(device) failed (\(r.status)): \(r.output)")
        }
    }

    public func unstage(_ req: Csi_V1_NodeUnstageVolumeRequest) async throws -> Csi_V1_NodeUnstageVolumeResponse {
        guard !req.volumeID.isEmpty else { throw CSIError.invalid("volume_id is missing") }
        guard !req.stagingTargetPath.isEmpty else { throw CSIError.invalid("staging_target_path is missing") }
        let staging = MountInfo.normalise(req.stagingTargetPath)
        return try await operations.run(req.volumeID) {
            let r = try record(req.volumeID)
            while MountInfo.mount(at: staging, in: try system.mounts()) != nil {
                let u = try system.run(["umount", staging])
                guard u.status == 0 else { throw CSIError(.failedPrecondition, "umount \(staging): \(u.output)") }
            }
            if let pid = r?.daemonPID { try await waitForExit(pid) }
            if r?.access == .block || r?.access == .mount { try await attacher?.detach(volume: req.volumeID) }
            try system.remove(recordPath(req.volumeID))
            return .init()
        }
    }

    /// A `cairn mount` daemon ends once its mount is gone; give it a moment, then stop it.
    func waitForExit(_ pid: Int32) async throws {
        for _ in 0..<100 where system.isAlive(pid) { try await Task.sleep(for: .milliseconds(100)) }
        if system.isAlive(pid) { _ = try system.run(["kill", "\(pid)"]) }
    }

    // MARK: Publish

    public func publish(_ req: Csi_V1_NodePublishVolumeRequest) async throws -> Csi_V1_NodePublishVolumeResponse {
        guard !req.volumeID.isEmpty else { throw CSIError.invalid("volume_id is missing") }
        guard !req.targetPath.isEmpty else { throw CSIError.invalid("target_path is missing") }
        guard !req.stagingTargetPath.isEmpty else { throw CSIError.invalid("staging_target_path is missing") }
        guard req.hasVolumeCapability else { throw CSIError.invalid("volume_capability is missing") }
        let target = MountInfo.normalise(req.targetPath)
        return try await operations.run(req.volumeID) {
            guard let r = try record(req.volumeID) else {
                throw CSIError(.failedPrecondition, "volume '\(req.volumeID)' is not staged on this node")
            }
            let readOnly = req.readonly || r.readOnly
            let source: String
            if r.access == .block {
                guard let dev = r.devicePath else { throw CSIError(.internalError, "stage record of '\(r.volume)' has no device") }
                source = dev
            } else {
                guard MountInfo.mount(at: r.stagingPath, in: try system.mounts()) != nil else {
                    throw CSIError(.failedPrecondition, "volume '\(req.volumeID)' is not mounted at \(r.stagingPath)")
                }
                source = r.stagingPath
            }
            if let m = MountInfo.mount(at: target, in: try system.mounts()) {
                guard m.readOnly == readOnly else {
                    throw CSIError(.alreadyExists, "\(target) is already published \(m.readOnly ? "read-only" : "read-write")")
                }
                return .init()
            }
            if r.access == .block { try system.makeFile(target) } else { try system.makeDirectory(target) }
            var flags = r.access == .block ? [] : req.volumeCapability.mount.mountFlags
            flags = flags.filter { $0 != "bind" && $0 != "ro" && $0 != "rw" }
            try mount(["--bind", source, target])
            if readOnly || !flags.isEmpty {
                try mount(["-o", (["remount", "bind"] + (readOnly ? ["ro"] : []) + flags).joined(separator: ","), target])
            }
            return .init()
        }
    }

    func mount(_ args: [String]) throws {
        let r = try system.run(["mount"] + args)
        guard r.status == 0 else { throw CSIError(.internalError, "mount \(args.joined(separator: " ")): \(r.output)") }
    }

    public func unpublish(_ req: Csi_V1_NodeUnpublishVolumeRequest) async throws -> Csi_V1_NodeUnpublishVolumeResponse {
        guard !req.volumeID.isEmpty else { throw CSIError.invalid("volume_id is missing") }
        guard !req.targetPath.isEmpty else { throw CSIError.invalid("target_path is missing") }
        let target = MountInfo.normalise(req.targetPath)
        return try await operations.run(req.volumeID) {
            while MountInfo.mount(at: target, in: try system.mounts()) != nil {
                let u = try system.run(["umount", target])
                guard u.status == 0 else { throw CSIError(.internalError, "umount \(target): \(u.output)") }
            }
            try system.remove(target)
            return .init()
        }
    }

    // MARK: Stats and expansion

    public func stats(_ req: Csi_V1_NodeGetVolumeStatsRequest) async throws -> Csi_V1_NodeGetVolumeStatsResponse {
        guard !req.volumeID.isEmpty else { throw CSIError.invalid("volume_id is missing") }
        guard !req.volumePath.isEmpty else { throw CSIError.invalid("volume_path is missing") }
        let path = MountInfo.normalise(req.volumePath)
        guard system.fileExists(path).exists else { throw CSIError.notFound("\(path) does not exist") }
        guard let r = try record(req.volumeID) else { throw CSIError.notFound("volume '\(req.volumeID)' is not staged here") }
        if r.access == .block {
            let size = try system.run(["blockdev", "--getsize64", r.devicePath ?? path])
            guard size.status == 0, let bytes = Int64(size.output.trimmingCharacters(in: .whitespacesAndNewlines)) else {
                return .with { $0.volumeCondition = .with { $0.abnormal = true; $0.message = "device unreadable: \(size.output)" } }
            }
            return .with { s in
                s.usage = [.with { $0.unit = .bytes; $0.total = bytes }]
                s.volumeCondition = .with { $0.abnormal = false; $0.message = "attached at \(r.devicePath ?? "?")" }
            }
        }
        do {
            let u = try system.usage(path)
            return .with { s in
                s.usage = [
                    .with { $0.unit = .bytes; $0.total = Int64(u.totalBytes); $0.available = Int64(u.availableBytes); $0.used = Int64(u.usedBytes) },
                    .with { $0.unit = .inodes; $0.total = Int64(u.totalInodes); $0.available = Int64(u.freeInodes)
                        $0.used = Int64(u.totalInodes > u.freeInodes ? u.totalInodes - u.freeInodes : 0) },
                ]
                s.volumeCondition = .with { $0.abnormal = false; $0.message = "mounted" }
            }
        } catch let e as CSIError where e.code != .notFound {
            return .with { $0.volumeCondition = .with { $0.abnormal = true; $0.message = e.message } }
        }
    }

    public func expand(_ req: Csi_V1_NodeExpandVolumeRequest) async throws -> Csi_V1_NodeExpandVolumeResponse {
        guard !req.volumeID.isEmpty else { throw CSIError.invalid("volume_id is missing") }
        guard !req.volumePath.isEmpty else { throw CSIError.invalid("volume_path is missing") }
        guard let r = try record(req.volumeID) else { throw CSIError.notFound("volume '\(req.volumeID)' is not staged here") }
        guard system.fileExists(req.volumePath).exists else { throw CSIError.notFound("\(req.volumePath) does not exist") }
        return try await operations.run(req.volumeID) {
            guard r.access != .shared else { return .init() }   // the shared filesystem has no size of its own
            let bytes = try await attacherOrFail().refreshSize(volume: r.volume)
            if r.access == .mount, let dev = r.devicePath {
                let grow = r.fsType == "xfs" ? ["xfs_growfs", r.stagingPath] : ["resize2fs", dev]
                let g = try system.run(grow)
                guard g.status == 0 else { throw CSIError(.internalError, "\(grow[0]) failed: \(g.output)") }
            }
            return .with { $0.capacityBytes = Int64(bytes) }
        }
    }
}
