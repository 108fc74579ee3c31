// The attach API the CSI node service and `cairn attach` / `cairn detach` call.
import CairnClient
import CairnCore
import Foundation
import NIOPosix

/// What the host offers, as the method selection sees it (a fake in unit tests).
struct HostProbe: Sendable {
    var nbdDevices: @Sendable () -> Bool
    var fuseDevice: @Sendable () -> Bool
    var hasTool: @Sendable (String) -> Bool

    static let live = HostProbe(
        nbdDevices: {
            let names = (try? FileManager.default.contentsOfDirectory(atPath: "/dev")) ?? []
            return names.contains { $0.hasPrefix("nbd") && $0.dropFirst(3).allSatisfy(\.isNumber) && $0.count > 3 }
        },
        fuseDevice: { FileManager.default.fileExists(atPath: "/dev/fuse") },
        hasTool: { SystemTools.which($0) != nil })

    /// NBD needs the kernel client's devices and nbd-client; iSCSI needs iscsiadm; the
    /// fuse-loop fallback needs /dev/fuse, fusermount3 and losetup.
    func availableMethods() -> [AttachMethod] {
        var out: [AttachMethod] = []
        if nbdDevices() && hasTool("nbd-client") { out.append(.nbd) }
        if hasTool("iscsiadm") { out.append(.iscsi) }
        if hasTool("losetup") && hasTool("fusermount3") && hasTool("setsid") && fuseDevice() {
            out.append(.fuseLoop)
        }
        return out
    }
}

/// The method to use: the requested one if the host has it, else the first available.
func chooseMethod(requested: AttachMethod?, available: [AttachMethod]) throws -> AttachMethod {
    if let requested {
        guard available.contains(requested) else {
            throw CairnError.unavailable("attach method \(requested.rawValue) is not available on this host "
                + "(available: \(available.map(\.rawValue).joined(separator: ", ").ifEmpty("none")))")
        }
        return requested
    }
    guard let first = available.first else {
        throw CairnError.unavailable("no attach method on this host: need /dev/nbd* and nbd-client, iscsiadm, or /dev/fuse with losetup")
    }
    return first
}

extension String {
    func ifEmpty(_ other: String) -> String { isEmpty ? other : self }
}

/// A method's operations. Each is idempotent over the record it is given.
protocol AttachBackend: Sendable {
    /// Sets the device up; `record` is already saved with an empty device path.
    func attach(_ record: Attachment) async throws -> Attachment
    /// Whether everything the record names is alive and serving.
    func healthy(_ record: Attachment) -> Bool
    /// Tears down whatever of the record still exists. Throws `conflict` while the device
    /// is mounted or otherwise held.
    func detach(_ record: Attachment) async throws
    /// Makes the device show the volume's current size; returns it.
    func refreshSize(_ record: Attachment, sizeBytes: UInt64) async throws
}

public struct Attacher: Sendable {
    public let options: AttachOptions
    let store: AttachmentStore
    let probe: HostProbe
    /// How long attach/detach wait for another process working on the same volume.
    static let lockTimeout: Duration = .seconds(120)

    public init(options: AttachOptions) {
        self.init(options: options, probe: .live)
    }

    init(options: AttachOptions, probe: HostProbe) {
        self.options = options
        self.store = AttachmentStore(directory: options.stateDirectory)
        self.probe = probe
    }

    public static func availableMethods() -> [AttachMethod] { HostProbe.live.availableMethods() }

    var manager: ManagerClient {
        ManagerClient(baseURL: options.managers.joined(separator: ","), secret: options.secret,
                      group: MultiThreadedEventLoopGroup.singleton)
    }

    func backend(_ method: AttachMethod) -> AttachBackend {
        switch method {
        case .nbd: return NBDAttach(options: options)
        case .iscsi: return ISCSIAttach(options: options)
        case .fuseLoop: return FuseLoopAttach(options: options, store: store)
        }
    }

