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
final class DataClientHandler: ChannelInboundHandler {
    typealias InboundIn = ResponseFrame
    private var nextID: UInt64 = 1
    private var pending: [UInt64: EventLoopPromise<ResponseFrame>] = [:]
    private var closed = false
    private let flusher = FlushCoalescer()

    func send(_ request: DataRequest, promise: EventLoopPromise<ResponseFrame>, channel: Channel, timeout: TimeAmount?) {
        guard !closed, channel.isActive else {
            promise.fail(CairnError.unavailable("connection to storage node is closed"))
            return
        }
        let id = nextID
        nextID += 1
        pending[id] = promise
        writeFrame(request.frame(id: id, allocator: channel.allocator), to: channel, flush: false)
        flusher.flushSoon(channel)
        if let timeout {
            channel.eventLoop.scheduleTask(in: timeout) { [weak self] in
                guard let self, let p = self.pending.removeValue(forKey: id) else { return }
                p.fail(CairnError.unavailable("storage node did not answer within \(timeout.nanoseconds / 1_000_000) ms"))
            }
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        pending.removeValue(forKey: frame.id)?.succeed(frame)
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
        let all = pending
        pending.removeAll()
        for (_, p) in all { p.fail(error) }
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

/// Keeps one live connection per storage node address and replaces it when it dies.
public final class DataConnectionPool: @unchecked Sendable {
    private let secret: String
    private let client: String
    private let group: EventLoopGroup
    private let connections = Locked<[String: Task<DataConnection, Error>]>([:])

    public init(secret: String, client: String, group: EventLoopGroup) {
        self.secret = secret; self.client = client; self.group = group
    }

    public func connection(to address: String) async throws -> DataConnection {
        let task: Task<DataConnection, Error> = connections.withLock { connections in
            if let existing = connections[address] { return existing }
            let t = Task { [secret, client, group] in
                try await DataConnection.connect(address: address, secret: secret, client: client, group: group)
            }
            connections[address] = t
            return t
        }
        do {
            let conn = try await task.value
            if conn.isActive { return conn }
            drop(address, task: task)
            return try await connection(to: address)
        } catch {
            drop(address, task: task)
            throw error
        }
    }

    /// Calls `request` on the node at `address`, returning the OK payload.
    public func expectOK(_ address: String, _ request: DataRequest, timeout: TimeAmount? = .seconds(30)) async throws -> ByteBuffer {
        try await connection(to: address).expectOK(request, timeout: timeout)
    }

    private func drop(_ address: String, task: Task<DataConnection, Error>) {
        connections.withLock { connections in
            // Only forget the entry if nobody replaced it in the meantime.
            if let current = connections[address], current == task { connections[address] = nil }
        }
    }

    public func closeAll() {
        let all = connections.withLock { connections -> [Task<DataConnection, Error>] in
            let v = Array(connections.values); connections.removeAll(); return v
        }
        for t in all { Task { try? await t.value.close() } }
    }
}
