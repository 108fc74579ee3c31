// Pure parsing and checking of what a CO asks for: StorageClass parameters, capacity
// ranges, volume capabilities, volume names and paging tokens.
import CairnCSIProto
import CairnCore

/// Limits the plugin states in GetCapacity and enforces in CreateVolume.
public enum CSILimits {
    /// Capacities are rounded up to this (the manager's block size; volumes are thin).
    public static let allocationUnitBytes: UInt64 = 4096
    /// A request without a capacity range gets this.
    public static let defaultVolumeBytes: UInt64 = 1 << 30
    /// The smallest volume: mkfs.xfs needs 300 MiB, so smaller filesystems fail late.
    public static let volumeBytesMin: UInt64 = 1 << 20
    /// The largest volume a CO may ask for.
    public static let volumeBytesMax: UInt64 = 256 << 40
    /// The most entries one ListVolumes/ListSnapshots page holds.
    public static let pageEntriesMax = 1000
    /// The most volumes one node stages (NodeGetInfo.max_volumes_per_node).
    public static let volumesPerNodeMax: Int64 = 256
    /// The topology key of a node's zone.
    public static let zoneKey = "topology.cairn.io/zone"
}

/// How a volume reaches a pod.
public enum VolumeAccess: String, Codable, Sendable {
    /// A raw block device (VolumeCapability.block).
    case block
    /// A local filesystem (ext4/xfs) on an attached device; one node at a time.
    case mount
    /// The shared FUSE filesystem of a filesystem volume; any number of nodes.
    case shared
}

/// The StorageClass parameters, normalised (what decides "same volume" in CreateVolume).
public struct VolumeParameters: Codable, Sendable, Equatable {
    public var replicas: Int?
    public var replicasMin: Int?
    public var kind: VolumeKind
    public var fsType: String
    public var attachMethod: String?

    public static let fsTypes = ["ext4", "xfs"]
    public static let attachMethods = ["nbd", "iscsi", "fuse-loop"]
    public static let keys = ["replicas", "minReplicas", "kind", "fsType", "attachMethod"]

    /// Parses `parameters`; `kind` defaults to filesystem when a capability needs several
    /// writing nodes on a mount, to block otherwise.
    public static func parse(_ parameters: [String: String], capabilities: [Csi_V1_VolumeCapability]) throws -> VolumeParameters {
        for key in parameters.keys where !keys.contains(key) && !key.hasPrefix("csi.storage.k8s.io/") {
            throw CSIError.invalid("unknown parameter '\(key)': use \(keys.joined(separator: ", "))")
        }
        func int(_ key: String, _ range: ClosedRange<Int>) throws -> Int? {
            guard let text = parameters[key] else { return nil }
            guard let v = Int(text), range.contains(v) else {
                throw CSIError.invalid("parameter \(key)='\(text)' must be a number from \(range.lowerBound) to \(range.upperBound)")
            }
            return v
        }
        let replicas = try int("replicas", 1...5)
        let replicasMin = try int("minReplicas", 1...5)
        if let r = replicas, let m = replicasMin, m > r {
            throw CSIError.invalid("parameter minReplicas=\(m) exceeds replicas=\(r)")
        }
        let kind: VolumeKind
        if let text = parameters["kind"] {
            guard let k = VolumeKind(rawValue: text) else {
                throw CSIError.invalid("parameter kind='\(text)': use block or filesystem")
            }
            kind = k
        } else {
            kind = capabilities.contains(where: { $0.isMount && $0.accessMode.mode.isMultiNode }) ? .filesystem : .block
        }
        let fsType = parameters["fsType"] ?? "ext4"
        guard fsTypes.contains(fsType) else {
            throw CSIError.invalid("parameter fsType='\(fsType)': use \(fsTypes.joined(separator: " or "))")
        }
        // "auto" (or none): the node picks the first method its host has.
        let method = parameters["attachMethod"].flatMap { $0 == "auto" ? nil : $0 }
        if let m = method, !attachMethods.contains(m) {
            throw CSIError.invalid("parameter attachMethod='\(m)': use auto, \(attachMethods.joined(separator: ", "))")
        }
        return VolumeParameters(replicas: replicas, replicasMin: replicasMin, kind: kind, fsType: fsType, attachMethod: method)
    }

    /// What the node needs to stage the volume (CreateVolumeResponse.volume_context).
    public var volumeContext: [String: String] {
        var c = ["kind": kind.rawValue, "fsType": fsType]
        if let m = attachMethod { c["attachMethod"] = m }
        return c
    }
}

extension Csi_V1_VolumeCapability.AccessMode.Mode {
    /// Several nodes may use the volume at once.
    public var isMultiNode: Bool {
        self == .multiNodeReaderOnly || self == .multiNodeSingleWriter || self == .multiNodeMultiWriter
    }
    /// No node writes.
    public var isReadOnly: Bool { self == .singleNodeReaderOnly || self == .multiNodeReaderOnly }
    var isKnown: Bool {
        if case .UNRECOGNIZED = self { return false }
        return self != .unknown
    }
}

extension Csi_V1_VolumeCapability {
    var isMount: Bool { if case .mount? = accessType { return true } else { return false } }
    var isBlock: Bool { if case .block? = accessType { return true } else { return false } }

