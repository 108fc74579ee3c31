// The storage node's data-path server: authenticates each connection with the cluster
// secret (the first frame must be HELLO), then runs requests concurrently and answers
// each as it completes (out of order). A connection with more than
// `WireLimits.inFlightPerConnectionMax` requests in flight stops being read until some finish.
import CairnCore
import CairnWire
import Logging
import NIOCore
import NIOPosix

/// What a data server serves. Returns the payload of the OK response or throws the error
/// to send back.
public protocol DataService: Sendable {
    func handle(_ request: DataRequest) async throws -> ByteBuffer
}

public final class DataServer: @unchecked Sendable {
    private let host: String
    private let port: Int
    private let secret: String
    private let service: DataService
    private let group: EventLoopGroup
    private let logger: Logger
    private var channel: Channel?

    public init(host: String, port: Int, secret: String, service: DataService, group: EventLoopGroup, logger: Logger) {
        self.host = host; self.port = port; self.secret = secret; self.service = service
        self.group = group; self.logger = logger
    }

    /// Binds and returns the port actually bound (useful with port 0).
    public func start() async throws -> Int {
        let secret = self.secret, service = self.service, logger = self.logger
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.backlog, value: 256)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(ChannelOptions.maxMessagesPerRead, value: 16)
            .childChannelInitializer { channel in
                channel.pipeline.addHandlers([
                    ByteToMessageHandler(RequestFrameDecoder()),
                    DataServerHandler(secret: secret, service: service, logger: logger),
                ])
            }
        let ch = try await bootstrap.bind(host: host, port: port).get()
        channel = ch
        return ch.localAddress?.port ?? port
    }

    public func stop() async {
        try? await channel?.close().get()
    }
}

final class DataServerHandler: ChannelInboundHandler {
    typealias InboundIn = RequestFrame
    private let secret: String
    private let service: DataService
    private let logger: Logger
    private var authenticated = false
    private var inFlight = 0
    private var readPaused = false
    private let flusher = FlushCoalescer()
    /// The connection's event loop as a task executor, made on the first request.
    private var loopExecutor: EventLoopTaskExecutor?

    init(secret: String, service: DataService, logger: Logger) {
        self.secret = secret; self.service = service; self.logger = logger
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        let channel = context.channel
        guard authenticated else {
            authenticate(frame, channel: channel)
            return
        }
        let request: DataRequest
        do {
            request = try DataRequest(frame: frame)
        } catch {
            writeFrame(DataResponse.error(error, for: frame), to: channel, flush: true)
            return
        }
        inFlight += 1
        if inFlight >= WireLimits.inFlightPerConnectionMax && !readPaused {
            readPaused = true
            _ = channel.setOption(ChannelOptions.autoRead, value: false)
        }
        let service = self.service
        let loop = context.eventLoop
        let run: @Sendable () async -> Void = {
            let reply: ResponseFrame
            do {
                let payload = try await service.handle(request)
                reply = ResponseFrame(opcode: frame.opcode, status: .ok, id: frame.id, payload: payload)
            } catch {
                reply = DataResponse.error(error, for: frame)
            }
            if loop.inEventLoop {
                self.finish(reply, channel: channel)
            } else {
                loop.execute { self.finish(reply, channel: channel) }
            }
        }
        if Self.runsOnLoop(request) {
            // Started and resumed on this loop: no cooperative-pool thread to wake for the
            // start, and the reply is written without another hop back.
            let executor = loopExecutor ?? EventLoopTaskExecutor(loop)
            loopExecutor = executor
            Task(executorPreference: executor, operation: run)
        } else {
            Task(operation: run)
        }
    }

    /// The hot, short requests, whose handling only validates, queues to the chunk store and
    /// awaits it. The rest (rebuilds, copies, deletes, repair traffic) may do long work and
    /// stays off the event loop.
    static func runsOnLoop(_ request: DataRequest) -> Bool {
        switch request {
        case .write, .trim, .read, .ping: return true
        default: return false
        }
    }

    private func finish(_ reply: ResponseFrame, channel: Channel) {
        inFlight -= 1
        writeFrame(reply, to: channel, flush: false)
        flusher.flushSoon(channel)
        if readPaused && inFlight < WireLimits.inFlightPerConnectionMax / 2 {
            readPaused = false
            _ = channel.setOption(ChannelOptions.autoRead, value: true)
            channel.read()
        }
    }

    private func authenticate(_ frame: RequestFrame, channel: Channel) {
        if case .hello(let given, let client)? = try? DataRequest(frame: frame), constantTimeEqual(given, secret) {
            authenticated = true
            logger.debug("data client authenticated", metadata: ["client": "\(client)"])
            writeFrame(ResponseFrame(opcode: .hello, status: .ok, id: frame.id, payload: ByteBuffer()), to: channel, flush: true)
            return
        }
        logger.warning("refused a data connection without the cluster secret",
                       metadata: ["peer": "\(channel.remoteAddress.map { "\($0)" } ?? "?")"])
        let refusal = DataResponse.error(
            CairnError.unauthenticated("the cluster secret is missing or wrong"), for: frame)
        writeFrame(refusal, to: channel, flush: true)
        channel.close(promise: nil)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        logger.debug("closing data connection", metadata: ["error": "\(error)"])
        context.close(promise: nil)
    }
}

/// A task executor that runs jobs on one NIO event loop (this SwiftNIO has none of its
/// own). Used by the data server and the NBD/iSCSI gateway's request tasks.
public final class EventLoopTaskExecutor: TaskExecutor, @unchecked Sendable {
    let loop: EventLoop
    public init(_ loop: EventLoop) { self.loop = loop }

    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        let executor = asUnownedTaskExecutor()
        loop.execute { job.runSynchronously(on: executor) }
    }
}
