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

    /// `baseURL` is `http://host:port`; `path` starts with `/`. `peer` names the server in
    /// error messages ("the manager", "etcd at ...").
    public static func request(_ method: String, baseURL: String, path: String, headers: [(String, String)] = [],
                               body: [UInt8] = [], group: EventLoopGroup,
                               timeout: TimeAmount = .seconds(30), peer: String? = nil) async throws -> Response {
        let peer = peer ?? "the manager at \(baseURL)"
        let promise = group.next().makePromise(of: Response.self)
        let collector = ResponseCollector(promise: promise, peer: peer)
        let channel = try await send(method, baseURL: baseURL, path: path, headers: headers, body: body,
                                     group: group, peer: peer, handler: collector, promise: promise)
        let timer = channel.eventLoop.scheduleTask(in: timeout) {
            promise.fail(CairnError.unavailable("\(peer) did not answer in time"))
            channel.close(promise: nil)
        }
        defer { timer.cancel(); channel.close(promise: nil) }
        return try await promise.futureResult.get()
    }

    /// Sends one request and hands each piece of the response body to `onBody` (on an event
    /// loop thread) as it arrives, for streamed answers. The request ends when the body
    /// ends, when `onBody` returns true (it has what it wanted), or after `timeout`; the
    /// answer says which. A failure to connect or a reset connection throws.
    public static func stream(_ method: String, baseURL: String, path: String, headers: [(String, String)] = [],
                              body: [UInt8] = [], group: EventLoopGroup, timeout: TimeAmount, peer: String,
                              onBody: @escaping @Sendable ([UInt8]) -> Bool) async throws -> StreamEnd {
        let promise = group.next().makePromise(of: StreamEnd.self)
        let collector = StreamCollector(promise: promise, peer: peer, onBody: onBody)
        let channel = try await send(method, baseURL: baseURL, path: path, headers: headers, body: body,
                                     group: group, peer: peer, handler: collector, promise: promise)
        let timer = channel.eventLoop.scheduleTask(in: timeout) {
            promise.succeed(StreamEnd(status: collector.status, reason: .timedOut))
            channel.close(promise: nil)
        }
        defer { timer.cancel(); channel.close(promise: nil) }
        return try await promise.futureResult.get()
    }

    public struct StreamEnd: Sendable {
        public enum Reason: Sendable { case ended, enough, timedOut }
        public var status: Int
        public var reason: Reason
    }

    /// Connects, installs `handler` after the HTTP codec and writes the whole request.
    private static func send<T>(_ method: String, baseURL: String, path: String, headers: [(String, String)],
                                body: [UInt8], group: EventLoopGroup, peer: String,
                                handler: ChannelHandler & Sendable, promise: EventLoopPromise<T>) async throws -> Channel {
        guard baseURL.hasPrefix("http://") else {
            let e = CairnError.invalidArgument("address '\(baseURL)' must start with http://")
            promise.fail(e)
            throw e
        }
        var hostPort = String(baseURL.dropFirst("http://".count))
        while hostPort.hasSuffix("/") { hostPort.removeLast() }
        let channel: Channel
        do {
            let (host, port) = try parseHostPort(hostPort.contains(":") ? hostPort : hostPort + ":80")
            channel = try await ClientBootstrap(group: group)
                .connectTimeout(.seconds(3))
                .channelInitializer { ch in
                    ch.pipeline.addHTTPClientHandlers().flatMap { ch.pipeline.addHandler(handler) }
                }
                .connect(host: host, port: port).get()
        } catch {
            let e = (error as? CairnError) ?? CairnError.unavailable("cannot reach \(peer): \(Self.describe(error))")
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
        return channel
    }

    static func describe(_ error: Error) -> String {
        let text = "\(error)"
        if text.contains("connectionRefused") || text.contains("Connection refused") { return "connection refused" }
        if text.contains("connectTimeout") { return "connection timed out" }
        return text
    }
}

final class ResponseCollector: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPClientResponsePart
    private let promise: EventLoopPromise<HTTPClient.Response>
    private let peer: String
    private var status = 0
    private var body: [UInt8] = []
    private var done = false

    init(promise: EventLoopPromise<HTTPClient.Response>, peer: String) { self.promise = promise; self.peer = peer }

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
        if !done { done = true; promise.fail(CairnError.unavailable("\(peer) closed the connection")) }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if !done { done = true; promise.fail(CairnError.unavailable("connection to \(peer) failed: \(error)")) }
        context.close(promise: nil)
    }
}

/// Hands body pieces to a callback as they arrive; see `HTTPClient.stream`. Lives on one
/// event loop; `status` is read by the timeout task on the same loop.
final class StreamCollector: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPClientResponsePart
    private let promise: EventLoopPromise<HTTPClient.StreamEnd>
    private let peer: String
    private let onBody: @Sendable ([UInt8]) -> Bool
    private(set) var status = 0
    private var done = false

    init(promise: EventLoopPromise<HTTPClient.StreamEnd>, peer: String, onBody: @escaping @Sendable ([UInt8]) -> Bool) {
        self.promise = promise; self.peer = peer; self.onBody = onBody
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !done else { return }
        switch unwrapInboundIn(data) {
        case .head(let h): status = Int(h.status.code)
        case .body(var b):
            if onBody(b.readBytes(length: b.readableBytes) ?? []) {
                done = true
                promise.succeed(HTTPClient.StreamEnd(status: status, reason: .enough))
                context.close(promise: nil)
            }
        case .end:
            done = true
            promise.succeed(HTTPClient.StreamEnd(status: status, reason: .ended))
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if !done { done = true; promise.fail(CairnError.unavailable("\(peer) closed the connection")) }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if !done { done = true; promise.fail(CairnError.unavailable("connection to \(peer) failed: \(error)")) }
        context.close(promise: nil)
    }
}
