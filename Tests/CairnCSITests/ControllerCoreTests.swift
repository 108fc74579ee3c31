import CairnCSIProto
import CairnCore
import CairnMeta
import XCTest
@testable import CairnCSI

/// The cluster in memory: volumes and snapshots in a dictionary, records in a MemoryMetaStore.
final class FakeBackend: ClusterBackend, @unchecked Sendable {
    let lock = NSLock()
    var volumes: [String: VolumeRecord] = [:]
    var snaps: [String: SnapshotInfo] = [:]
    var nextID: UInt64 = 1
    let records: MetaStore = MemoryMetaStore()

    func clusterStatus() async throws -> ClusterStatus {
        ClusterStatus(nodes: [], volumes: [], capacityBytes: 300 << 30, usedBytes: 0)
    }
    func volume(_ name: String) async throws -> VolumeStatus? {
        lock.withLock { volumes[name] }.map {
            VolumeStatus(volume: $0, health: .healthy, chunksAllocated: 0, chunksDegraded: 0, chunksRebuilding: 0,
                         rebuildCopiedBytes: 0, rebuildTotalBytes: 0)
        }
    }
    func volumeNames(prefix: String) async throws -> [String] {
        lock.withLock { volumes.keys.filter { $0.hasPrefix(prefix) } }
    }
    func createVolume(_ r: CreateVolumeRequest) async throws -> VolumeRecord {
        try lock.withLock {
            if let v = volumes[r.name] {
                if v.createRequestID == r.requestID { return v }
                throw CairnError.alreadyExists("exists")
            }
            var v = VolumeRecord(id: nextID, name: r.name, sizeBytes: r.sizeBytes, kind: r.kind ?? .block, replicas: r.replicas ?? 3,
                                 replicasMin: r.replicasMin ?? 2, chunkSizeBytes: 64 << 20, epoch: 1, createdAt: 0)
            v.createRequestID = r.requestID
            nextID += 1
            volumes[r.name] = v
            return v
        }
    }
    func cloneVolume(name: String, from: VolumeSource, replicas: Int?, replicasMin: Int?, sizeBytes: UInt64,
                     requestID: String) async throws -> VolumeRecord {
        try await createVolume(CreateVolumeRequest(name: name, sizeBytes: sizeBytes, replicas: replicas, replicasMin: replicasMin,
                                                   requestID: requestID))
    }
    func deleteVolume(_ name: String) async throws { _ = lock.withLock { volumes.removeValue(forKey: name) } }
    func resizeVolume(_ name: String, sizeBytes: UInt64) async throws -> VolumeRecord {
        try lock.withLock {
            guard var v = volumes[name] else { throw CairnError.notFound(name) }
            v.sizeBytes = sizeBytes
            volumes[name] = v
            return v
        }
    }
    func createSnapshot(volume: String, name: String, requestID: String) async throws -> SnapshotInfo {
        lock.withLock {
            let s = SnapshotInfo(id: "\(volume)@\(name)", name: name, volume: volume, sizeBytes: volumes[volume]?.sizeBytes ?? 0,
                                 createdAt: 1000, readyToUse: true)
            snaps[s.id] = s
            return s
        }
    }
    func snapshots(volume: String?) async throws -> [SnapshotInfo] {
        lock.withLock { snaps.values.filter { volume == nil || $0.volume == volume } }
    }
    func snapshot(_ id: String) async throws -> SnapshotInfo? { lock.withLock { snaps[id] } }
    func deleteSnapshot(_ id: String) async throws { _ = lock.withLock { snaps.removeValue(forKey: id) } }
}

func mountCap(_ mode: Csi_V1_VolumeCapability.AccessMode.Mode, fs: String = "") -> Csi_V1_VolumeCapability {
    .with { $0.mount = .with { $0.fsType = fs }; $0.accessMode = .with { $0.mode = mode } }
}
func blockCap(_ mode: Csi_V1_VolumeCapability.AccessMode.Mode) -> Csi_V1_VolumeCapability {
    .with { $0.block = .init(); $0.accessMode = .with { $0.mode = mode } }
}

func assertCode<T>(_ code: CSIError.Code, _ body: () async throws -> T, file: StaticString = #filePath, line: UInt = #line) async {
    do {
        _ = try await body()
        XCTFail("expected \(code.rawValue), got success", file: file, line: line)
    } catch let e as CSIError {
        XCTAssertEqual(e.code, code, e.message, file: file, line: line)
    } catch {
        XCTFail("expected \(code.rawValue), got \(error)", file: file, line: line)
    }
}

