// Client side of the data path: one TCP connection carrying many requests at once,
// matched to responses by id. A lost connection fails every pending request with
// `unavailable`; a request unanswered within its timeout fails the same way (the caller
// then treats the replica as unreachable).
import CairnCore
import CairnWire
import NIOCore
import NIOPosix

public final class DataConnection: @unchecked Sendable {
    public let address: String
    private let channel: Channel
    private let handler: DataClientHandler

    private init(address: String, channel: Channel, handler: DataClientHandler) {
        self.address = address; self.channel = channel; self.handler = handler
    }

    public var isActive: Bool { channel.isActive }

    /// Connects to `host:port` and authenticates with the cluster secret.
    public static func connect(address: String, secret: String, client: String,
                               group: EventLoopGroup, timeout: TimeAmount = .seconds(3)) async throws -> DataConnection {
        let (host, port) = try parseHostPort(address)
        let handler = DataClientHandler()
        let channel: Channel
        do {
            channel = try await ClientBootstrap(group: group)
                .connectTimeout(timeout)
                .channelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
                .channelInitializer { ch in
                    ch.pipeline.addHandlers([ByteToMessageHandler(ResponseFrameDecoder()), handler])
                }
                .connect(host: host, port: port).get()
        } catch {
            throw CairnError.unavailable("cannot reach storage node \(address): \(error)")
        }
        let connection = DataConnection(address: address, channel: channel, handler: handler)
        let reply = try await connection.call(.hello(secret: secret, client: client), timeout: timeout)
        if let error = DataResponse.error(from: reply) {
            connection.close()
            throw error
        }
        return connection
    }

    /// Sends a request and waits for its response frame (any status).
    public func call(_ request: DataRequest, timeout: TimeAmount? = .seconds(30)) async throws -> ResponseFrame {
        let loop = channel.eventLoop
        let promise = loop.makePromise(of: ResponseFrame.self)
        let channel = self.channel, handler = self.handler
        if loop.inEventLoop {
            handler.send(request, promise: promise, channel: channel, timeout: timeout)
        } else {
            loop.execute { handler.send(request, promise: promise, channel: channel, timeout: timeout) }
        }
        return try await promise.futureResult.get()
    }

    /// Sends a request and returns the OK payload, or throws the error the node answered.
    public func expectOK(_ request: DataRequest, timeout: TimeAmount? = .seconds(30)) async throws -> ByteBuffer {
        let reply = try await call(request, timeout: timeout)
        if let error = DataResponse.error(from: reply) { throw error }
        return reply.payload
    }

    public func close() {
        channel.close(promise: nil)
    }
}

/// Event-loop-confined bookkeeping of one connection's pending requests.
///
/// Timeouts: each pending request carries its deadline, and one repeating sweep per
/// connection (every `sweepInterval`, while requests with a deadline are pending) fails
/// the expired ones. A scheduled task per request would cost a heap insertion on the
/// event loop's timer heap per call and, never cancelled on success, keep every answered
/// request's timer (and its closure) there for the whole timeout: at 10k requests per
/// second and 30 s that heap held hundreds of thousands of dead timers.
final class DataClientHandler: ChannelInboundHandler {
    typealias InboundIn = ResponseFrame
    struct Pending {
        let promise: EventLoopPromise<ResponseFrame>
        let deadline: NIODeadline?
        let timeout: TimeAmount?
    }
    /// How often expired requests are looked for: a timeout fires up to this late.
    static let sweepInterval = TimeAmount.milliseconds(100)
    private var nextID: UInt64 = 1
    private var pending: [UInt64: Pending] = [:]
    private var closed = false
    private let flusher = FlushCoalescer()
    private var sweeper: RepeatedTask?

    func send(_ request: DataRequest, promise: EventLoopPromise<ResponseFrame>, channel: Channel, timeout: TimeAmount?) {
        guard !closed, channel.isActive else {
            promise.fail(CairnError.unavailable("connection to storage node is closed"))
            return
        }
        let id = nextID
        nextID += 1
        pending[id] = Pending(promise: promise, deadline: timeout.map { .now() + $0 }, timeout: timeout)
        writeFrame(request.frame(id: id, allocator: channel.allocator), to: channel, flush: false)
        flusher.flushSoon(channel)
        if timeout != nil && sweeper == nil {
            sweeper = channel.eventLoop.scheduleRepeatedTask(initialDelay: Self.sweepInterval, delay: Self.sweepInterval) {
                [weak self] task in
                guard let self else { return task.cancel() }
                self.sweep(now: .now())
            }
        }
    }

