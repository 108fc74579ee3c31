// A small HTTP/1.1 server for the manager's JSON API and every daemon's /metrics,
// /healthz and /readyz. Routing and authentication are the caller's: it gets whole
// requests (bodies up to `HTTPLimits.bodyMax`) and returns whole responses.
import CairnCore
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix

public enum HTTPLimits {
    public static let bodyMax = 8 << 20
}

public struct HTTPRequest: Sendable {
    public var method: String
    public var path: String
    public var query: [String: String]
    public var headers: [String: String]
    public var body: [UInt8]

    public func header(_ name: String) -> String? { headers[name.lowercased()] }
}

public struct HTTPResponse: Sendable {
    public var status: Int
    public var contentType: String
    public var body: [UInt8]
    public init(status: Int, contentType: String = "application/json", body: [UInt8]) {
        self.status = status; self.contentType = contentType; self.body = body
    }
    public static func text(_ s: String, status: Int = 200) -> HTTPResponse {
        HTTPResponse(status: status, contentType: "text/plain; charset=utf-8", body: Array(s.utf8))
    }
}

public typealias HTTPHandlerFunction = @Sendable (HTTPRequest) async -> HTTPResponse

public final class HTTPServer: @unchecked Sendable {
    private let host: String
    private let port: Int
    private let group: EventLoopGroup
    private let handler: HTTPHandlerFunction
    private var channel: Channel?

    public init(host: String, port: Int, group: EventLoopGroup, handler: @escaping HTTPHandlerFunction) {
        self.host = host; self.port = port; self.group = group; self.handler = handler
    }

    public func start() async throws -> Int {
        let handler = self.handler
        let ch = try await ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            // Small request/answer exchanges (a mount's metadata calls): never hold an
            // answer back waiting for the peer's ACK.
            .childChannelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.pipeline.configureHTTPServerPipeline(withErrorHandling: true).flatMap {
                    channel.pipeline.addHandler(HTTPServerRequestHandler(handler: handler))
                }
            }
            .bind(host: host, port: port).get()
        channel = ch
        return ch.localAddress?.port ?? port
    }

    public func stop() async {
        try? await channel?.close().get()
    }
}

final class HTTPServerRequestHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart
    private let handler: HTTPHandlerFunction
    private var head: HTTPRequestHead?
    private var body: [UInt8] = []
    private var tooLarge = false

    init(handler: @escaping HTTPHandlerFunction) { self.handler = handler }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h):
            head = h; body = []; tooLarge = false
        case .body(var chunk):
            if body.count + chunk.readableBytes > HTTPLimits.bodyMax { tooLarge = true; return }
            body += chunk.readBytes(length: chunk.readableBytes) ?? []
        case .end:
            guard let head else { return }
            self.head = nil
            let keepAlive = head.isKeepAlive
            let channel = context.channel
            if tooLarge {
                respond(channel: channel, version: head.version, keepAlive: false,
                        response: .text("request body above \(HTTPLimits.bodyMax) bytes\n", status: 413))
                return
            }
            let request = Self.makeRequest(head, body: body)
            let handler = self.handler
            Task {
                let response = await handler(request)
                channel.eventLoop.execute {
                    self.respond(channel: channel, version: head.version, keepAlive: keepAlive, response: response)
                }
            }
        }
    }

    private func respond(channel: Channel, version: HTTPVersion, keepAlive: Bool, response: HTTPResponse) {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: response.contentType)
        headers.add(name: "Content-Length", value: "\(response.body.count)")
        headers.add(name: "Connection", value: keepAlive ? "keep-alive" : "close")
        let head = HTTPResponseHead(version: version, status: HTTPResponseStatus(statusCode: response.status), headers: headers)
        channel.write(NIOAny(HTTPServerResponsePart.head(head)), promise: nil)
        var buffer = channel.allocator.buffer(capacity: response.body.count)
        buffer.writeBytes(response.body)
        channel.write(NIOAny(HTTPServerResponsePart.body(.byteBuffer(buffer))), promise: nil)
        let done = channel.writeAndFlush(NIOAny(HTTPServerResponsePart.end(nil)))
        if !keepAlive { done.whenComplete { _ in channel.close(promise: nil) } }
    }

    static func makeRequest(_ head: HTTPRequestHead, body: [UInt8]) -> HTTPRequest {
        var path = head.uri
        var query: [String: String] = [:]
        if let q = head.uri.firstIndex(of: "?") {
            path = String(head.uri[..<q])
            for pair in head.uri[head.uri.index(after: q)...].split(separator: "&") {
                let kv = pair.split(separator: "=", maxSplits: 1).map { String($0).removingPercentEncoding ?? String($0) }
                query[kv[0]] = kv.count > 1 ? kv[1] : ""
            }
        }
        var headers: [String: String] = [:]
        for (name, value) in head.headers { headers[name.lowercased()] = value }
        return HTTPRequest(method: head.method.rawValue, path: path.removingPercentEncoding ?? path,
                           query: query, headers: headers, body: body)
    }
}
