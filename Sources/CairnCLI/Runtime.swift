// Process plumbing shared by the daemons: logging, event loops, waiting for a signal.
import CairnCore
import Foundation
import Logging
import NIOCore
import NIOPosix

enum Runtime {
    static let bootstrapLogging: Void = {
        let level = Logger.Level(rawValue: ProcessInfo.processInfo.environment["CAIRN_LOG_LEVEL"] ?? "info") ?? .info
        LoggingSystem.bootstrap { label in
            var h = StreamLogHandler.standardError(label: label)
            h.logLevel = level
            return h
        }
    }()

    static func logger(_ label: String) -> Logger {
        _ = bootstrapLogging
        return Logger(label: label)
    }

    static let group: EventLoopGroup = MultiThreadedEventLoopGroup(numberOfThreads: max(2, System.coreCount))

    /// Suspends until SIGINT or SIGTERM arrives.
    static func waitForTermination() async -> Int32 {
        await withCheckedContinuation { (cont: CheckedContinuation<Int32, Never>) in
            let fired = Locked(false)
            var sources: [DispatchSourceSignal] = []
            for sig in [SIGINT, SIGTERM] {
                signal(sig, SIG_IGN)
                let s = DispatchSource.makeSignalSource(signal: sig, queue: .global())
                s.setEventHandler {
                    let first = fired.withLock { f -> Bool in defer { f = true }; return !f }
                    if first { cont.resume(returning: sig) }
                }
                s.resume()
                sources.append(s)
            }
            keepAlive.withLock { $0 += sources }
        }
    }

    private static let keepAlive = Locked<[DispatchSourceSignal]>([])
}
