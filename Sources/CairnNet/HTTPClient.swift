// Minimal HTTP/1.1 client for the control plane: one connection per request
// (the manager API is called at a low rate), whole bodies, bounded sizes and a timeout.
import CairnCore
import NIOCore
import NIOHTTP1
import NIOPosix

public enum HTTPClient {
    public struct Response: Sendable {
        public var status: Int
        public var body: [UInt8]
    }

    /// `baseURL` is `http://host:port`; `path` starts with `/`.
    public static func request(_ method: String, baseURL: String, path: String, headers: [(String, String)] = [],
                               body: [UInt8] = [], group: EventLoopGroup,
                               timeout: TimeAmount = .seconds(30)) async throws -> Response {
        guard baseURL.hasPrefix("http://") else {
            throw CairnError.invalidArgument("manager address '\(baseURL)' must start with http://")
        }
        var hostPort = String(baseURL.dropFirst("http://".count))
        while hostPort.hasSuffix("/") { hostPort.removeLast() }
        let (host, port) = try parseHostPort(hostPort.contains(":") ? hostPort : hostPort + ":80")
        let promise = group.next().makePromise(of: Response.self)
        let collector = ResponseCollector(promise: promise)
        let channel: Channel
        do {
            channel = try await ClientBootstrap(group: group)
                .connectTimeout(.seconds(3))
                .channelInitializer { ch in
                    ch.pipeline.addHTTPClientHandlers().flatMap { ch.pipeline.addHandler(collector) }
                }
                .connect(host: host, port: port).get()
        } catch {
            let e = CairnError.unavailable("cannot reach the manager at \(baseURL): \(Self.describe(error))")
            promise.fail(e)
            throw e
        }
        var h = HTTPHeaders()
        h.add(name: "Host", value: hostPort)
        h.add(name: "Content-Length", value: "\(body.count)")
        h.add(name: "Connection", value: "close")
        for (n, v) in headers { h.add(name: n, value: v) }
        let head = HTTPRequestHead(version: .http1_1, method: HTTPMethod(rawValue: method), uri: path, headers: h)
        channel.write(NIOAny(HTTPClientRequestPart.head(head)), promise: nil)
        var buffer = channel.allocator.buffer(capacity: body.count)
        buffer.writeBytes(body)
        channel.write(NIOAny(HTTPClientRequestPart.body(.byteBuffer(buffer))), promise: nil)
        channel.writeAndFlush(NIOAny(HTTPClientRequestPart.end(nil)), promise: nil)
        let timer = channel.eventLoop.scheduleTask(in: timeout) {
            promise.fail(CairnError.unavailable("the manager at \(baseURL) did not answer in time"))
            channel.close(promise: nil)
        }
        defer { timer.cancel(); channel.close(promise: nil) }
        return try await promise.futureResult.get()
    }

    static func describe(_ error: Error) -> String {
        let text = "\(error)"
        if text.contains("connectionRefused") || text.contains("Connection refused") { return "connection refused" }
        if text.contains("connectTimeout") { return "connection timed out" }
        return text
    }
}

final class ResponseCollector: ChannelInboundHandler {
    typealias InboundIn = HTTPClientResponsePart
    private let promise: EventLoopPromise<HTTPClient.Response>
    private var status = 0
    private var body: [UInt8] = []
    private var done = false

    init(promise: EventLoopPromise<HTTPClient.Response>) { self.promise = promise }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h): status = Int(h.status.code)
        case .body(var b):
            if body.count + b.readableBytes <= HTTPLimits.bodyMax * 4 {
                body += b.readBytes(length: b.readableBytes) ?? []
            }
        case .end:
            done = true
            promise.succeed(HTTPClient.Response(status: status, body: body))
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if !done { done = true; promise.fail(CairnError.unavailable("the manager closed the connection")) }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if !done { done = true; promise.fail(CairnError.unavailable("manager connection failed: \(error)")) }
        context.close(promise: nil)
    }
}
