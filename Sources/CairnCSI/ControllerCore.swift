// The Controller service's logic: each CSI call on the generated messages, against a
// ClusterBackend. No gRPC here; CSIServices.swift only forwards to it.
import CairnCSIProto
import CairnCore
import Foundation
import SwiftProtobuf

public struct ControllerCore: Sendable {
    let backend: ClusterBackend
    var records: CSIRecords { CSIRecords(store: backend.records) }

    public init(backend: ClusterBackend) { self.backend = backend }

    public static let capabilities: [Csi_V1_ControllerServiceCapability.RPC.TypeEnum] = [
        .createDeleteVolume, .publishUnpublishVolume, .listVolumes, .getCapacity, .createDeleteSnapshot,
        .listSnapshots, .cloneVolume, .publishReadonly, .expandVolume, .listVolumesPublishedNodes,
        .volumeCondition, .getVolume, .singleNodeMultiWriter,
    ]

    public func getCapabilities() -> Csi_V1_ControllerGetCapabilitiesResponse {
        .with { r in
            r.capabilities = Self.capabilities.map { t in .with { $0.rpc = .with { $0.type = t } } }
        }
    }

    // MARK: Volumes

    public func createVolume(_ req: Csi_V1_CreateVolumeRequest) async throws -> Csi_V1_CreateVolumeResponse {
        guard !req.name.isEmpty else { throw CSIError.invalid("name is missing") }
        let params = try VolumeParameters.parse(req.parameters, capabilities: req.volumeCapabilities)
        try checkCapabilities(req.volumeCapabilities, kind: params.kind)
        let size = try Capacity.size(req.hasCapacityRange ? req.capacityRange : nil)
        let source = try contentSource(req)
        let name = VolumeNames.cairnName(req.name, kind: params.kind)

        // The record first: it carries the request id that makes the manager's create
        // idempotent, so a plugin killed between the two steps finishes the same volume.
        let wanted = CSIVolumeRecord(csiName: req.name, volume: name, parameters: params, source: source,
                                     requestID: UUID().uuidString, publications: [:])
        var record = wanted
        if let (existing, _) = try await records.get(name) {
            guard existing.csiName == req.name, existing.parameters == params, existing.source == source else {
                throw CSIError(.alreadyExists, "volume '\(req.name)' exists with other parameters or another source")
            }
            record = existing
        } else if try await !records.put(wanted, ifRevision: 0) {
            throw CSIError(.aborted, "volume '\(req.name)' is being created by another call; try again")
        }

        let volume: VolumeRecord
        if let existing = try await backend.volume(name)?.volume {
            guard existing.createRequestID == record.requestID else {
                throw CSIError(.alreadyExists, "a Cairn volume '\(name)' exists that this plugin did not create")
            }
            guard Capacity.fits(existing.sizeBytes, req.hasCapacityRange ? req.capacityRange : nil) else {
                throw CSIError(.alreadyExists, "volume '\(req.name)' exists with \(existing.sizeBytes) bytes, outside the capacity range")
            }
            volume = existing
        } else if let source {
            volume = try await clone(name: name, from: source, params: params, size: size, requestID: record.requestID)
        } else {
            volume = try await backend.createVolume(CreateVolumeRequest(
                name: name, sizeBytes: size, replicas: params.replicas, replicasMin: params.replicasMin,
                kind: params.kind, requestID: record.requestID))
        }
        return .with { $0.volume = csiVolume(volume, record, topology: req.accessibilityRequirements) }
    }

    private func contentSource(_ req: Csi_V1_CreateVolumeRequest) throws -> VolumeSource? {
        guard req.hasVolumeContentSource else { return nil }
        switch req.volumeContentSource.type {
        case .snapshot(let s)?:
            guard !s.snapshotID.isEmpty else { throw CSIError.invalid("volume_content_source.snapshot has no snapshot_id") }
            return .snapshot(s.snapshotID)
        case .volume(let v)?:
            guard !v.volumeID.isEmpty else { throw CSIError.invalid("volume_content_source.volume has no volume_id") }
            return .volume(v.volumeID)
        case nil:
            throw CSIError.invalid("volume_content_source names neither a snapshot nor a volume")
        }
    }

