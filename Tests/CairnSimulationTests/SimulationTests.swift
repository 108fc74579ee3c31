// Deterministic simulation of manager + storage replicas + writer under injected faults:
// node crashes (and returns), network cuts between the writer and one replica, torn
// writes (a writer dying with a write on only some replicas), and silent corruption of
// a stored block. Checkers: every acknowledged byte reads back; replicas of every chunk
// end byte-identical; no replica holds a block failing its checksum.
//
// A fixed set of seeds runs in the test command; CAIRN_SIM_SEED=N replays one seed and
// CAIRN_SIM_SEEDS=N runs that many. The seed is in every failure message.
import CairnChunkStore
import CairnClient
import CairnCore
@testable import CairnManager
@testable import CairnStorage
import CairnWire
import NIOCore
import XCTest

final class SimulationTests: XCTestCase {
    static let volumeSize = 6 << 20
    static let operations = 120

    func testSeeds() async throws {
        let env = ProcessInfo.processInfo.environment
        let seeds: [UInt64]
        if let one = env["CAIRN_SIM_SEED"].flatMap(UInt64.init) {
            seeds = [one]
        } else {
            seeds = Array(1...UInt64(env["CAIRN_SIM_SEEDS"].flatMap(Int.init) ?? 6))
        }
        for seed in seeds {
            do {
                try await runSeed(seed)
            } catch {
                XCTFail("simulation seed \(seed) failed: \(error) (replay: CAIRN_SIM_SEED=\(seed) swift test --filter SimulationTests)")
            }
        }
    }

    /// What the volume must hold: bytes of acknowledged writes, and which bytes are
    /// undefined because a write to them failed or was torn.
    struct Model {
        var bytes: [UInt8]
        var defined: [Bool]
        init(size: Int) { bytes = [UInt8](repeating: 0, count: size); defined = [Bool](repeating: true, count: size) }
        mutating func set(_ offset: Int, _ data: [UInt8]) {
            bytes.replaceSubrange(offset..<offset + data.count, with: data)
            for i in offset..<offset + data.count { defined[i] = true }
        }
        mutating func undefine(_ offset: Int, _ length: Int) { for i in offset..<offset + length { defined[i] = false } }
    }