    /// How a volume of `kind` serves this capability, or why it cannot.
    public func access(for kind: VolumeKind) -> Result<VolumeAccess, CSIError> {
        let mode = accessMode.mode
        guard hasAccessMode, mode.isKnown else { return .failure(.invalid("a volume capability needs an access mode")) }
        switch accessType {
        case nil:
            return .failure(.invalid("a volume capability needs an access type (block or mount)"))
        case .block?:
            guard kind == .block else {
                return .failure(.invalid("a filesystem volume cannot be used as a raw block device"))
            }
            // One writer at a time: the manager fences a second one, so a block volume
            // written on several nodes would lose writes.
            guard mode != .multiNodeMultiWriter && mode != .multiNodeSingleWriter else {
                return .failure(.invalid("a block volume has one writer at a time: use a single-node or reader-only access mode"))
            }
            return .success(.block)
        case .mount(let m)?:
            if kind == .filesystem {
                guard m.fsType.isEmpty || m.fsType == "cairnfs" || m.fsType == "fuse" else {
                    return .failure(.invalid("a filesystem volume mounts as the shared Cairn filesystem, not \(m.fsType)"))
                }
                return .success(.shared)
            }
            guard m.fsType.isEmpty || VolumeParameters.fsTypes.contains(m.fsType) else {
                return .failure(.invalid("filesystem type '\(m.fsType)': use \(VolumeParameters.fsTypes.joined(separator: " or "))"))
            }
            guard !mode.isMultiNode || mode.isReadOnly else {
                return .failure(.invalid("ext4/xfs on a block volume has one node at a time: use kind=filesystem for several writing nodes"))
            }
            return .success(.mount)
        }
    }
}

/// Checks a list of capabilities: not empty, each one valid for `kind`.
func checkCapabilities(_ caps: [Csi_V1_VolumeCapability], kind: VolumeKind) throws {
    guard !caps.isEmpty else { throw CSIError.invalid("volume_capabilities is empty") }
    for c in caps { _ = try c.access(for: kind).get() }
}

/// Capacity ranges, rounded to the allocation unit.
enum Capacity {
    /// The size to create: required_bytes (or, without it, the default capped by
    /// limit_bytes) rounded up to the allocation unit; OUT_OF_RANGE past limit_bytes or
    /// the largest volume.
    static func size(_ range: Csi_V1_CapacityRange?, minimum: UInt64 = CSILimits.volumeBytesMin) throws -> UInt64 {
        guard let r = range, r.requiredBytes != 0 || r.limitBytes != 0 else { return CSILimits.defaultVolumeBytes }
        guard r.requiredBytes >= 0, r.limitBytes >= 0 else { throw CSIError.invalid("capacity_range has a negative size") }
        let unit = CSILimits.allocationUnitBytes
        var required = UInt64(r.requiredBytes)
        if required == 0 { required = min(CSILimits.defaultVolumeBytes, UInt64(r.limitBytes) / unit * unit) }
        required = max(required, minimum)
        guard required <= CSILimits.volumeBytesMax else {
            throw CSIError(.outOfRange, "\(required) bytes exceed the largest volume, \(CSILimits.volumeBytesMax) bytes")
        }
        let rounded = (required + unit - 1) / unit * unit
        if r.limitBytes != 0 && UInt64(r.limitBytes) < rounded {
            throw CSIError(.outOfRange, "limit_bytes \(r.limitBytes) is below \(rounded), the size this plugin would create")
        }
        return rounded
    }

    /// Whether an existing volume of `bytes` satisfies the range.
    static func fits(_ bytes: UInt64, _ range: Csi_V1_CapacityRange?) -> Bool {
        guard let r = range else { return true }
        if r.requiredBytes > 0 && bytes < UInt64(r.requiredBytes) { return false }
        if r.limitBytes > 0 && bytes > UInt64(r.limitBytes) { return false }
        return true
    }
}

/// CSI names (up to 128 characters of anything) to Cairn volume names.
public enum VolumeNames {
    /// The name itself when it is a valid Cairn name short enough for `kind`, otherwise
    /// "csi-" and 16 hex digits of its FNV-1a hash, so a retry maps to the same volume.
    public static func cairnName(_ csiName: String, kind: VolumeKind) -> String {
        let maxBytes = kind == .filesystem ? 52 : 63   // a filesystem's data volumes add 11
        let allowed = Set("abcdefghijklmnopqrstuvwxyz0123456789.-")
        if csiName.utf8.count <= maxBytes, let first = csiName.first, first.isLetter || first.isNumber,
           csiName.allSatisfy({ allowed.contains($0) }) {
            return csiName
        }
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in csiName.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        let hex = String(h, radix: 16)
        return "csi-" + String(repeating: "0", count: 16 - hex.count) + hex
    }
}

/// Paging tokens: the name of the last entry of the previous page.
enum PageToken {
    static let prefix = "after:"
    static func make(after name: String) -> String { prefix + name }
    /// nil for the first page; ABORTED for a token this plugin did not make.
    static func parse(_ token: String) throws -> String? {
        guard !token.isEmpty else { return nil }
        guard token.hasPrefix(prefix), token.count > prefix.count else {
            throw CSIError(.aborted, "starting_token '\(token)' was not made by this plugin")
        }
        return String(token.dropFirst(prefix.count))
    }
    /// One page of `sorted` items named by `name`, and the token of the next page.
    static func page<T>(_ sorted: [T], name: (T) -> String, startingToken: String, maxEntries: Int32) throws -> ([T], String) {
        guard maxEntries >= 0 else { throw CSIError.invalid("max_entries is negative") }
        let after = try parse(startingToken)
        let rest = after.map { a in sorted.filter { name($0) > a } } ?? sorted
        let limit = maxEntries == 0 ? CSILimits.pageEntriesMax : min(Int(maxEntries), CSILimits.pageEntriesMax)
        let page = Array(rest.prefix(limit))
        let next = rest.count > page.count ? make(after: name(page[page.count - 1])) : ""
        return (page, next)
    }
}