    private func clone(name: String, from source: VolumeSource, params: VolumeParameters, size: UInt64,
                       requestID: String) async throws -> VolumeRecord {
        let sourceBytes: UInt64
        switch source {
        case .snapshot(let id):
            guard let s = try await backend.snapshot(id) else { throw CSIError.notFound("no snapshot '\(id)'") }
            sourceBytes = s.sizeBytes
        case .volume(let v):
            guard let s = try await backend.volume(v) else { throw CSIError.notFound("no volume '\(v)'") }
            guard s.volume.kind == params.kind else {
                throw CSIError.invalid("source volume '\(v)' is a \(s.volume.kind.rawValue) volume, not \(params.kind.rawValue)")
            }
            sourceBytes = s.volume.sizeBytes
        }
        guard size >= sourceBytes else {
            throw CSIError(.outOfRange, "the new volume (\(size) bytes) is smaller than its source (\(sourceBytes) bytes)")
        }
        return try await backend.cloneVolume(name: name, from: source, replicas: params.replicas,
                                             replicasMin: params.replicasMin, sizeBytes: size, requestID: requestID)
    }

    func csiVolume(_ v: VolumeRecord, _ record: CSIVolumeRecord, topology: Csi_V1_TopologyRequirement? = nil) -> Csi_V1_Volume {
        .with { out in
            out.volumeID = v.name
            out.capacityBytes = Int64(v.sizeBytes)
            out.volumeContext = record.parameters.volumeContext
            switch record.source {
            case .snapshot(let id)?: out.contentSource = .with { $0.snapshot = .with { $0.snapshotID = id } }
            case .volume(let id)?: out.contentSource = .with { $0.volume = .with { $0.volumeID = id } }
            case nil: break
            }
            // Every node reaches every volume over the network: the volume is accessible
            // wherever the CO asked for it.
            if let t = topology {
                out.accessibleTopology = t.requisite.isEmpty ? t.preferred : t.requisite
            }
        }
    }

    public func deleteVolume(_ req: Csi_V1_DeleteVolumeRequest) async throws -> Csi_V1_DeleteVolumeResponse {
        guard !req.volumeID.isEmpty else { throw CSIError.invalid("volume_id is missing") }
        if let (record, _) = try await records.get(req.volumeID), !record.publications.isEmpty {
            throw CSIError(.failedPrecondition,
                           "volume '\(req.volumeID)' is published on \(record.publications.keys.sorted().joined(separator: ", "))")
        }
        // A filesystem's mounts each wrote into a data volume of their own, NAME.d.ID:
        // they go with it (the mounts are gone: every publication was withdrawn).
        if let status = try await backend.volume(req.volumeID), status.volume.kind == .filesystem {
            for data in try await backend.volumeNames(prefix: req.volumeID + ".d.") { try await backend.deleteVolume(data) }
        }
        try await backend.deleteVolume(req.volumeID)
        try await records.delete(req.volumeID)
        return .init()
    }

    /// The record and the cluster's status of a volume this plugin manages; NOT_FOUND otherwise.
    func managed(_ id: String) async throws -> (CSIVolumeRecord, VolumeStatus) {
        guard !id.isEmpty else { throw CSIError.invalid("volume_id is missing") }
        guard let (record, _) = try await records.get(id), let status = try await backend.volume(id) else {
            throw CSIError.notFound("no volume '\(id)'")
        }
        return (record, status)
    }

    public func publish(_ req: Csi_V1_ControllerPublishVolumeRequest) async throws -> Csi_V1_ControllerPublishVolumeResponse {
        guard !req.nodeID.isEmpty else { throw CSIError.invalid("node_id is missing") }
        guard req.hasVolumeCapability else { throw CSIError.invalid("volume_capability is missing") }
        let (record, _) = try await managed(req.volumeID)
        guard try await CSINodes(store: backend.records).get(req.nodeID) != nil else {
            throw CSIError.notFound("no node '\(req.nodeID)': a node plugin (cairn csi --node) registers its id when it starts")
        }
        let access = try req.volumeCapability.access(for: record.parameters.kind).get()
        let mode = req.volumeCapability.accessMode.mode
        let wanted = Publication(readOnly: req.readonly || mode.isReadOnly, accessMode: mode.rawValue, access: access)
        _ = try await records.update(req.volumeID) { r in
            if let p = r.publications[req.nodeID] {
                guard p == wanted else {
                    throw CSIError(.alreadyExists, "volume '\(req.volumeID)' is published on \(req.nodeID) with another capability")
                }
                return
            }
            let others = r.publications.filter { $0.key != req.nodeID }
            if !others.isEmpty {
                let singleNode = !mode.isMultiNode
                    || others.values.contains { !(Csi_V1_VolumeCapability.AccessMode.Mode(rawValue: $0.accessMode)?.isMultiNode ?? false) }
                // A second writer of a one-writer volume would be fenced by the manager
                // the moment it attaches; refuse it here, as the spec asks.
                let secondWriter = mode == .multiNodeSingleWriter && !wanted.readOnly
                    && others.values.contains { !$0.readOnly }
                if singleNode || secondWriter {
                    throw CSIError(.failedPrecondition,
                                   "volume '\(req.volumeID)' is published on \(others.keys.sorted().joined(separator: ", ")) with a single-node access mode")
                }
            }
            r.publications[req.nodeID] = wanted
        }
        return .with { $0.publishContext = ["readonly": wanted.readOnly ? "true" : "false", "access": access.rawValue] }
    }