    func runSeed(_ seed: UInt64) async throws {
        var rng = SeededRandom(seed: seed)
        let cluster = try SimCluster(nodeCount: 4)
        try await cluster.tick()
        _ = try await cluster.manager.createVolume(CreateVolumeRequest(name: "sim", sizeBytes: UInt64(Self.volumeSize), replicas: 3))
        var writerID = 1
        var writer = try await cluster.client("sim", id: "writer\(writerID)")
        var model = Model(size: Self.volumeSize)
        var downNode: Int?
        var cutNode: Int?
        var log: [String] = []

        for step in 0..<Self.operations {
            let roll = Int.random(in: 0..<100, using: &rng)
            switch roll {
            case 0..<55:
                let (offset, length) = Self.randomRange(&rng)
                let data = (0..<length).map { _ in UInt8.random(in: 0...255, using: &rng) }
                do {
                    try await writer.write(offset: UInt64(offset), bytes: data, fua: false)
                    model.set(offset, data)
                } catch {
                    model.undefine(offset, length)
                    log.append("\(step): write failed: \(error)")
                }
            case 55..<63:
                let (offset, length) = Self.randomRange(&rng)
                do {
                    try await writer.trim(offset: UInt64(offset), length: length)
                    model.set(offset, [UInt8](repeating: 0, count: length))
                } catch {
                    model.undefine(offset, length)
                    log.append("\(step): trim failed: \(error)")
                }
            case 63..<72:
                // Read back a random range and check it against the model.
                let (offset, length) = Self.randomRange(&rng)
                let got = try await writer.readBytes(offset: UInt64(offset), length: length)
                try Self.check(got, model, offset: offset, seed: seed, step: step)
            case 72..<78:
                // Crash a node (at most one down at a time: replicas 3, minimum 2).
                if downNode == nil {
                    let i = Int.random(in: 0..<cluster.nodes.count, using: &rng)
                    cluster.net.setDown(cluster.nodes[i].address, true)
                    downNode = i
                    log.append("\(step): crash \(cluster.nodes[i].id)")
                }
            case 78..<83:
                if let i = downNode {
                    cluster.net.setDown(cluster.nodes[i].address, false)
                    downNode = nil
                    log.append("\(step): restart \(cluster.nodes[i].id)")
                }
            case 83..<87:
                // Cut the writer off one replica while the manager still sees it.
                if cutNode == nil && downNode == nil {
                    let i = Int.random(in: 0..<cluster.nodes.count, using: &rng)
                    cluster.net.cut("writer\(writerID)", cluster.nodes[i].address, true)
                    cutNode = i
                    log.append("\(step): cut writer from \(cluster.nodes[i].id)")
                } else if let i = cutNode {
                    cluster.net.cut("writer\(writerID)", cluster.nodes[i].address, false)
                    cutNode = nil
                }
            case 87..<91:
                // Torn write: the writer dies with a write on only some replicas; a new
                // writer attaches (fencing the old one) and reconciles.
                if let torn = try await tearWrite(cluster, writer: writer, rng: &rng) {
                    model.undefine(torn.0, torn.1)
                    await writer.close()
                    if let i = cutNode { cluster.net.cut("writer\(writerID)", cluster.nodes[i].address, false); cutNode = nil }
                    writerID += 1
                    writer = try await cluster.client("sim", id: "writer\(writerID)", force: true)
                    log.append("\(step): torn write, new writer\(writerID)")
                }
            case 91..<95:
                // Silent corruption of one block of one replica, while every node is up;
                // a read preferring that replica must return good data and repair it.
                if downNode == nil, cutNode == nil, let (node, chunk, block) = try await corruptOne(cluster, rng: &rng) {
                    log.append("\(step): corrupt \(cluster.nodes[node].id) chunk \(chunk) block \(block)")
                    let reader = try await cluster.client("sim", id: "reader", readOnly: true, localNode: cluster.nodes[node].id)
                    let offset = Int(chunk) * SimCluster.chunkSize + block * blockSize
                    let got = try await reader.readBytes(offset: UInt64(offset), length: blockSize)
                    try Self.check(got, model, offset: offset, seed: seed, step: step)
                }
            default:
                // Time passes: heartbeats, failure detection, rebuilds.
                try await cluster.tick(seconds: Double(Int.random(in: 1...12, using: &rng)))
            }
            if step % 10 == 0 { try await cluster.tick() }
        }

        // Heal everything and let the cluster converge.
        cluster.net.healAll()
        for _ in 0..<60 {
            try await cluster.tick(seconds: 5)
            if try await fullyHealthy(cluster) { break }
        }
        guard try await fullyHealthy(cluster) else {
            throw CairnError.internalError("seed \(seed): cluster did not heal; log: \(log.suffix(20))")
        }
        // The writer closes: chunks where a failed write may have reached only some
        // replicas are reconciled now that every replica is reachable.
        await writer.close()
        // Checker 1: every acknowledged byte is there, through a fresh reader.
        let reader = try await cluster.client("sim", id: "final-reader", readOnly: true)
        let all = try await reader.readBytes(offset: 0, length: Self.volumeSize)
        try Self.check(all, model, offset: 0, seed: seed, step: -1)
        // Checker 2 and 3: replicas agree and none holds a bad block.
        let checks = try await reader.verifyReplicas(deep: true)
        for c in checks where !c.ok {
            let detail = try await describeDisagreement(cluster, chunk: c.chunk)
            throw CairnError.internalError("seed \(seed): chunk \(c.chunk) replicas disagree: \(c); \(detail); log: \(log.suffix(20))")
        }
    }

