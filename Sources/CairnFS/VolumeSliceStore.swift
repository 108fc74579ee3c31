// Slices on replicated block volumes. Each mount writes only to its own data volume
// (`<fs>.d.<mount id>`, created at mount, attached with this mount as its single
// writer), appending: a byte of it is written once and never changed, so the slices
// the file maps reference are immutable. Other mounts' volumes are read through
// read-only clients that re-read the volume map when a chunk is new to them.
import CairnClient
import CairnCore
import Foundation
import NIOCore

public final class VolumeSliceStore: SliceStore, @unchecked Sendable {
    /// Slices start on block boundaries so no two writes share a block.
    static let alignment: UInt64 = 4096

    public let writer: VolumeClient
    let openReader: @Sendable (String) async throws -> VolumeClient
    /// Next free byte of the writer's volume. Guarded by its lock.
    private let next = Locked<UInt64>(0)
    private let readers = Locked<[String: VolumeClient]>([:])

    /// - Parameters:
    ///   - writer: this mount's data volume, attached for writing, empty.
    ///   - openReader: opens another mount's data volume read-only.
    public init(writer: VolumeClient, openReader: @escaping @Sendable (String) async throws -> VolumeClient) {
        self.writer = writer; self.openReader = openReader
    }

    /// The bytes go to the volume client as they are (no copy).
    public func append(_ bytes: ByteBuffer) async throws -> (volume: String, offset: UInt64) {
        let length = UInt64(bytes.readableBytes)
        let capacity = writer.size
        let offset = try next.withLock { n -> UInt64 in
            guard n + length <= capacity else {
                throw FSError.noSpace("data volume \(writer.name) is full (\(capacity) bytes)")
            }
            defer { n = (n + length + Self.alignment - 1) / Self.alignment * Self.alignment }
            return n
        }
        do {
            try await writer.write(offset: offset, data: bytes, fua: true)
        } catch {
            throw FSError.io("writing \(bytes.readableBytes) bytes to \(writer.name): \(error)")
        }
        return (writer.name, offset)
    }

    public var appendVolume: String { writer.name }
    public var appendMark: UInt64 { next.withLock { $0 } }

    public func trimOwn(_ ranges: [Range<UInt64>]) async throws {
        for r in ranges {
            do {
                try await writer.trim(offset: r.lowerBound, length: Int(r.count))
            } catch {
                throw FSError.io("trimming \(r.count) bytes of \(writer.name) at \(r.lowerBound): \(error)")
            }
        }
    }

    /// The volume client's buffer as it came off the wire (no copy).
    public func read(volume: String, offset: UInt64, length: Int) async throws -> ByteBuffer {
        do {
            return try await client(volume).read(offset: offset, length: length)
        } catch let e as FSError {
            throw e
        } catch {
            throw FSError.io("reading \(length) bytes of \(volume) at \(offset): \(error)")
        }
    }

    func client(_ volume: String) async throws -> VolumeClient {
        if volume == writer.name { return writer }
        if let c = readers.withLock({ $0[volume] }) { return c }
        let c = try await openReader(volume)
        return readers.withLock { r in
            if let existing = r[volume] { return existing }
            r[volume] = c
            return c
        }
    }

    public func close() async {
        await writer.close()
    }
}