    public func unpublish(_ req: Csi_V1_ControllerUnpublishVolumeRequest) async throws -> Csi_V1_ControllerUnpublishVolumeResponse {
        guard !req.volumeID.isEmpty else { throw CSIError.invalid("volume_id is missing") }
        guard try await records.get(req.volumeID) != nil else { throw CSIError.notFound("no volume '\(req.volumeID)'") }
        _ = try await records.update(req.volumeID) { r in
            if req.nodeID.isEmpty { r.publications = [:] } else { r.publications[req.nodeID] = nil }
        }
        return .init()
    }

    public func validate(_ req: Csi_V1_ValidateVolumeCapabilitiesRequest) async throws -> Csi_V1_ValidateVolumeCapabilitiesResponse {
        guard !req.volumeCapabilities.isEmpty else { throw CSIError.invalid("volume_capabilities is empty") }
        let (record, _) = try await managed(req.volumeID)
        for c in req.volumeCapabilities {
            if case .failure(let e) = c.access(for: record.parameters.kind) {
                if e.message.contains("needs an") { throw e }   // malformed, not merely unsupported
                return .with { $0.message = e.message }
            }
        }
        if !req.parameters.isEmpty {
            let params = try VolumeParameters.parse(req.parameters, capabilities: req.volumeCapabilities)
            guard params == record.parameters else { return .with { $0.message = "the parameters differ from the volume's" } }
        }
        return .with { r in
            r.confirmed = .with {
                $0.volumeCapabilities = req.volumeCapabilities
                $0.volumeContext = req.volumeContext
                $0.parameters = req.parameters
            }
        }
    }

    public func listVolumes(_ req: Csi_V1_ListVolumesRequest) async throws -> Csi_V1_ListVolumesResponse {
        let all = try await records.all().sorted { $0.volume < $1.volume }
        let (page, next) = try PageToken.page(all, name: \.volume, startingToken: req.startingToken, maxEntries: req.maxEntries)
        var entries: [Csi_V1_ListVolumesResponse.Entry] = []
        for record in page {
            guard let status = try await backend.volume(record.volume) else { continue }   // deleted meanwhile
            entries.append(.with { e in
                e.volume = csiVolume(status.volume, record)
                e.status = .with {
                    $0.publishedNodeIds = record.publications.keys.sorted()
                    $0.volumeCondition = Self.condition(status)
                }
            })
        }
        return .with { $0.entries = entries; $0.nextToken = next }
    }

    public func getVolume(_ req: Csi_V1_ControllerGetVolumeRequest) async throws -> Csi_V1_ControllerGetVolumeResponse {
        let (record, status) = try await managed(req.volumeID)
        return .with { r in
            r.volume = csiVolume(status.volume, record)
            r.status = .with {
                $0.publishedNodeIds = record.publications.keys.sorted()
                $0.volumeCondition = Self.condition(status)
            }
        }
    }

    static func condition(_ s: VolumeStatus) -> Csi_V1_VolumeCondition {
        .with { c in
            switch s.health {
            case .healthy: c.abnormal = false; c.message = "healthy"
            case .degraded:
                c.abnormal = true
                c.message = "degraded: \(s.chunksDegraded) of \(s.chunksAllocated) chunks lack a replica"
            case .rebuilding:
                c.abnormal = true
                c.message = "rebuilding: \(s.rebuildCopiedBytes) of \(s.rebuildTotalBytes) bytes copied"
            }
        }
    }

