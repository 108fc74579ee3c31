import CairnCore
@testable import CairnManager
import CairnMeta
import CairnWire
import Foundation
import Logging
import XCTest

/// A clock that moves only when a test says so.
final class FakeClock: TimeSource, @unchecked Sendable {
    private let seconds: Locked<Double>
    init(_ start: Double = 1_700_000_000) { seconds = Locked(start) }
    func now() -> Double { seconds.snapshot }
    func advance(_ by: Double) { seconds.withLock { $0 += by } }
}

/// Records what the manager asks of storage nodes; each command can be told to fail.
final class FakeNodes: NodeCommander, @unchecked Sendable {
    struct Fence: Equatable { var node: NodeID; var volume: VolumeID; var epoch: Epoch }
    struct Rebuild: Equatable { var node: NodeID; var order: RebuildOrder }
    struct DeleteVolume: Equatable { var node: NodeID; var volume: VolumeID; var epoch: Epoch }

    let fences = Locked<[Fence]>([])
    let rebuilds = Locked<[Rebuild]>([])
    let deletes = Locked<[DeleteVolume]>([])
    /// Error the next rebuilds end with; nil means they succeed.
    let rebuildError = Locked<Error?>(nil)
    /// While true, rebuilds wait (polling) before they finish.
    let holdRebuilds = Locked(false)
    let fenceFailures = Locked<Set<NodeID>>([])

    func fence(_ node: NodeRecord, volume: VolumeID, epoch: Epoch) async throws {
        fences.withLock { $0.append(Fence(node: node.id, volume: volume, epoch: epoch)) }
        if fenceFailures.snapshot.contains(node.id) { throw CairnError.unavailable("\(node.id) unreachable") }
    }

    func rebuild(_ node: NodeRecord, order: RebuildOrder) async throws {
        rebuilds.withLock { $0.append(Rebuild(node: node.id, order: order)) }
        while holdRebuilds.snapshot { try await Task.sleep(for: .milliseconds(5)) }
        if let error = rebuildError.snapshot { throw error }
    }

    func deleteVolume(_ node: NodeRecord, volume: VolumeID, epoch: Epoch) async throws {
        deletes.withLock { $0.append(DeleteVolume(node: node.id, volume: volume, epoch: epoch)) }
    }

    struct Copy: Equatable { var node: NodeID; var from: ChunkAddress; var to: ChunkAddress }
    let copies = Locked<[Copy]>([])
    /// Nodes whose copy-ups fail.
    let copyFailures = Locked<Set<NodeID>>([])

    func copyChunk(_ node: NodeRecord, from: ChunkAddress, to: ChunkAddress) async throws {
        copies.withLock { $0.append(Copy(node: node.id, from: from, to: to)) }
        if copyFailures.snapshot.contains(node.id) { throw CairnError.io("\(node.id) cannot copy") }
    }

    func fencedNodes(epoch: Epoch) -> [NodeID] {
        fences.snapshot.filter { $0.epoch == epoch }.map(\.node).sorted()
    }
}

/// A manager over a memory store, a fake clock and fake nodes.
struct Harness {
    let store = MemoryMetaStore()
    let clock = FakeClock()
    let nodes = FakeNodes()
    let manager: Manager

    init() {
        var config = ManagerConfig()
        config.heartbeatTimeout = .seconds(5)
        config.gracePeriod = .seconds(30)
        config.chunkSizeDefault = 1 << 20
        var logger = Logger(label: "cairn.manager.test")
        logger.logLevel = .critical
        manager = Manager(store: store, config: config, time: clock, nodes: nodes, logger: logger)
    }

    static func address(_ id: NodeID) -> String { "\(id).test:9500" }

    @discardableResult
    func heartbeat(_ id: NodeID, zone: String? = nil, capacity: UInt64 = 1 << 40, used: UInt64 = 0,
                   inventory: [ChunkRef] = []) async throws -> HeartbeatReply {
        try await manager.heartbeat(HeartbeatRequest(
            id: id, address: Self.address(id), zone: zone, capacityBytes: capacity, usedBytes: used,
            inventory: inventory, rebuilds: []))
    }

    func heartbeat(_ ids: [NodeID]) async throws {
        for id in ids { try await heartbeat(id) }
    }

