// The gRPC glue: each generated service protocol forwards to ControllerCore / NodeCore
// and turns a CSIError into the gRPC status the CO reads.
import CairnCSIProto
import CairnCore
import GRPCCore
import Logging

/// What GetPluginInfo answers.
public enum CSIPluginInfo {
    public static let name = "cairn.csi.io"
    /// Bumped with every release of the cairn binary.
    public static let vendorVersion = "0.1.0"
}

/// Runs one call, logging and mapping its error.
func answer<T>(_ method: String, _ logger: Logger, _ body: () async throws -> T) async throws -> T {
    do {
        return try await body()
    } catch {
        let e = CSIError.from(error)
        logger.info("call failed", metadata: ["method": "\(method)", "code": "\(e.code.rawValue)", "message": "\(e.message)"])
        throw RPCError(code: e.code.grpc, message: e.message)
    }
}

extension CSIError.Code {
    var grpc: RPCError.Code {
        switch self {
        case .invalidArgument: return .invalidArgument
        case .notFound: return .notFound
        case .alreadyExists: return .alreadyExists
        case .failedPrecondition: return .failedPrecondition
        case .outOfRange: return .outOfRange
        case .aborted: return .aborted
        case .deadlineExceeded: return .deadlineExceeded
        case .resourceExhausted: return .resourceExhausted
        case .unavailable: return .unavailable
        case .unimplemented: return .unimplemented
        case .internalError: return .internalError
        }
    }
}

public struct IdentityService: Csi_V1_Identity.SimpleServiceProtocol {
    let controller: Bool
    let probe: @Sendable () async throws -> Void
    let logger: Logger

    public init(controller: Bool, logger: Logger, probe: @escaping @Sendable () async throws -> Void) {
        self.controller = controller; self.probe = probe; self.logger = logger
    }

    public func getPluginInfo(request: Csi_V1_GetPluginInfoRequest, context: ServerContext) async throws -> Csi_V1_GetPluginInfoResponse {
        .with { $0.name = CSIPluginInfo.name; $0.vendorVersion = CSIPluginInfo.vendorVersion }
    }

    public func getPluginCapabilities(request: Csi_V1_GetPluginCapabilitiesRequest,
                                      context: ServerContext) async throws -> Csi_V1_GetPluginCapabilitiesResponse {
        var services: [Csi_V1_PluginCapability.Service.TypeEnum] = [.volumeAccessibilityConstraints]
        if controller { services.insert(.controllerService, at: 0) }
        return .with { r in
            r.capabilities = services.map { t in .with { $0.service = .with { $0.type = t } } }
                + [.with { $0.volumeExpansion = .with { $0.type = .online } }]
        }
    }

    /// Ready only while the manager answers: without it no call can succeed.
    public func probe(request: Csi_V1_ProbeRequest, context: ServerContext) async throws -> Csi_V1_ProbeResponse {
        do {
            try await probe()
            return .with { $0.ready = .init(true) }
        } catch {
            logger.info("probe: not ready", metadata: ["error": "\(error)"])
            return .with { $0.ready = .init(false) }
        }
    }
}

public struct ControllerService: Csi_V1_Controller.SimpleServiceProtocol {
    let core: ControllerCore
    let logger: Logger
    public init(core: ControllerCore, logger: Logger) { self.core = core; self.logger = logger }

