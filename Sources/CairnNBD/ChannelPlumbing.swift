// NIO plumbing the gateway's frontends (NBD here, iSCSI in CairnISCSI) share: admitting
// connections up to a limit and closing them at shutdown, and running asynchronous work
// for a channel handler with the result delivered back on its event loop.
import CairnCore
import CairnNet
import Logging
import NIOCore

/// The open connections of one listener, at most `limit` at once; more are closed on accept.
public final class ConnectionAdmission: @unchecked Sendable {
    let limit: Int
    let logger: Logger
    /// Accepted, still open connections; guarded by its lock.
    private let open = Locked<[ObjectIdentifier: Channel]>([:])

    public init(limit: Int, logger: Logger) { self.limit = limit; self.logger = logger }

    /// Admits the channel (tracking it until it closes), or returns false: the caller closes it.
    public func admit(_ channel: Channel) -> Bool {
        let key = ObjectIdentifier(channel)
        let admitted = open.withLock { o -> Bool in
            guard o.count < limit else { return false }
            o[key] = channel
            return true
        }
        guard admitted else {
            logger.warning("connection refused: at the limit", metadata: ["limit": "\(limit)"])
            return false
        }
        channel.closeFuture.whenComplete { _ in _ = self.open.withLock { $0.removeValue(forKey: key) } }
        return true
    }

    /// Closes every admitted connection (server shutdown).
    public func closeAll() async {
        for ch in open.withLock({ Array($0.values) }) { try? await ch.close() }
    }
}

/// Runs `work` as a task and hands its result to `deliver` on the handler's event loop.
/// The handler and context are only touched on that loop.
///
/// The task prefers the channel's event loop as its executor: it starts within the loop's
/// current turn, runs the volume client's synchronous parts there, and resumes there when
/// a storage node answers, instead of handing off to a concurrency pool thread at the start
/// and on every resumption (each hand-off a thread wake-up). Work that blocks must not run
/// here; the volume client only awaits I/O.
public func runAndDeliver<Handler: AnyObject, T>(
    _ handler: Handler, _ context: ChannelHandlerContext, _ work: @escaping @Sendable () async throws -> T,
    _ deliver: @escaping (Handler, ChannelHandlerContext, Result<T, Error>) -> Void
) {
    let loop = context.eventLoop
    let bound = NIOLoopBound((handler, context), eventLoop: loop)
    let deliverBound = NIOLoopBound(deliver, eventLoop: loop)
    Task(executorPreference: EventLoopTaskExecutor(loop)) {
        let result: Result<T, Error>
        do { result = .success(try await work()) } catch { result = .failure(error) }
        let transfer = UnsafeTransfer(result)
        if loop.inEventLoop {
            let (handler, context) = bound.value
            deliverBound.value(handler, context, transfer.value)
            return
        }
        loop.execute {
            let (handler, context) = bound.value
            deliverBound.value(handler, context, transfer.value)
        }
    }
}

/// Moves a value to the event loop that owns it; used only where the value is handed over
/// once and never touched by the sender again.
struct UnsafeTransfer<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}