final class ControllerCoreTests: XCTestCase {
    func create(_ core: ControllerCore, _ name: String, bytes: Int64 = 10 << 20, params: [String: String] = [:],
                caps: [Csi_V1_VolumeCapability] = [mountCap(.singleNodeWriter)]) async throws -> Csi_V1_Volume {
        try await core.createVolume(.with {
            $0.name = name; $0.capacityRange = .with { $0.requiredBytes = bytes }
            $0.volumeCapabilities = caps; $0.parameters = params
        }).volume
    }

    func testCreateIsIdempotentAndRoundsToTheAllocationUnit() async throws {
        let core = ControllerCore(backend: FakeBackend())
        let a = try await create(core, "pvc-1", bytes: (10 << 20) + 1, params: ["replicas": "2"])
        XCTAssertEqual(a.capacityBytes, (10 << 20) + 4096)
        let b = try await create(core, "pvc-1", bytes: (10 << 20) + 1, params: ["replicas": "2"])
        XCTAssertEqual(a, b)
        await assertCode(.alreadyExists) { try await self.create(core, "pvc-1", params: ["replicas": "3"]) }
        await assertCode(.alreadyExists) { try await self.create(core, "pvc-1", bytes: 100 << 20, params: ["replicas": "2"]) }
    }

    func testCreateChecksItsArguments() async throws {
        let core = ControllerCore(backend: FakeBackend())
        await assertCode(.invalidArgument) { try await self.create(core, "") }
        await assertCode(.invalidArgument) { try await self.create(core, "v", caps: []) }
        await assertCode(.invalidArgument) { try await self.create(core, "v", caps: [.with { $0.accessMode = .with { $0.mode = .singleNodeWriter } }]) }
        await assertCode(.invalidArgument) { try await self.create(core, "v", params: ["color": "blue"]) }
        await assertCode(.invalidArgument) { try await self.create(core, "v", params: ["replicas": "9"]) }
        await assertCode(.invalidArgument) { try await self.create(core, "v", caps: [blockCap(.multiNodeMultiWriter)]) }
        await assertCode(.outOfRange) { try await self.create(core, "v", bytes: Int64(CSILimits.volumeBytesMax) + 1) }
        await assertCode(.outOfRange) {
            try await core.createVolume(.with {
                $0.name = "v"; $0.volumeCapabilities = [mountCap(.singleNodeWriter)]
                $0.capacityRange = .with { $0.requiredBytes = 10 << 20; $0.limitBytes = (10 << 20) - 1 }
            })
        }
    }

    func testMultiNodeMountMakesAFilesystemVolume() async throws {
        let backend = FakeBackend()
        let core = ControllerCore(backend: backend)
        let v = try await create(core, "shared", caps: [mountCap(.multiNodeMultiWriter)])
        XCTAssertEqual(v.volumeContext["kind"], "filesystem")
        XCTAssertEqual(backend.volumes["shared"]?.kind, .filesystem)
    }

    /// Registers node ids as their node plugins would at start.
    func register(_ backend: FakeBackend, _ nodes: [String]) async throws {
        for n in nodes { try await CSINodes(store: backend.records).register(CSINodeRecord(nodeID: n, zone: nil)) }
    }

    func testPublishRefusesASecondNodeForSingleNodeModes() async throws {
        let backend = FakeBackend()
        let core = ControllerCore(backend: backend)
        try await register(backend, ["a", "b"])
        _ = try await create(core, "rwo")
        func publish(_ node: String, _ mode: Csi_V1_VolumeCapability.AccessMode.Mode = .singleNodeWriter) async throws
            -> Csi_V1_ControllerPublishVolumeResponse {
            try await core.publish(.with { $0.volumeID = "rwo"; $0.nodeID = node; $0.volumeCapability = mountCap(mode) })
        }
        _ = try await publish("a")
        _ = try await publish("a")   // idempotent
        await assertCode(.failedPrecondition) { try await publish("b") }
        await assertCode(.alreadyExists) { try await publish("a", .singleNodeReaderOnly) }
        await assertCode(.failedPrecondition) { try await core.deleteVolume(.with { $0.volumeID = "rwo" }) }
        _ = try await core.unpublish(.with { $0.volumeID = "rwo"; $0.nodeID = "a" })
        _ = try await core.unpublish(.with { $0.volumeID = "rwo"; $0.nodeID = "a" })
        _ = try await publish("b")
        await assertCode(.notFound) {
            try await core.publish(.with { $0.volumeID = "nope"; $0.nodeID = "a"; $0.volumeCapability = mountCap(.singleNodeWriter) })
        }
        // A node id no node plugin registered is NOT_FOUND, and records nothing.
        _ = try await core.unpublish(.with { $0.volumeID = "rwo"; $0.nodeID = "b" })
        await assertCode(.notFound) {
            try await core.publish(.with { $0.volumeID = "rwo"; $0.nodeID = "ghost"; $0.volumeCapability = mountCap(.singleNodeWriter) })
        }
        let after = try await core.getVolume(.with { $0.volumeID = "rwo" })
        XCTAssertEqual(after.status.publishedNodeIds, [])
        // Registering again (a restarted plugin) keeps the record.
        try await register(backend, ["a"])
        _ = try await publish("a")
    }

