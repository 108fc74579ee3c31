// A real single-member etcd (Debian etcd-server) started for the tests: its own data
// directory and free loopback ports, killed by its pid when the test class ends.
import CairnCore
import CairnEtcd
import Foundation
import NIOPosix
import XCTest

final class EtcdTestServer: @unchecked Sendable {
    let process: Process
    let directory: URL
    let clientURL: String

    /// Starts etcd and waits until it answers; fails the test when etcd is not installed.
    static func start() throws -> EtcdTestServer {
        let binary = ["/usr/bin/etcd", "/usr/local/bin/etcd"].first { FileManager.default.isExecutableFile(atPath: $0) }
        guard let binary else {
            throw CairnError.unavailable("etcd is not installed (apt-get install etcd-server; tools/setup.sh does it)")
        }
        var lastError: Error = CairnError.unavailable("etcd did not start")
        for _ in 0..<5 {
            let base = Int.random(in: 20_000...45_000)
            do { return try EtcdTestServer(binary: binary, clientPort: base, peerPort: base + 1) } catch { lastError = error }
        }
        throw lastError
    }

    private init(binary: String, clientPort: Int, peerPort: Int) throws {
        directory = URL(fileURLWithPath: "/tmp/cairn-etcd-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        clientURL = "http://127.0.0.1:\(clientPort)"
        let peerURL = "http://127.0.0.1:\(peerPort)"
        process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = [
            "--name", "test", "--data-dir", directory.appendingPathComponent("data").path,
            "--listen-client-urls", clientURL, "--advertise-client-urls", clientURL,
            "--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
            "--initial-cluster", "test=\(peerURL)", "--unsafe-no-fsync",
        ]
        let log = FileHandle(forWritingAtPath: "/dev/null")
        process.standardOutput = log
        process.standardError = log
        try process.run()
        let deadline = Date().addingTimeInterval(15)
        while Date() < deadline {
            guard process.isRunning else { throw CairnError.unavailable("etcd exited at start (port \(clientPort) taken?)") }
            if Self.answers(clientURL) { return }
            Thread.sleep(forTimeInterval: 0.1)
        }
        stop()
        throw CairnError.unavailable("etcd did not answer at \(clientURL) within 15 s")
    }

    private static func answers(_ url: String) -> Bool {
        let sem = DispatchSemaphore(value: 0)
        let ok = Locked(false)
        Task {
            if let client = try? EtcdClient(endpoints: [url], group: MultiThreadedEventLoopGroup.singleton),
               let store = try? EtcdMetaStore(client: client), (try? await store.currentRevision()) != nil {
                ok.withLock { $0 = true }
            }
            sem.signal()
        }
        sem.wait()
        return ok.snapshot
    }

    func stop() {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        try? FileManager.default.removeItem(at: directory)
    }
}
