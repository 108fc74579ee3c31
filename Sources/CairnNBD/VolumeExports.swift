// Exports backed by volumes: every block volume the manager knows is an export of the same
// name. One VolumeClient per export is shared by all its connections, opened on the first
// GO and closed (detached) when the last connection ends. Sharing the client is what makes
// CAN_MULTI_CONN true: every write acknowledged on any connection is already durable on
// all replicas, so a FLUSH on any connection covers it.
//
// The gateway attaches as writer with force=false under one stable client id, so a
// restarted gateway takes its own attachment back, but a volume written by someone else
// (the CLI, another gateway) is refused with a clear message rather than fenced.
import CairnClient
import CairnCore
import Logging
import NIOCore

public actor VolumeExports: NBDExportProvider {
    let control: ManagerClient
    let transport: ReplicaTransport
    let clientID: String
    let localNode: NodeID?
    let logger: Logger

    enum Entry {
        case opening(Task<VolumeDevice, Error>, refs: Int)
        case open(VolumeDevice, refs: Int)
        case closing(Task<Void, Never>)
    }
    private var entries: [String: Entry] = [:]
    /// Attempts of `open` across concurrent closes of the same export.
    static let openAttemptsMax = 16

    public init(control: ManagerClient, transport: ReplicaTransport, clientID: String, localNode: NodeID?, logger: Logger) {
        self.control = control; self.transport = transport; self.clientID = clientID; self.localNode = localNode
        self.logger = logger
    }

    /// Every block volume, and every snapshot as the read-only export `VOLUME@SNAPSHOT`.
    public func list() async throws -> [NBDExportDescription] {
        let volumes = try await control.volumes().map(\.volume).filter { $0.kind == .block }.map(Self.describe)
        let snapshots = try await control.snapshots().map { s in
            NBDExportDescription(name: "\(s.volume)@\(s.name)", sizeBytes: s.sizeBytes, readOnly: true,
                                 description: "cairn snapshot of \(s.volume), \(ByteSize.format(s.sizeBytes)), read-only")
        }
        return volumes + snapshots
    }

    public func describe(_ name: String) async throws -> NBDExportDescription {
        Self.describe(try await record(name))
    }

    public func open(_ name: String) async throws -> (NBDExportDescription, NBDDevice) {
        for _ in 0..<Self.openAttemptsMax {
            switch entries[name] {
            case .closing(let t)?:
                await t.value
                // The closing client is gone; whoever resumes first clears the entry.
                if case .closing(let current)? = entries[name], current == t { entries[name] = nil }
            case .open(let device, let refs)?:
                entries[name] = .open(device, refs: refs + 1)
                return (device.export, device)
            case .opening(let t, let refs)?:
                entries[name] = .opening(t, refs: refs + 1)
                let device = try await finishOpening(name, t)
                return (device.export, device)
            case nil:
                let t = Task { try await self.openDevice(name) }
                entries[name] = .opening(t, refs: 1)
                let device = try await finishOpening(name, t)
                return (device.export, device)
            }
        }
        throw NBDExportError.unavailable("export '\(name)' is being closed and reopened too often; try again")
    }

    private func finishOpening(_ name: String, _ t: Task<VolumeDevice, Error>) async throws -> VolumeDevice {
        do {
            let device = try await t.value
            if case .opening(let current, let refs)? = entries[name], current == t { entries[name] = .open(device, refs: refs) }
            return device
        } catch {
            if case .opening(let current, let refs)? = entries[name], current == t {
                entries[name] = refs > 1 ? .opening(t, refs: refs - 1) : nil
            }
            throw error
        }
    }

    public func release(_ name: String) async {
        // closeAll() at shutdown may have closed it already.
        guard case .open(let device, let refs)? = entries[name] else { return }
        if refs > 1 { entries[name] = .open(device, refs: refs - 1); return }
        let t = Task { await device.client.close() }
        entries[name] = .closing(t)
        await t.value
        if case .closing(let current)? = entries[name], current == t { entries[name] = nil }
        logger.info("export closed", metadata: ["export": "\(name)"])
    }

    /// Closes every open export (gateway shutdown).
    public func closeAll() async {
        for (name, entry) in entries {
            if case .open(let device, _) = entry {
                await device.client.close()
                entries[name] = nil
            }
        }
    }

    // MARK: - Opening

    private nonisolated func record(_ name: String) async throws -> VolumeRecord {
        let v: VolumeRecord
        do {
            v = try await control.volume(name).volume
        } catch CairnError.notFound {
            throw NBDExportError.unknown("no volume named '\(name)'")
        } catch let e as CairnError {
            throw NBDExportError.unavailable("cannot ask the manager about '\(name)': \(e)")
        }
        guard v.kind == .block else {
            throw NBDExportError.unknown("volume '\(name)' is a \(v.kind.rawValue) volume, not a block volume")
        }
        return v
    }

    private nonisolated func openDevice(_ name: String) async throws -> VolumeDevice {
        let v = try await record(name)
        var options = VolumeClientOptions(clientID: clientID, readOnly: v.readOnly, force: false)
        options.localNode = localNode
        do {
            let client = try await VolumeClient.open(name, control: control, transport: transport, options: options, logger: logger)
            logger.info("export opened", metadata: ["export": "\(name)", "readOnly": "\(v.readOnly)", "epoch": "\(client.epoch)"])
            return VolumeDevice(client: client, export: Self.describe(client.volume))
        } catch CairnError.conflict(let m) {
            throw NBDExportError.refused("volume '\(name)' is in use by another writer (\(m))")
        } catch CairnError.notFound(let m) {
            throw NBDExportError.unknown(m)
        } catch let e as CairnError {
            throw NBDExportError.unavailable("cannot open volume '\(name)': \(e)")
        }
    }

    static func describe(_ v: VolumeRecord) -> NBDExportDescription {
        NBDExportDescription(
            name: v.name, sizeBytes: v.sizeBytes, readOnly: v.readOnly,
            description: "cairn volume, \(ByteSize.format(v.sizeBytes)), \(v.replicas) replicas (writes need \(v.replicasMin))"
                + (v.readOnly ? ", read-only" : ""))
    }
}

/// A volume client as an NBD device.
public final class VolumeDevice: NBDDevice {
    public let client: VolumeClient
    public let export: NBDExportDescription

    init(client: VolumeClient, export: NBDExportDescription) { self.client = client; self.export = export }

    public func read(offset: UInt64, length: Int) async throws -> ByteBuffer { try await client.read(offset: offset, length: length) }
    public func write(offset: UInt64, data: ByteBuffer, fua: Bool) async throws { try await client.write(offset: offset, data: data, fua: fua) }
    public func flush() async throws { try await client.flush() }
    public func trim(offset: UInt64, length: Int) async throws { try await client.trim(offset: offset, length: length) }
    public func writeZeroes(offset: UInt64, length: Int, mayTrim: Bool) async throws {
        try await client.writeZeroes(offset: offset, length: length, mayTrim: mayTrim)
    }
    public func blockStatus(offset: UInt64, length: Int) async throws -> [Extent] {
        try await client.blockStatus(offset: offset, length: length)
    }
}
