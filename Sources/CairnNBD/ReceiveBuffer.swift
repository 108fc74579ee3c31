// Bytes a gateway connection received and has not decoded yet.
//
// Decoders hand out slices of these bytes (NBD WRITE payloads, iSCSI data segments) that
// live on while their request runs. Appending the next read to storage such a slice still
// shares makes ByteBuffer copy every unread byte first (copy-on-write): while a 1 MiB write
// arrived in 64 KiB reads, each read copied the part already received, about 8 MiB of
// copies per MiB (half the gateway's CPU for 1 MiB writes at depth 8). So after a decode
// pass that produced messages, the unread tail (a partial request) moves once into storage
// of its own, and the reads that complete it append without copying again.
import NIOCore

public struct ReceiveBuffer {
    public var bytes = ByteBuffer()

    /// Room the moved tail gets at least (a read's worth), so the next reads append in place.
    static let tailCapacityMin = 64 << 10

    public init() {}

    public mutating func append(_ incoming: inout ByteBuffer) {
        if bytes.readableBytes == 0 { bytes = incoming } else { bytes.writeBuffer(&incoming) }
    }

    /// Call after a decode pass: with `decoded` messages, the unread tail moves to a buffer
    /// no decoded slice shares; with none, the buffer stays (it is already the only owner,
    /// or was just received).
    public mutating func passEnded(decoded: Bool, allocator: ByteBufferAllocator) {
        if bytes.readableBytes == 0 {
            bytes = ByteBuffer()
        } else if decoded {
            var own = allocator.buffer(capacity: max(bytes.readableBytes, Self.tailCapacityMin))
            own.writeBuffer(&bytes)
            bytes = own
        }
    }
}
