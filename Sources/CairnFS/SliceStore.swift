// Where file data lives. A mount appends new immutable slices to its own data volume
// and reads any mount's slices; the metadata store only ever holds their locations.
import CairnCore

public protocol SliceStore: Sendable {
    /// Writes `bytes` durably (acknowledged by every replica) at a place no other slice
    /// uses, and returns where: the file map may reference it from then on.
    func append(_ bytes: [UInt8]) async throws -> (volume: String, offset: UInt64)
    /// Reads `length` bytes of a slice written by any mount.
    func read(volume: String, offset: UInt64, length: Int) async throws -> [UInt8]
}

/// Slices in memory, for tests and simulation.
public final class MemorySliceStore: SliceStore, @unchecked Sendable {
    private let volumes = Locked<[String: [UInt8]]>([:])
    public let volume: String
    public init(volume: String = "memory") { self.volume = volume }

    public func append(_ bytes: [UInt8]) async throws -> (volume: String, offset: UInt64) {
        let name = volume
        return volumes.withLock { v in
            let offset = UInt64(v[name, default: []].count)
            v[name, default: []].append(contentsOf: bytes)
            return (name, offset)
        }
    }

    public func read(volume: String, offset: UInt64, length: Int) async throws -> [UInt8] {
        try volumes.withLock { v in
            guard let data = v[volume], offset + UInt64(length) <= UInt64(data.count) else {
                throw FSError.io("slice \(volume)@\(offset)+\(length) does not exist")
            }
            return Array(data[Int(offset)..<Int(offset) + length])
        }
    }
}