    public func getCapacity(_ req: Csi_V1_GetCapacityRequest) async throws -> Csi_V1_GetCapacityResponse {
        let params = try VolumeParameters.parse(req.parameters, capabilities: req.volumeCapabilities)
        for c in req.volumeCapabilities { _ = try c.access(for: params.kind).get() }
        let s = try await backend.clusterStatus()
        let free = s.capacityBytes > s.usedBytes ? s.capacityBytes - s.usedBytes : 0
        // Every byte written is stored `replicas` times (3 unless the class says otherwise).
        let available = free / UInt64(params.replicas ?? 3)
        return .with { r in
            r.availableCapacity = Int64(clamping: available)
            r.maximumVolumeSize = .init(Int64(CSILimits.volumeBytesMax))
            r.minimumVolumeSize = .init(Int64(CSILimits.volumeBytesMin))
        }
    }

    public func expandVolume(_ req: Csi_V1_ControllerExpandVolumeRequest) async throws -> Csi_V1_ControllerExpandVolumeResponse {
        guard req.hasCapacityRange else { throw CSIError.invalid("capacity_range is missing") }
        let (record, status) = try await managed(req.volumeID)
        let size = try Capacity.size(req.capacityRange)
        var current = status.volume.sizeBytes
        if size > current { current = try await backend.resizeVolume(req.volumeID, sizeBytes: size).sizeBytes }
        // ext4/xfs on an attached device grow on the node; a raw device and the shared
        // filesystem see the new size as they are.
        let nodeSide = record.parameters.kind == .block
            && !(req.hasVolumeCapability && req.volumeCapability.isBlock)
        return .with { $0.capacityBytes = Int64(current); $0.nodeExpansionRequired = nodeSide }
    }

    // MARK: Snapshots

    public func createSnapshot(_ req: Csi_V1_CreateSnapshotRequest) async throws -> Csi_V1_CreateSnapshotResponse {
        guard !req.name.isEmpty else { throw CSIError.invalid("name is missing") }
        guard !req.sourceVolumeID.isEmpty else { throw CSIError.invalid("source_volume_id is missing") }
        let name = VolumeNames.cairnName(req.name, kind: .block)
        if let existing = try await backend.snapshots(volume: nil).first(where: { $0.name == name }) {
            guard existing.volume == req.sourceVolumeID else {
                throw CSIError(.alreadyExists, "snapshot '\(req.name)' exists for volume '\(existing.volume)'")
            }
            return .with { $0.snapshot = Self.csiSnapshot(existing) }
        }
        _ = try await managed(req.sourceVolumeID)
        let s = try await backend.createSnapshot(volume: req.sourceVolumeID, name: name, requestID: "csi-snapshot-" + req.name)
        return .with { $0.snapshot = Self.csiSnapshot(s) }
    }

    static func csiSnapshot(_ s: SnapshotInfo) -> Csi_V1_Snapshot {
        .with { r in
            r.snapshotID = s.id
            r.sourceVolumeID = s.volume
            r.sizeBytes = Int64(s.sizeBytes)
            r.readyToUse = s.readyToUse
            r.creationTime = Google_Protobuf_Timestamp(roundingTimeIntervalSince1970: s.createdAt, rule: .toNearestOrAwayFromZero)
        }
    }

    public func deleteSnapshot(_ req: Csi_V1_DeleteSnapshotRequest) async throws -> Csi_V1_DeleteSnapshotResponse {
        guard !req.snapshotID.isEmpty else { throw CSIError.invalid("snapshot_id is missing") }
        try await backend.deleteSnapshot(req.snapshotID)
        return .init()
    }

    public func listSnapshots(_ req: Csi_V1_ListSnapshotsRequest) async throws -> Csi_V1_ListSnapshotsResponse {
        var all: [SnapshotInfo]
        if !req.snapshotID.isEmpty {
            all = try await backend.snapshot(req.snapshotID).map { [$0] } ?? []
            if !req.sourceVolumeID.isEmpty { all = all.filter { $0.volume == req.sourceVolumeID } }
        } else if !req.sourceVolumeID.isEmpty {
            all = try await backend.volume(req.sourceVolumeID) == nil ? [] : try await backend.snapshots(volume: req.sourceVolumeID)
        } else {
            all = try await backend.snapshots(volume: nil)
        }
        all.sort { $0.id < $1.id }
        let (page, next) = try PageToken.page(all, name: \.id, startingToken: req.startingToken, maxEntries: req.maxEntries)
        return .with { r in
            r.entries = page.map { s in .with { $0.snapshot = Self.csiSnapshot(s) } }
            r.nextToken = next
        }
    }
}
