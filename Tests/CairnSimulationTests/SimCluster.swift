// A whole cluster in one process for the deterministic simulation: the real Manager (on
// a MemoryMetaStore, with a clock the test advances), real StorageService request
// handling on MemoryChunkBackends, the real VolumeClient, and a network the test can
// cut. Faults are chosen from a seeded generator so a failing seed replays the same
// schedule of faults.
import CairnChunkStore
import CairnClient
import CairnCore
@testable import CairnManager
import CairnMeta
@testable import CairnStorage
import CairnWire
import Foundation
import Logging
import NIOCore

typealias SeededRandom = SplitMix64

final class SimClock: TimeSource, @unchecked Sendable {
    private let t = Locked<Double>(1_000_000)
    func now() -> Double { t.snapshot }
    func advance(_ seconds: Double) { t.withLock { $0 += seconds } }
}

/// The network: which endpoints are down (crashed) and which links are cut.
final class SimNetwork: @unchecked Sendable {
    private let services = Locked<[String: StorageService]>([:])
    private let down = Locked<Set<String>>([])
    private let cuts = Locked<Set<String>>([])

    func attach(_ address: String, _ service: StorageService) { services.withLock { $0[address] = service } }
    func setDown(_ address: String, _ isDown: Bool) { down.withLock { if isDown { $0.insert(address) } else { $0.remove(address) } } }
    func isDown(_ address: String) -> Bool { down.snapshot.contains(address) }
    func cut(_ from: String, _ to: String, _ isCut: Bool) {
        cuts.withLock { if isCut { $0.insert(from + ">" + to) } else { $0.remove(from + ">" + to) } }
    }
    func healAll() { down.withLock { $0.removeAll() }; cuts.withLock { $0.removeAll() } }

    func send(from: String, to address: String, _ request: DataRequest) async throws -> ByteBuffer {
        guard !down.snapshot.contains(address), !cuts.snapshot.contains(from + ">" + address),
              let service = services.withLock({ $0[address] }) else {
            throw CairnError.unavailable("simulated network: \(address) unreachable from \(from)")
        }
        // Requests and replies cross the wire as bytes, so the codec runs too.
        var bytes = ByteBuffer()
        FrameCodec.encode(request.frame(id: 1), into: &bytes)
        guard let frame = try FrameCodec.decodeRequest(&bytes) else { throw CairnError.internalError("codec lost a frame") }
        return try await service.handle(try DataRequest(frame: frame))
    }
}

struct SimTransport: ReplicaTransport {
    let net: SimNetwork
    let from: String
    func send(_ address: String, _ request: DataRequest, timeout: TimeAmount?) async throws -> ByteBuffer {
        try await net.send(from: from, to: address, request)
    }
}

struct SimCommander: NodeCommander {
    let net: SimNetwork
    func fence(_ node: NodeRecord, volume: VolumeID, epoch: Epoch) async throws {
        _ = try await net.send(from: "manager", to: node.address, .fence(volume: volume, epoch: epoch))
    }
    func rebuild(_ node: NodeRecord, order: RebuildOrder) async throws {
        _ = try await net.send(from: "manager", to: node.address, .rebuild(order))
    }
    func deleteVolume(_ node: NodeRecord, volume: VolumeID, epoch: Epoch) async throws {
        _ = try await net.send(from: "manager", to: node.address, .deleteVolume(volume: volume, epoch: epoch))
    }
    func copyChunk(_ node: NodeRecord, from: ChunkAddress, to: ChunkAddress) async throws {
        _ = try await net.send(from: "manager", to: node.address, .copyChunk(from: from, to: to))
    }
}

/// The manager as a volume client sees it, in process.
struct SimControl: ClusterControl {
    let manager: Manager
    func map(_ name: String) async throws -> VolumeMap { try await manager.map(name) }
    func attach(_ name: String, _ req: AttachRequest) async throws -> VolumeMap { try await manager.attach(name, req) }
    func detach(_ name: String, client: String) async throws { try await manager.detach(name, client: client) }
    func allocateChunk(_ name: String, index: ChunkIndex, _ req: AllocateChunkRequest) async throws -> VolumeMap {
        try await manager.allocateChunk(name, index: index, req)
    }
    func reportFailure(_ name: String, index: ChunkIndex, _ report: ReplicaFailureReport) async throws -> VolumeMap {
        try await manager.reportFailure(name, index: index, report)
    }
}

final class SimCluster: @unchecked Sendable {
    static let chunkSize = 1 << 20
    let clock = SimClock()
    let net = SimNetwork()
    let manager: Manager
    let logger: Logger
    var nodes: [(id: NodeID, address: String, service: StorageService, backend: MemoryChunkBackend)] = []

    init(nodeCount: Int) throws {
        var logger = Logger(label: "sim")
        logger.logLevel = .critical
        self.logger = logger
        var config = ManagerConfig()
        config.heartbeatTimeout = .seconds(5)
        config.gracePeriod = .seconds(20)
        config.chunkSizeDefault = UInt64(Self.chunkSize)
        config.rebuildBytesPerSecond = 0
        manager = Manager(store: MemoryMetaStore(), config: config, time: clock, nodes: SimCommander(net: net), logger: logger)
        for i in 1...nodeCount {
            let id = "node\(i)", address = "10.0.0.\(i):9410"
            let backend = try MemoryChunkBackend(chunkSize: Self.chunkSize)
            let net = self.net
            let service = StorageService(backends: [backend], transport: { to, request in
                try await net.send(from: id, to: to, request)
            }, logger: logger)
            self.net.attach(address, service)
            nodes.append((id, address, service, backend))
        }
    }

    /// One second of cluster time: live nodes heartbeat, the manager supervises, and
    /// rebuilds it started run to completion.
    func tick(seconds: Double = 1) async throws {
        clock.advance(seconds)
        for n in nodes where !net.isDown(n.address) {
            let reply = try await manager.heartbeat(HeartbeatRequest(
                id: n.id, address: n.address, zone: nil, capacityBytes: 1 << 40, usedBytes: 0,
                inventory: n.service.inventory().map { ChunkRef(volume: $0.volume, chunk: $0.chunk) }, rebuilds: []))
            for ref in reply.deleteChunks { try await n.service.deleteChunk(ChunkKey(volume: ref.volume, chunk: ref.chunk)) }
        }
        try await manager.superviseOnce()
        try await settleRebuilds()
    }

    func settleRebuilds() async throws {
        for _ in 0..<2000 {
            if manager.rebuilding.snapshot.isEmpty { return }
            try await Task.sleep(for: .milliseconds(1))
        }
        throw CairnError.internalError("rebuilds did not finish")
    }

    func client(_ name: String, id: String, force: Bool = false, readOnly: Bool = false, localNode: NodeID? = nil) async throws -> VolumeClient {
        var options = VolumeClientOptions(clientID: id, readOnly: readOnly, force: force, localNode: localNode)
        options.attemptsMax = 64
        return try await VolumeClient.open(name, control: SimControl(manager: manager), transport: SimTransport(net: net, from: id),
                                           options: options, logger: logger)
    }
}
