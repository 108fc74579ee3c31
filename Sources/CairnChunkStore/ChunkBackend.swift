// CairnChunkStore: the chunk replicas of one storage node data directory (one per disk).
//
// Invariants:
// - Every data block carries the CRC32C of its full 4 KiB contents in the block table of
//   its chunk; a read verifies every data block it touches and never returns bad bytes.
// - A mutation (write, trim, putBlocks, delete) is durable when its call returns.
// - Client writes and trims set the version of the blocks they touch, in arrival order;
//   repair copies (putBlocks) never replace a newer version.
//
// Fault model: the process or the machine may stop at any instant (torn journal tails,
// lost page cache); disks may flip bits (caught by the per-block CRC). See Journal.swift
// for how DiskChunkStore survives a crash.
import CairnCore

/// Identity of one chunk replica: the volume it belongs to and its index in the volume.
public struct ChunkKey: Hashable, Sendable, CustomStringConvertible {
    public var volume: VolumeID
    public var chunk: ChunkIndex
    public init(volume: VolumeID, chunk: ChunkIndex) { self.volume = volume; self.chunk = chunk }
    public var description: String { "\(ChunkKey.hex(volume))/\(chunk)" }
    /// The 16-digit lowercase hexadecimal spelling of a volume ID used in file names.
    static func hex(_ volume: VolumeID) -> String {
        let digits = String(volume, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }
}

/// One block handed to `putBlocks`: `data` is nil for holes.
public typealias BlockCopy = (index: Int, entry: BlockEntry, data: [UInt8]?)

/// The bytes of one write, held without copying for as long as this object lives: either
/// borrowed from an owner that keeps them alive and unchanged (a network buffer's storage),
/// or a private copy. The disk store journals and applies them straight from here.
public final class ChunkPayload: @unchecked Sendable {
    public let bytes: UnsafeRawBufferPointer
    /// Keeps borrowed bytes alive; nil when `bytes` is our own allocation.
    private let owner: AnyObject?

    /// Borrows `bytes`; the caller promises that `owner` keeps them alive and that nobody
    /// changes them while `owner` is referenced (true for a NIO ByteBuffer's storage: a
    /// writer holding another reference to it copies first).
    public init(borrowing bytes: UnsafeRawBufferPointer, owner: AnyObject) {
        self.bytes = bytes
        self.owner = owner
    }

    /// A private copy of `data`.
    public init(copying data: [UInt8]) {
        let copy = UnsafeMutableRawBufferPointer.allocate(byteCount: data.count, alignment: 16)
        data.withUnsafeBytes { if $0.count > 0 { copy.copyMemory(from: $0) } }
        bytes = UnsafeRawBufferPointer(copy)
        owner = nil
    }

    deinit {
        if owner == nil { bytes.deallocate() }
    }

    public var count: Int { bytes.count }
}

/// The interface every backend (real disk, in-memory simulation, fault wrapper) implements.
public protocol ChunkBackend: AnyObject, Sendable {
    /// Bytes per chunk, a multiple of `blockSize`.
    var chunkSize: Int { get }
    /// Durable when it returns. `offset`/`data.count` may be unaligned: partial blocks are
    /// merged with read-modify-write. Touched blocks get `version` (no max with the old one).
    func write(_ key: ChunkKey, offset: Int, data: [UInt8], version: BlockVersion) async throws
    /// The same as `write(_:offset:data:version:)`, for bytes the caller holds in a
    /// `ChunkPayload`: the disk store writes them without a user-space copy.
    func write(_ key: ChunkKey, offset: Int, payload: ChunkPayload, version: BlockVersion) async throws
    /// Fully covered blocks become holes, partially covered bytes are zeroed. Durable when
    /// it returns. Touched blocks get `version`.
    func trim(_ key: ChunkKey, offset: Int, length: Int, version: BlockVersion) async throws
    /// Exactly `length` bytes; holes, unwritten blocks and missing chunks read as zeroes.
    /// Throws `CairnError.checksumMismatch(block:)` (index within the chunk) on a bad block.
    func read(_ key: ChunkKey, offset: Int, length: Int) async throws -> [UInt8]
    /// Block table entries [first, first+count); a missing chunk reads as holes at `.zero`.
    func blockTable(_ key: ChunkKey, first: Int, count: Int) async throws -> [BlockEntry]
    /// Repair copy: applies each block (data and entry as given) only where the stored
    /// version is <= the given one, or the stored version's epoch is < `overwriteBelow`
    /// (a rebuild at epoch E replaces anything that predates E, e.g. an unacknowledged
    /// write). Data blocks must match `entry.crc` or the call throws `checksumMismatch`
    /// before anything is applied. Durable when it returns. Returns the blocks applied.
    func putBlocks(_ key: ChunkKey, blocks: [BlockCopy], overwriteBelow: Epoch) async throws -> Int
    /// One full block and its stored entry, without verifying the CRC (the caller does).
    /// Holes read as zeroes.
    func readBlockRaw(_ key: ChunkKey, index: Int) async throws -> (BlockEntry, [UInt8])
    func deleteChunk(_ key: ChunkKey) async throws
    /// Copy-up from a snapshot layer: makes `to` a copy of `from` (block table with its
    /// versions, and data) in this store, durable when it returns. A `to` that exists is
    /// kept as it is (a repeated order); a missing `from` (never written) leaves `to`
    /// missing, which reads the same. Returns whether a copy was made.
    func copyChunk(from: ChunkKey, to: ChunkKey) async throws -> Bool
    /// Deletes every chunk of the volume and its fencing epoch.
    func deleteVolume(_ volume: VolumeID) async throws
    /// The volume's fencing epoch (0 if never raised).
    func epoch(of volume: VolumeID) -> Epoch
    /// Stores max(current, epoch) durably and returns the stored epoch.
    func raiseEpoch(of volume: VolumeID, to epoch: Epoch) throws -> Epoch
    func inventory() -> [ChunkKey]
    /// Capacity of the file system holding the data and bytes allocated by this store.
    func usage() -> (capacityBytes: UInt64, usedBytes: UInt64)
    func close() throws
}

extension ChunkBackend {
    /// Backends without a zero-copy path (the in-memory simulation) take an array copy.
    public func write(_ key: ChunkKey, offset: Int, payload: ChunkPayload, version: BlockVersion) async throws {
        try await write(key, offset: offset, data: [UInt8](payload.bytes), version: version)
    }

    /// Repair copy with the plain version rule: stored version <= given version.
    public func putBlocks(_ key: ChunkKey, blocks: [BlockCopy]) async throws -> Int {
        try await putBlocks(key, blocks: blocks, overwriteBelow: 0)
    }
}
