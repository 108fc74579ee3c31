// DeviceAttacher over CairnAttach: NBD, iSCSI or the fuse-loop fallback, each run by
// daemons outside the plugin, recorded in the attach state directory.
import CairnAttach
import CairnCore

public struct CairnAttacher: DeviceAttacher {
    let attacher: Attacher

    public init(options: AttachOptions) { attacher = Attacher(options: options) }

    public func attach(volume: String, method: String?, readOnly: Bool) async throws -> AttachedDevice {
        var chosen: AttachMethod?
        if let m = method {
            guard let parsed = AttachMethod(rawValue: m) else {
                throw CSIError.invalid("attach method '\(m)': use \(AttachMethod.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            chosen = parsed
        }
        do {
            let a = try await attacher.attach(volume: volume, method: chosen, readOnly: readOnly)
            return AttachedDevice(devicePath: a.devicePath, method: a.method.rawValue)
        } catch CairnError.conflict(let m) {
            // Attached elsewhere (another writer) or here with another mode.
            throw CSIError(.failedPrecondition, m)
        }
    }

    public func detach(volume: String) async throws {
        do { try await attacher.detach(volume: volume) } catch CairnError.conflict(let m) {
            throw CSIError(.failedPrecondition, m)
        }
    }

    public func attached(volume: String) -> AttachedDevice? {
        attacher.attachment(volume: volume).map { AttachedDevice(devicePath: $0.devicePath, method: $0.method.rawValue) }
    }

    public func refreshSize(volume: String) async throws -> UInt64 {
        try await attacher.refreshSize(volume: volume)
    }
}
