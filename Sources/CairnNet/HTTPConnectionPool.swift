// HTTP/1.1 requests over kept-alive connections: a pool of idle connections per base
// URL, so a caller that makes many small requests (a FUSE mount's metadata calls)
// does not pay a TCP connect and an accept for each. One request at a time per
// connection; a connection goes back to the pool only after a whole response that
// did not ask to close. A request that fails on a connection taken from the pool
// before any byte of the answer arrived is sent once more on a new connection (the
// server closed the idle connection); other failures are the caller's.
import CairnCore
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix

public final class HTTPConnectionPool: @unchecked Sendable {
    let group: EventLoopGroup
    /// Idle connections kept per base URL.
    public static let idleMax = 16
    private let idle = Locked<[String: [PooledConnection]]>([:])

    public init(group: EventLoopGroup) { self.group = group }

    public func request(_ method: String, baseURL: String, path: String, headers: [(String, String)] = [],
                        body: [UInt8] = [], timeout: TimeAmount = .seconds(30)) async throws -> HTTPClient.Response {
        let peer = "the manager at \(baseURL)"
        if let c = idle.withLock({ $0[baseURL]?.popLast() }) {
            do {
                return try await send(c, baseURL: baseURL, method: method, path: path, headers: headers, body: body,
                                      timeout: timeout, peer: peer)
            } catch PooledConnection.Failure.closedBeforeAnswer {
                // The idle connection was gone: a new one below.
            }
        }
        let c = try await connect(baseURL, peer: peer)
        do {
            return try await send(c, baseURL: baseURL, method: method, path: path, headers: headers, body: body,
                                  timeout: timeout, peer: peer)
        } catch PooledConnection.Failure.closedBeforeAnswer {
            throw CairnError.unavailable("\(peer) closed the connection")
        }
    }

    public func close() {
        let all = idle.withLock { i -> [PooledConnection] in
            defer { i = [:] }
            return i.values.flatMap { $0 }
        }
        for c in all { c.channel.close(promise: nil) }
    }

    private func send(_ c: PooledConnection, baseURL: String, method: String, path: String, headers: [(String, String)],
                      body: [UInt8], timeout: TimeAmount, peer: String) async throws -> HTTPClient.Response {
        let loop = c.channel.eventLoop
        let promise = loop.makePromise(of: (HTTPClient.Response, Bool).self)
        loop.execute {
            c.handler.start(promise)
            var h = HTTPHeaders()
            h.add(name: "Host", value: c.hostPort)
            h.add(name: "Content-Length", value: "\(body.count)")
            h.add(name: "Connection", value: "keep-alive")
            for (n, v) in headers { h.add(name: n, value: v) }
            let head = HTTPRequestHead(version: .http1_1, method: HTTPMethod(rawValue: method), uri: path, headers: h)
            c.channel.write(NIOAny(HTTPClientRequestPart.head(head)), promise: nil)
            var buffer = c.channel.allocator.buffer(capacity: body.count)
            buffer.writeBytes(body)
            c.channel.write(NIOAny(HTTPClientRequestPart.body(.byteBuffer(buffer))), promise: nil)
            c.channel.writeAndFlush(NIOAny(HTTPClientRequestPart.end(nil)), promise: nil)
        }
        let timer = loop.scheduleTask(in: timeout) {
            promise.fail(CairnError.unavailable("\(peer) did not answer in time"))
            c.channel.close(promise: nil)
        }
        defer { timer.cancel() }
        do {
            let (response, keepAlive) = try await promise.futureResult.get()
            if keepAlive && c.channel.isActive {
                let kept = idle.withLock { i -> Bool in
                    guard i[baseURL, default: []].count < Self.idleMax else { return false }
                    i[baseURL, default: []].append(c)
                    return true
                }
                if !kept { c.channel.close(promise: nil) }
            } else {
                c.channel.close(promise: nil)
            }
            return response
        } catch {
            c.channel.close(promise: nil)
            throw error
        }
    }

    private func connect(_ baseURL: String, peer: String) async throws -> PooledConnection {
        guard baseURL.hasPrefix("http://") else { throw CairnError.invalidArgument("address '\(baseURL)' must start with http://") }
        var hostPort = String(baseURL.dropFirst("http://".count))
        while hostPort.hasSuffix("/") { hostPort.removeLast() }
        let handler = PooledConnection.Handler(peer: peer)
        do {
            let (host, port) = try parseHostPort(hostPort.contains(":") ? hostPort : hostPort + ":80")
            let channel = try await ClientBootstrap(group: group)
                .connectTimeout(.seconds(3))
                .channelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
                .channelInitializer { ch in
                    ch.pipeline.addHTTPClientHandlers().flatMap { ch.pipeline.addHandler(handler) }
                }
                .connect(host: host, port: port).get()
            return PooledConnection(channel: channel, handler: handler, hostPort: hostPort)
        } catch let e as CairnError {
            throw e
        } catch {
            throw CairnError.unavailable("cannot reach \(peer): \(HTTPClient.describe(error))")
        }
    }
}

final class PooledConnection: @unchecked Sendable {
    enum Failure: Error { case closedBeforeAnswer }
    let channel: Channel
    let handler: Handler
    let hostPort: String
    init(channel: Channel, handler: Handler, hostPort: String) { self.channel = channel; self.handler = handler; self.hostPort = hostPort }

    /// Collects one response at a time; all its state lives on the channel's event loop.
    final class Handler: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = HTTPClientResponsePart
        let peer: String
        private var promise: EventLoopPromise<(HTTPClient.Response, Bool)>?
        private var status = 0
        private var keepAlive = false
        private var answered = false
        private var body: [UInt8] = []
        private var inactive = false

        init(peer: String) { self.peer = peer }

        func start(_ p: EventLoopPromise<(HTTPClient.Response, Bool)>) {
            if inactive { p.fail(Failure.closedBeforeAnswer); return }
            promise = p; status = 0; body = []; answered = false; keepAlive = false
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head(let h):
                answered = true
                status = Int(h.status.code)
                keepAlive = h.isKeepAlive
            case .body(var b):
                if body.count + b.readableBytes <= HTTPLimits.bodyMax * 4 { body += b.readBytes(length: b.readableBytes) ?? [] }
            case .end:
                let p = promise
                promise = nil
                p?.succeed((HTTPClient.Response(status: status, body: body), keepAlive))
            }
        }

        func channelInactive(context: ChannelHandlerContext) {
            inactive = true
            fail(answered ? CairnError.unavailable("\(peer) closed the connection") : Failure.closedBeforeAnswer)
        }

        func errorCaught(context: ChannelHandlerContext, error: Error) {
            fail(answered ? CairnError.unavailable("connection to \(peer) failed: \(error)") : Failure.closedBeforeAnswer)
            context.close(promise: nil)
        }

        private func fail(_ e: Error) {
            let p = promise
            promise = nil
            p?.fail(e)
        }
    }
}