    /// Attaches the volume, or returns its existing healthy attachment. An attachment left
    /// broken (its daemon died, its device vanished) is torn down and made again. An
    /// existing attachment with the other access mode is a `conflict`.
    public func attach(volume: String, method: AttachMethod? = nil, readOnly: Bool = false) async throws -> Attachment {
        try validateVolumeName(volume)
        return try await store.withLock(volume, timeout: Self.lockTimeout) {
            if let existing = store.load(volume) {
                let b = backend(existing.method)
                if !existing.devicePath.isEmpty && b.healthy(existing) {
                    guard existing.readOnly == readOnly else {
                        throw CairnError.conflict("volume '\(volume)' is attached \(existing.readOnly ? "read-only" : "read-write") "
                            + "at \(existing.devicePath); detach it first")
                    }
                    if let method, method != existing.method {
                        throw CairnError.conflict("volume '\(volume)' is attached with \(existing.method.rawValue) at \(existing.devicePath); detach it first")
                    }
                    return existing
                }
                try await b.detach(existing)
                try store.remove(volume)
            }
            let chosen = try chooseMethod(requested: method, available: probe.availableMethods())
            let v: VolumeRecord
            do {
                v = try await manager.volume(volume).volume
            } catch CairnError.notFound {
                throw CairnError.notFound("no volume named '\(volume)'")
            }
            guard v.kind == .block else {
                throw CairnError.invalidArgument("volume '\(volume)' is a \(v.kind.rawValue) volume, not a block volume")
            }
            guard readOnly || !v.readOnly else {
                throw CairnError.invalidArgument("volume '\(volume)' is read-only; attach it with read-only access")
            }
            let record = Attachment(volume: volume, method: chosen, devicePath: "", readOnly: readOnly)
            try store.save(record)
            do {
                let attached = try await backend(chosen).attach(record)
                try store.save(attached)
                return attached
            } catch {
                // Leave nothing behind: what the failed attempt started is torn down.
                let partial = store.load(volume) ?? record
                try? await backend(chosen).detach(partial)
                try? store.remove(volume)
                throw error
            }
        }
    }

    /// Tears the attachment down. Detaching a volume that is not attached succeeds. A
    /// device still mounted (or held open exclusively) is a `conflict`: unmount it first.
    public func detach(volume: String) async throws {
        try validateVolumeName(volume)
        try await store.withLock(volume, timeout: Self.lockTimeout) {
            guard let existing = store.load(volume) else {
                try store.remove(volume)
                return
            }
            try await backend(existing.method).detach(existing)
            try store.remove(volume)
        }
    }

    /// The volume's attachment as recorded (whether or not it is still healthy; see
    /// `isHealthy`). Survives restarts of the caller.
    public func attachment(volume: String) -> Attachment? {
        guard (try? validateVolumeName(volume)) != nil, let a = store.load(volume), !a.devicePath.isEmpty else { return nil }
        return a
    }

    /// Every recorded attachment.
    public func attachments() -> [Attachment] { store.volumes().compactMap { attachment(volume: $0) } }

    /// Whether the attachment's daemon, mount and device are all alive.
    public func isHealthy(_ a: Attachment) -> Bool { backend(a.method).healthy(a) }

    /// After the volume grew: makes the device show the volume's new size (the FUSE file
    /// grows, then `losetup -c`; the kernel NBD and iSCSI clients re-read the size).
    /// Returns the size in bytes.
    @discardableResult
    public func refreshSize(volume: String) async throws -> UInt64 {
        try validateVolumeName(volume)
        return try await store.withLock(volume, timeout: Self.lockTimeout) {
            guard let a = store.load(volume), !a.devicePath.isEmpty else {
                throw CairnError.notFound("volume '\(volume)' is not attached on this host")
            }
            let size = try await manager.volume(volume).volume.sizeBytes
            try await backend(a.method).refreshSize(a, sizeBytes: size)
            return size
        }
    }
}
