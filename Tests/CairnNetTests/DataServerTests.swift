import CairnCore
import CairnWire
import Foundation
import Logging
import NIOCore
import NIOPosix
import XCTest
@testable import CairnNet

/// Answers writes with the payload's length after a resume from another thread (as the
/// chunk store's committer does), records where each request ran, fails deletes.
private final class RecordingService: DataService, @unchecked Sendable {
    let lock = NSLock()
    var onLoop: [String: [Bool]] = [:]
    let loops: [EventLoop]

    init(loops: [EventLoop]) { self.loops = loops }

    private func note(_ name: String) {
        let inLoop = loops.contains { $0.inEventLoop }
        lock.withLock { onLoop[name, default: []].append(inLoop) }
    }

    func handle(_ request: DataRequest) async throws -> ByteBuffer {
        switch request {
        case .write(_, _, _, let data):
            note("write")
            await withCheckedContinuation { c in DispatchQueue.global().async { c.resume() } }
            note("write resumed")
            var reply = ByteBuffer()
            reply.writeInteger(UInt64(data.readableBytes))
            return reply
        case .deleteChunk:
            note("delete")
            throw CairnError.io("disk on fire")
        default:
            return ByteBuffer()
        }
    }
}

final class DataServerTests: XCTestCase {
    func testLoopExecutorKeepsATaskOnItsLoopAcrossResumes() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let loop = group.next()
        let seen = await Task(executorPreference: EventLoopTaskExecutor(loop)) { () -> [Bool] in
            var seen = [loop.inEventLoop]
            await withCheckedContinuation { c in DispatchQueue.global().async { c.resume() } }
            seen.append(loop.inEventLoop)
            try? await Task.sleep(for: .milliseconds(1))
            seen.append(loop.inEventLoop)
            return seen
        }.value
        XCTAssertEqual(seen, [true, true, true])
        try await group.shutdownGracefully()
    }

    /// Writes run on the connection's event loop (also after their resume) and get their
    /// replies; other requests run off the loop; errors still come back as errors.
    func testWritesRunOnTheLoopAndOthersOffIt() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        defer { try? group.syncShutdownGracefully() }
        var loops: [EventLoop] = []
        for loop in group.makeIterator() { loops.append(loop) }
        let service = RecordingService(loops: loops)
        let server = DataServer(host: "127.0.0.1", port: 0, secret: "s", service: service, group: group,
                                logger: Logger(label: "test"))
        let port = try await server.start()
        let connection = try await DataConnection.connect(address: "127.0.0.1:\(port)", secret: "s", client: "t", group: group)
        let address = ChunkAddress(volume: 1, chunk: 0, epoch: 1)
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            for i in 1...50 {
                tasks.addTask {
                    var reply = try await connection.expectOK(.write(address, seq: UInt64(i), offset: 0,
                                                                     data: ByteBuffer(repeating: 7, count: i)))
                    XCTAssertEqual(reply.readInteger(as: UInt64.self), UInt64(i))
                }
            }
            try await tasks.waitForAll()
        }
        do {
            _ = try await connection.expectOK(.deleteChunk(address))
            XCTFail("the service's error must reach the client")
        } catch {
            XCTAssertTrue("\(error)".contains("disk on fire"), "\(error)")
        }
        connection.close()
        await server.stop()
        service.lock.withLock {
            XCTAssertEqual(service.onLoop["write"], [Bool](repeating: true, count: 50))
            XCTAssertEqual(service.onLoop["write resumed"], [Bool](repeating: true, count: 50))
            XCTAssertEqual(service.onLoop["delete"], [false])
        }
    }

    /// A request the node never answers fails after its timeout (swept, not a timer per
    /// request); answered requests with a timeout and requests without one are unaffected,
    /// and the connection keeps serving.
    func testUnansweredRequestsTimeOutAndOthersDoNot() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        let server = DataServer(host: "127.0.0.1", port: 0, secret: "s", service: SlowTrimService(), group: group,
                                logger: Logger(label: "test"))
        let port = try await server.start()
        let connection = try await DataConnection.connect(address: "127.0.0.1:\(port)", secret: "s", client: "t", group: group)
        let address = ChunkAddress(volume: 1, chunk: 0, epoch: 1)
        let clock = ContinuousClock()
        let start = clock.now
        async let slowWithoutTimeout = connection.expectOK(.trim(address, seq: 1, offset: 0, length: 4096), timeout: nil)
        do {
            _ = try await connection.expectOK(.trim(address, seq: 2, offset: 0, length: 4096), timeout: .milliseconds(300))
            XCTFail("an unanswered request must time out")
        } catch {
            XCTAssertTrue("\(error)".contains("did not answer within 300 ms"), "\(error)")
        }
        XCTAssertGreaterThanOrEqual(clock.now - start, .milliseconds(300), "not before its deadline")
        for _ in 0..<100 { _ = try await connection.expectOK(.ping, timeout: .milliseconds(300)) }
        try await Task.sleep(for: .milliseconds(500))  // past the answered pings' deadlines
        _ = try await connection.expectOK(.ping, timeout: .milliseconds(300))
        _ = try await slowWithoutTimeout  // answered after 2 s, no timeout
        connection.close()
        await server.stop()
    }
}

/// Answers trims after 2 s, everything else at once.
private final class SlowTrimService: DataService, @unchecked Sendable {
    func handle(_ request: DataRequest) async throws -> ByteBuffer {
        if case .trim = request { try await Task.sleep(for: .seconds(2)) }
        return ByteBuffer()
    }
}