    /// The differing block entries of a chunk's replicas, for the failure message.
    func describeDisagreement(_ cluster: SimCluster, chunk: ChunkIndex) async throws -> String {
        let map = try await cluster.manager.map("sim")
        guard let record = map.chunks.first(where: { $0.index == chunk }) else { return "no record" }
        let key = ChunkKey(volume: map.volume.id, chunk: chunk)
        var tables: [(NodeID, [BlockEntry])] = []
        for r in record.replicas {
            guard let n = cluster.nodes.first(where: { $0.id == r.node }) else { continue }
            tables.append((r.node, try await n.backend.blockTable(key, first: 0, count: SimCluster.chunkSize / blockSize)))
        }
        var out: [String] = ["epoch \(map.volume.epoch)", "record \(record)"]
        for i in 0..<(SimCluster.chunkSize / blockSize) where tables.contains(where: { $0.1[i] != tables[0].1[i] }) {
            out.append("block \(i): " + tables.map { "\($0.0)=\($0.1[i].state) crc \($0.1[i].crc) v\($0.1[i].version)" }.joined(separator: " | "))
        }
        return out.prefix(8).joined(separator: "; ")
    }

    static func randomRange(_ rng: inout SeededRandom) -> (Int, Int) {
        // Mix of block-aligned, unaligned and chunk-crossing ranges.
        let length = [512, 4096, 5000, 16384, 70000][Int.random(in: 0..<5, using: &rng)]
        let offset = Int.random(in: 0..<(volumeSize - length), using: &rng)
        return (Bool.random(using: &rng) ? offset / blockSize * blockSize : offset, length)
    }

    static func check(_ got: [UInt8], _ model: Model, offset: Int, seed: UInt64, step: Int) throws {
        for (i, b) in got.enumerated() where model.defined[offset + i] && model.bytes[offset + i] != b {
            throw CairnError.internalError(
                "seed \(seed) step \(step): byte \(offset + i) is \(b), acknowledged value \(model.bytes[offset + i])")
        }
    }

    func fullyHealthy(_ cluster: SimCluster) async throws -> Bool {
        let map = try await cluster.manager.map("sim")
        return map.chunks.allSatisfy { c in c.replicas.count == 3 && c.replicas.allSatisfy { $0.state == .healthy } }
    }

    /// Sends one write to a strict, non-empty subset of a chunk's replicas, as a writer
    /// dying mid-fan-out would leave it. Returns the range.
    func tearWrite(_ cluster: SimCluster, writer: VolumeClient, rng: inout SeededRandom) async throws -> (Int, Int)? {
        let map = try await cluster.manager.map("sim")
        guard let chunk = map.chunks.randomElement(using: &rng), chunk.replicas.count > 1 else { return nil }
        let length = 4096
        let inChunk = Int.random(in: 0..<(SimCluster.chunkSize / length), using: &rng) * length
        let data = ByteBuffer(bytes: (0..<length).map { _ in UInt8.random(in: 0...255, using: &rng) })
        let address = ChunkAddress(volume: map.volume.id, chunk: chunk.index, epoch: map.volume.epoch)
        let subset = chunk.replicas.prefix(Int.random(in: 1..<chunk.replicas.count, using: &rng))
        for r in subset {
            guard let addr = map.nodes.first(where: { $0.id == r.node })?.address else { continue }
            _ = try? await cluster.net.send(from: "dying-writer", to: addr, .write(address, seq: 1 << 40, offset: UInt32(inChunk), data: data))
        }
        return (Int(chunk.index) * SimCluster.chunkSize + inChunk, length)
    }

    /// Flips a byte of one written block of one healthy replica.
    func corruptOne(_ cluster: SimCluster, rng: inout SeededRandom) async throws -> (Int, ChunkIndex, Int)? {
        let map = try await cluster.manager.map("sim")
        guard let chunk = map.chunks.randomElement(using: &rng),
              let replica = chunk.replicas.filter({ $0.state == .healthy }).randomElement(using: &rng),
              let i = cluster.nodes.firstIndex(where: { $0.id == replica.node }) else { return nil }
        let key = ChunkKey(volume: map.volume.id, chunk: chunk.index)
        let table = try await cluster.nodes[i].backend.blockTable(key, first: 0, count: SimCluster.chunkSize / blockSize)
        let written = table.indices.filter { table[$0].state == .data }
        guard let block = written.randomElement(using: &rng) else { return nil }
        cluster.nodes[i].backend.corruptBlock(key, index: block)
        return (i, chunk.index, block)
    }
}