    public func createVolume(request: Csi_V1_CreateVolumeRequest, context: ServerContext) async throws -> Csi_V1_CreateVolumeResponse {
        try await answer("CreateVolume", logger) { try await core.createVolume(request) }
    }
    public func deleteVolume(request: Csi_V1_DeleteVolumeRequest, context: ServerContext) async throws -> Csi_V1_DeleteVolumeResponse {
        try await answer("DeleteVolume", logger) { try await core.deleteVolume(request) }
    }
    public func controllerPublishVolume(request: Csi_V1_ControllerPublishVolumeRequest,
                                        context: ServerContext) async throws -> Csi_V1_ControllerPublishVolumeResponse {
        try await answer("ControllerPublishVolume", logger) { try await core.publish(request) }
    }
    public func controllerUnpublishVolume(request: Csi_V1_ControllerUnpublishVolumeRequest,
                                          context: ServerContext) async throws -> Csi_V1_ControllerUnpublishVolumeResponse {
        try await answer("ControllerUnpublishVolume", logger) { try await core.unpublish(request) }
    }
    public func validateVolumeCapabilities(request: Csi_V1_ValidateVolumeCapabilitiesRequest,
                                           context: ServerContext) async throws -> Csi_V1_ValidateVolumeCapabilitiesResponse {
        try await answer("ValidateVolumeCapabilities", logger) { try await core.validate(request) }
    }
    public func listVolumes(request: Csi_V1_ListVolumesRequest, context: ServerContext) async throws -> Csi_V1_ListVolumesResponse {
        try await answer("ListVolumes", logger) { try await core.listVolumes(request) }
    }
    public func getCapacity(request: Csi_V1_GetCapacityRequest, context: ServerContext) async throws -> Csi_V1_GetCapacityResponse {
        try await answer("GetCapacity", logger) { try await core.getCapacity(request) }
    }
    public func controllerGetCapabilities(request: Csi_V1_ControllerGetCapabilitiesRequest,
                                          context: ServerContext) async throws -> Csi_V1_ControllerGetCapabilitiesResponse {
        core.getCapabilities()
    }
    public func createSnapshot(request: Csi_V1_CreateSnapshotRequest, context: ServerContext) async throws -> Csi_V1_CreateSnapshotResponse {
        try await answer("CreateSnapshot", logger) { try await core.createSnapshot(request) }
    }
    public func deleteSnapshot(request: Csi_V1_DeleteSnapshotRequest, context: ServerContext) async throws -> Csi_V1_DeleteSnapshotResponse {
        try await answer("DeleteSnapshot", logger) { try await core.deleteSnapshot(request) }
    }
    public func listSnapshots(request: Csi_V1_ListSnapshotsRequest, context: ServerContext) async throws -> Csi_V1_ListSnapshotsResponse {
        try await answer("ListSnapshots", logger) { try await core.listSnapshots(request) }
    }
    public func controllerExpandVolume(request: Csi_V1_ControllerExpandVolumeRequest,
                                       context: ServerContext) async throws -> Csi_V1_ControllerExpandVolumeResponse {
        try await answer("ControllerExpandVolume", logger) { try await core.expandVolume(request) }
    }
    public func controllerGetVolume(request: Csi_V1_ControllerGetVolumeRequest,
                                    context: ServerContext) async throws -> Csi_V1_ControllerGetVolumeResponse {
        try await answer("ControllerGetVolume", logger) { try await core.getVolume(request) }
    }
}

public struct NodeService: Csi_V1_Node.SimpleServiceProtocol {
    let core: NodeCore
    let logger: Logger
    public init(core: NodeCore, logger: Logger) { self.core = core; self.logger = logger }

    public func nodeStageVolume(request: Csi_V1_NodeStageVolumeRequest, context: ServerContext) async throws -> Csi_V1_NodeStageVolumeResponse {
        try await answer("NodeStageVolume", logger) { try await core.stage(request) }
    }
    public func nodeUnstageVolume(request: Csi_V1_NodeUnstageVolumeRequest,
                                  context: ServerContext) async throws -> Csi_V1_NodeUnstageVolumeResponse {
        try await answer("NodeUnstageVolume", logger) { try await core.unstage(request) }
    }
    public func nodePublishVolume(request: Csi_V1_NodePublishVolumeRequest,
                                  context: ServerContext) async throws -> Csi_V1_NodePublishVolumeResponse {
        try await answer("NodePublishVolume", logger) { try await core.publish(request) }
    }
    public func nodeUnpublishVolume(request: Csi_V1_NodeUnpublishVolumeRequest,
                                    context: ServerContext) async throws -> Csi_V1_NodeUnpublishVolumeResponse {
        try await answer("NodeUnpublishVolume", logger) { try await core.unpublish(request) }
    }
    public func nodeGetVolumeStats(request: Csi_V1_NodeGetVolumeStatsRequest,
                                   context: ServerContext) async throws -> Csi_V1_NodeGetVolumeStatsResponse {
        try await answer("NodeGetVolumeStats", logger) { try await core.stats(request) }
    }
    public func nodeExpandVolume(request: Csi_V1_NodeExpandVolumeRequest,
                                 context: ServerContext) async throws -> Csi_V1_NodeExpandVolumeResponse {
        try await answer("NodeExpandVolume", logger) { try await core.expand(request) }
    }
    public func nodeGetCapabilities(request: Csi_V1_NodeGetCapabilitiesRequest,
                                    context: ServerContext) async throws -> Csi_V1_NodeGetCapabilitiesResponse {
        NodeCore.getCapabilities()
    }
    public func nodeGetInfo(request: Csi_V1_NodeGetInfoRequest, context: ServerContext) async throws -> Csi_V1_NodeGetInfoResponse {
        core.getInfo()
    }
}
