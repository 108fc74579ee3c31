// NIO glue for the data-path framing: one decoder per direction, no protocol logic.
import CairnCore
import CairnWire
import NIOCore

final class RequestFrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = RequestFrame
    func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let frame = try FrameCodec.decodeRequest(&buffer) else { return .needMoreData }
        context.fireChannelRead(wrapInboundOut(frame))
        return .continue
    }
    func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        // A peer that hangs up mid-frame sent nothing we can act on: drop the partial bytes.
        buffer.moveReaderIndex(to: buffer.writerIndex)
        return .needMoreData
    }
}

final class ResponseFrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = ResponseFrame
    func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let frame = try FrameCodec.decodeResponse(&buffer) else { return .needMoreData }
        context.fireChannelRead(wrapInboundOut(frame))
        return .continue
    }
    func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        buffer.moveReaderIndex(to: buffer.writerIndex)
        return .needMoreData
    }
}

/// Writes a frame as a header buffer and the payload buffer, so large payloads are not copied.
func writeFrame(_ frame: ResponseFrame, to channel: Channel, flush: Bool) {
    var header = channel.allocator.buffer(capacity: WireLimits.headerSize)
    var headerOnly = frame
    headerOnly.payload = ByteBuffer()
    FrameCodec.encode(headerOnly, into: &header)
    header.setInteger(UInt32(frame.payload.readableBytes), at: header.readerIndex + 16)
    channel.write(NIOAny(header), promise: nil)
    if frame.payload.readableBytes > 0 { channel.write(NIOAny(frame.payload), promise: nil) }
    if flush { channel.flush() }
}

/// Coalesces flushes: the first frame written in an event-loop tick schedules one flush
/// that runs after the frames already queued for that tick, so a burst of requests or
/// replies leaves in one system call instead of one each. Event-loop confined.
final class FlushCoalescer {
    private var scheduled = false
    func flushSoon(_ channel: Channel) {
        guard !scheduled else { return }
        scheduled = true
        channel.eventLoop.execute {
            self.scheduled = false
            channel.flush()
        }
    }
}

func writeFrame(_ frame: RequestFrame, to channel: Channel, flush: Bool = true) {
    var header = channel.allocator.buffer(capacity: WireLimits.headerSize)
    var headerOnly = frame
    headerOnly.payload = ByteBuffer()
    headerOnly.data = ByteBuffer()
    FrameCodec.encode(headerOnly, into: &header)
    header.setInteger(UInt32(frame.wireLength), at: header.readerIndex + 16)
    channel.write(NIOAny(header), promise: nil)
    if frame.payload.readableBytes > 0 { channel.write(NIOAny(frame.payload), promise: nil) }
    if frame.data.readableBytes > 0 { channel.write(NIOAny(frame.data), promise: nil) }
    if flush { channel.flush() }
}

/// Compares two secrets in time that does not depend on where they differ.
func constantTimeEqual(_ a: String, _ b: String) -> Bool {
    let x = Array(a.utf8), y = Array(b.utf8)
    var diff = UInt8(truncatingIfNeeded: x.count ^ y.count)
    for i in 0..<max(x.count, y.count) {
        diff |= (i < x.count ? x[i] : 0) ^ (i < y.count ? y[i] : 0)
    }
    return diff == 0
}