    /// Fails the requests whose deadline passed; stops sweeping when none has a deadline.
    func sweep(now: NIODeadline) {
        var waiting = false
        for (id, p) in pending {
            guard let deadline = p.deadline else { continue }
            if deadline <= now {
                pending.removeValue(forKey: id)
                let ms = (p.timeout?.nanoseconds ?? 0) / 1_000_000
                p.promise.fail(CairnError.unavailable("storage node did not answer within \(ms) ms"))
            } else {
                waiting = true
            }
        }
        if !waiting {
            sweeper?.cancel()
            sweeper = nil
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        pending.removeValue(forKey: frame.id)?.promise.succeed(frame)
    }

    func channelInactive(context: ChannelHandlerContext) {
        failAll(CairnError.unavailable("connection to storage node lost"))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        failAll(CairnError.unavailable("connection to storage node failed: \(error)"))
        context.close(promise: nil)
    }

    private func failAll(_ error: Error) {
        closed = true
        sweeper?.cancel()
        sweeper = nil
        let all = pending
        pending.removeAll()
        for (_, p) in all { p.promise.fail(error) }
    }
}

public func parseHostPort(_ address: String) throws -> (String, Int) {
    guard let colon = address.lastIndex(of: ":"), let port = Int(address[address.index(after: colon)...]),
          port > 0, port < 65536 else {
        throw CairnError.invalidArgument("'\(address)' is not host:port")
    }
    var host = String(address[..<colon])
    if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
    return (host, port)
}

/// Keeps live connections to storage nodes and replaces one when it dies: one per
/// address for callers on no event loop, and one per address and event loop for callers
/// running on an event loop (a gateway's request tasks run on their client connection's
/// loop), so such a caller's requests and replies stay on its own thread instead of
/// crossing to another loop and back (two wake-ups per request).
public final class DataConnectionPool: @unchecked Sendable {
    struct Key: Hashable {
        let address: String
        let loop: ObjectIdentifier?
    }
    private let secret: String
    private let client: String
    private let group: EventLoopGroup
    private let connections = Locked<[Key: Task<DataConnection, Error>]>([:])

    public init(secret: String, client: String, group: EventLoopGroup) {
        self.secret = secret; self.client = client; self.group = group
    }

    public func connection(to address: String) async throws -> DataConnection {
        let loop = MultiThreadedEventLoopGroup.currentEventLoop
        let key = Key(address: address, loop: loop.map { ObjectIdentifier($0 as AnyObject) })
        let task: Task<DataConnection, Error> = connections.withLock { connections in
            if let existing = connections[key] { return existing }
            let on: EventLoopGroup = loop ?? group
            let t = Task { [secret, client] in
                try await DataConnection.connect(address: address, secret: secret, client: client, group: on)
            }
            connections[key] = t
            return t
        }
        do {
            let conn = try await task.value
            if conn.isActive { return conn }
            drop(key, task: task)
            return try await connection(to: address)
        } catch {
            drop(key, task: task)
            throw error
        }
    }

    /// Calls `request` on the node at `address`, returning the OK payload.
    public func expectOK(_ address: String, _ request: DataRequest, timeout: TimeAmount? = .seconds(30)) async throws -> ByteBuffer {
        try await connection(to: address).expectOK(request, timeout: timeout)
    }

    private func drop(_ key: Key, task: Task<DataConnection, Error>) {
        connections.withLock { connections in
            // Only forget the entry if nobody replaced it in the meantime.
            if let current = connections[key], current == task { connections[key] = nil }
        }
    }

    public func closeAll() {
        let all = connections.withLock { connections -> [Task<DataConnection, Error>] in
            let v = Array(connections.values); connections.removeAll(); return v
        }
        for t in all { Task { try? await t.value.close() } }
    }
}
