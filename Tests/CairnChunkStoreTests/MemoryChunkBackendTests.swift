import CairnCore
import XCTest
@testable import CairnChunkStore

final class MemoryChunkBackendTests: XCTestCase {
    private func backend() throws -> MemoryChunkBackend { try MemoryChunkBackend(chunkSize: 1 << 20) }

    func testRoundTrip() async throws { try await ChunkBackendChecks.roundTrip(try backend()) }
    func testTrim() async throws { try await ChunkBackendChecks.trim(try backend()) }
    func testWriteShapes() async throws { try await ChunkBackendChecks.writeShapes(try backend()) }
    func testPutBlocksVersionRule() async throws { try await ChunkBackendChecks.putBlocksVersionRule(try backend()) }
    func testEpochs() throws { try ChunkBackendChecks.epochs(try backend()) }
    func testInventoryAndDelete() async throws { try await ChunkBackendChecks.inventoryAndDelete(try backend()) }
    func testCopyChunk() async throws { try await ChunkBackendChecks.copyChunk(try backend()) }

    func testCorruption() async throws {
        let b = try backend()
        try await ChunkBackendChecks.corruption(b) { b.corruptBlock(ChunkBackendChecks.key, index: 1) }
    }
}

final class FaultyChunkBackendTests: XCTestCase {
    func testInjectedFaultsAndPassThrough() async throws {
        let inner = try MemoryChunkBackend(chunkSize: 1 << 20)
        let faulty = FaultyChunkBackend(wrapping: inner)
        let key = ChunkKey(volume: 1, chunk: 1)
        try await ChunkBackendChecks.roundTrip(faulty)
        faulty.failWrites = true
        await assertThrowsCairn(.io("injected fault: write \(key)")) {
            try await faulty.write(key, offset: 0, data: [1], version: v(1, 1))
        }
        XCTAssertThrowsError(try faulty.raiseEpoch(of: 1, to: 2))
        let stillReadable = try await faulty.read(key, offset: 0, length: 1)
        XCTAssertEqual(stillReadable, [0])
        faulty.failWrites = false
        faulty.failReads = true
        await assertThrowsCairn(.io("injected fault: read \(key)")) { try await faulty.read(key, offset: 0, length: 1) }
        faulty.failReads = false
        faulty.delay = .milliseconds(20)
        let start = ContinuousClock.now
        try await faulty.write(key, offset: 0, data: [1], version: v(1, 1))
        XCTAssertGreaterThanOrEqual(ContinuousClock.now - start, .milliseconds(20))
    }
}