    /// Registers `count` nodes n1...n<count>.
    @discardableResult
    func addNodes(_ count: Int) async throws -> [NodeID] {
        let ids = (1...count).map { "n\($0)" }
        try await heartbeat(ids)
        return ids
    }

    @discardableResult
    func createVolume(_ name: String = "vol", size: UInt64 = 4 << 20, replicas: Int? = 3,
                      replicasMin: Int? = nil) async throws -> VolumeRecord {
        try await manager.createVolume(CreateVolumeRequest(
            name: name, sizeBytes: size, replicas: replicas, replicasMin: replicasMin))
    }

    /// Creates a volume, attaches `client` and allocates chunk 0; returns the chunk record.
    func attachedVolumeWithChunk(_ name: String = "vol", replicas: Int = 3, client: String = "c1") async throws -> ChunkRecord {
        try await createVolume(name, replicas: replicas)
        let map = try await manager.attach(name, AttachRequest(client: client, force: false, readOnly: false))
        let allocated = try await manager.allocateChunk(name, index: 0, AllocateChunkRequest(client: client, epoch: map.volume.epoch))
        return try XCTUnwrap(allocated.chunks.first { $0.index == 0 })
    }

    func chunk(_ name: String = "vol", _ index: ChunkIndex = 0) async throws -> ChunkRecord? {
        try await manager.map(name).chunks.first { $0.index == index }
    }

    func epoch(_ name: String = "vol") async throws -> Epoch { try await manager.volume(name).epoch }

    func node(_ id: NodeID) async throws -> NodeRecord? { try await manager.listNodes().first { $0.id == id } }
}

func assertThrowsCairnError<T>(_ body: () async throws -> T, file: StaticString = #filePath, line: UInt = #line,
                               _ check: (CairnError) -> Bool) async {
    do {
        _ = try await body()
        XCTFail("expected an error", file: file, line: line)
    } catch let e as CairnError {
        XCTAssertTrue(check(e), "unexpected error \(e)", file: file, line: line)
    } catch {
        XCTFail("unexpected error \(error)", file: file, line: line)
    }
}

func isInvalidArgument(_ e: CairnError) -> Bool { if case .invalidArgument = e { return true }; return false }
func isConflict(_ e: CairnError) -> Bool { if case .conflict = e { return true }; return false }
func isInsufficientNodes(_ e: CairnError) -> Bool { if case .insufficientNodes = e { return true }; return false }
func isNotFound(_ e: CairnError) -> Bool { if case .notFound = e { return true }; return false }

/// Polls `condition` until it holds or `seconds` of real time pass (rebuilds run in Tasks).
func eventually(within seconds: Double = 5, _ condition: () async throws -> Bool) async throws -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if try await condition() { return true }
        try await Task.sleep(for: .milliseconds(5))
    }
    return try await condition()
}

// XCTest's assertions take synchronous autoclosures; these take asynchronous ones.
func assertEq<T: Equatable>(_ a: @autoclosure () async throws -> T, _ b: @autoclosure () async throws -> T,
                            _ message: String = "", file: StaticString = #filePath, line: UInt = #line) async {
    do {
        let (x, y) = (try await a(), try await b())
        XCTAssertEqual(x, y, message, file: file, line: line)
    } catch { XCTFail("threw \(error) \(message)", file: file, line: line) }
}

func assertNil<T>(_ a: @autoclosure () async throws -> T?, _ message: String = "",
                  file: StaticString = #filePath, line: UInt = #line) async {
    do { let x = try await a(); XCTAssertNil(x, message, file: file, line: line) } catch {
        XCTFail("threw \(error) \(message)", file: file, line: line)
    }
}

func assertNotNil<T>(_ a: @autoclosure () async throws -> T?, _ message: String = "",
                     file: StaticString = #filePath, line: UInt = #line) async {
    do { let x = try await a(); XCTAssertNotNil(x, message, file: file, line: line) } catch {
        XCTFail("threw \(error) \(message)", file: file, line: line)
    }
}

func assertTrue(_ a: @autoclosure () async throws -> Bool, _ message: String = "",
                file: StaticString = #filePath, line: UInt = #line) async {
    do { let x = try await a(); XCTAssertTrue(x, message, file: file, line: line) } catch {
        XCTFail("threw \(error) \(message)", file: file, line: line)
    }
}
