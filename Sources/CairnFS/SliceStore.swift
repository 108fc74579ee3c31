// Where file data lives. A mount appends new immutable slices to its own data volume
// and reads any mount's slices; the metadata store only ever holds their locations.
import CairnCore
import NIOCore

public protocol SliceStore: Sendable {
    /// Writes `bytes` durably (acknowledged by every replica) at a place no other slice
    /// uses, and returns where: the file map may reference it from then on.
    func append(_ bytes: ByteBuffer) async throws -> (volume: String, offset: UInt64)
    /// Reads `length` bytes of a slice written by any mount.
    func read(volume: String, offset: UInt64, length: Int) async throws -> ByteBuffer
    /// The volume appends go to, and an offset every append that starts later lands at
    /// or above (the garbage collector's high-water mark, Collector.swift).
    var appendVolume: String { get }
    var appendMark: UInt64 { get }
    /// Gives back ranges (whole blocks) of the append volume that no map references.
    func trimOwn(_ ranges: [Range<UInt64>]) async throws
}

extension SliceStore {
    public func append(_ bytes: [UInt8]) async throws -> (volume: String, offset: UInt64) {
        try await append(ByteBuffer(bytes: bytes))
    }

    public func readBytes(volume: String, offset: UInt64, length: Int) async throws -> [UInt8] {
        Array(try await read(volume: volume, offset: offset, length: length).readableBytesView)
    }
}

/// Slices in memory, for tests and simulation.
public final class MemorySliceStore: SliceStore, DataVolumeAdmin, @unchecked Sendable {
    private let volumes: Locked<[String: [UInt8]]>
    public let volume: String
    public init(volume: String = "memory") { self.volume = volume; volumes = Locked([:]) }
    /// Another mount's store over the same volumes (it appends to `volume`).
    public init(volume: String, sharing other: MemorySliceStore) { self.volume = volume; volumes = other.volumes }

    public var appendVolume: String { volume }
    public var appendMark: UInt64 { volumes.withLock { UInt64($0[volume, default: []].count) } }
    public func trimOwn(_ ranges: [Range<UInt64>]) async throws { try await trim(volume: volume, ranges) }

    /// Zeroes the ranges (what a trimmed block reads as).
    public func trim(volume: String, _ ranges: [Range<UInt64>]) async throws {
        try volumes.withLock { v in
            guard var data = v[volume] else { throw FSError.io("no volume \(volume)") }
            for r in ranges {
                let end = min(Int(r.upperBound), data.count), start = Int(r.lowerBound)
                if start < end { data.replaceSubrange(start..<end, with: repeatElement(0, count: end - start)) }
            }
            v[volume] = data
        }
    }

    public func delete(volume: String) async throws { _ = volumes.withLock { $0.removeValue(forKey: volume) } }

    /// The volumes that exist, for tests.
    public var volumeNames: [String] { volumes.withLock { $0.keys.sorted() } }

    public func append(_ bytes: ByteBuffer) async throws -> (volume: String, offset: UInt64) {
        let name = volume
        return volumes.withLock { v in
            let offset = UInt64(v[name, default: []].count)
            v[name, default: []].append(contentsOf: bytes.readableBytesView)
            return (name, offset)
        }
    }

    public func read(volume: String, offset: UInt64, length: Int) async throws -> ByteBuffer {
        try volumes.withLock { v in
            guard let data = v[volume], offset + UInt64(length) <= UInt64(data.count) else {
                throw FSError.io("slice \(volume)@\(offset)+\(length) does not exist")
            }
            return ByteBuffer(bytes: data[Int(offset)..<Int(offset) + length])
        }
    }
}