    func testMultiWriterFilesystemPublishesOnManyNodes() async throws {
        let backend = FakeBackend()
        let core = ControllerCore(backend: backend)
        try await register(backend, ["a", "b", "c"])
        _ = try await create(core, "rwx", caps: [mountCap(.multiNodeMultiWriter)])
        for n in ["a", "b", "c"] {
            _ = try await core.publish(.with { $0.volumeID = "rwx"; $0.nodeID = n; $0.volumeCapability = mountCap(.multiNodeMultiWriter) })
        }
        let got = try await core.getVolume(.with { $0.volumeID = "rwx" })
        XCTAssertEqual(got.status.publishedNodeIds, ["a", "b", "c"])
        XCTAssertFalse(got.status.volumeCondition.abnormal)
    }

    func testListVolumesPages() async throws {
        let core = ControllerCore(backend: FakeBackend())
        for i in 0..<5 { _ = try await create(core, "v\(i)") }
        var seen: [String] = []
        var token = ""
        repeat {
            let page = try await core.listVolumes(.with { $0.maxEntries = 2; $0.startingToken = token })
            XCTAssertLessThanOrEqual(page.entries.count, 2)
            seen += page.entries.map(\.volume.volumeID)
            token = page.nextToken
        } while !token.isEmpty
        XCTAssertEqual(seen, ["v0", "v1", "v2", "v3", "v4"])
        await assertCode(.aborted) { try await core.listVolumes(.with { $0.startingToken = "garbage" }) }
    }

    func testDeleteOfAMissingVolumeSucceeds() async throws {
        let core = ControllerCore(backend: FakeBackend())
        _ = try await core.deleteVolume(.with { $0.volumeID = "never-was" })
        await assertCode(.invalidArgument) { try await core.deleteVolume(.init()) }
    }

    func testExpandGrowsAndAsksTheNodeForMountedVolumes() async throws {
        let core = ControllerCore(backend: FakeBackend())
        _ = try await create(core, "grow")
        let r = try await core.expandVolume(.with {
            $0.volumeID = "grow"; $0.capacityRange = .with { $0.requiredBytes = 20 << 20 }
            $0.volumeCapability = mountCap(.singleNodeWriter)
        })
        XCTAssertEqual(r.capacityBytes, 20 << 20)
        XCTAssertTrue(r.nodeExpansionRequired)
        await assertCode(.notFound) {
            try await core.expandVolume(.with { $0.volumeID = "nope"; $0.capacityRange = .with { $0.requiredBytes = 1 << 30 } })
        }
    }

    func testSnapshotsAreIdempotentAndClonesCheckTheirSource() async throws {
        let core = ControllerCore(backend: FakeBackend())
        _ = try await create(core, "src")
        let s1 = try await core.createSnapshot(.with { $0.name = "snap-1"; $0.sourceVolumeID = "src" }).snapshot
        let s2 = try await core.createSnapshot(.with { $0.name = "snap-1"; $0.sourceVolumeID = "src" }).snapshot
        XCTAssertEqual(s1, s2)
        _ = try await create(core, "other")
        await assertCode(.alreadyExists) { try await core.createSnapshot(.with { $0.name = "snap-1"; $0.sourceVolumeID = "other" }) }
        let list = try await core.listSnapshots(.with { $0.sourceVolumeID = "src" })
        XCTAssertEqual(list.entries.map(\.snapshot.snapshotID), [s1.snapshotID])
        let clone = try await core.createVolume(.with {
            $0.name = "from-snap"; $0.volumeCapabilities = [mountCap(.singleNodeWriter)]
            $0.capacityRange = .with { $0.requiredBytes = 10 << 20 }
            $0.volumeContentSource = .with { $0.snapshot = .with { $0.snapshotID = s1.snapshotID } }
        })
        XCTAssertEqual(clone.volume.contentSource.snapshot.snapshotID, s1.snapshotID)
        await assertCode(.notFound) {
            try await core.createVolume(.with {
                $0.name = "from-nothing"; $0.volumeCapabilities = [mountCap(.singleNodeWriter)]
                $0.volumeContentSource = .with { $0.snapshot = .with { $0.snapshotID = "no@such" } }
            })
        }
    }
}
