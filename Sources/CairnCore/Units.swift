// Core value types shared by every Cairn module.
//
// Invariants: block size is 4 KiB everywhere; a volume size and a chunk size are
// multiples of it; block versions are ordered (epoch first, then the writer's sequence).
import CCairnShims
import Foundation

/// Size of the unit that carries one CRC32C and one version on a storage node.
public let blockSize = 4096
/// Default size of the unit of placement and replication.
public let chunkSizeDefault = 64 << 20

/// Identifier of a volume, assigned by the manager; never reused, so a volume deleted and
/// created again under the same name does not meet the old one's replicas.
public typealias VolumeID = UInt64
/// Index of a chunk within its volume.
public typealias ChunkIndex = UInt32
/// Fencing epoch of a volume: bumped (with compare-and-swap) on every change of a chunk's
/// replica set and of the volume's writer.
public typealias Epoch = UInt64
/// Storage node identifier, chosen by the node (persisted in its first data directory).
public typealias NodeID = String

/// Version of a block on a replica: the epoch and the sequence number of the write that
/// produced it. A rebuild or repair copy never overwrites a newer version.
public struct BlockVersion: Comparable, Hashable, Sendable, CustomStringConvertible {
    public var epoch: Epoch
    public var seq: UInt64
    public init(epoch: Epoch, seq: UInt64) { self.epoch = epoch; self.seq = seq }
    public static let zero = BlockVersion(epoch: 0, seq: 0)
    public static func < (a: BlockVersion, b: BlockVersion) -> Bool {
        (a.epoch, a.seq) < (b.epoch, b.seq)
    }
    public var description: String { "\(epoch).\(seq)" }
}

/// CRC32C (Castagnoli) as stored per 4 KiB block.
public enum CRC32C {
    public static func checksum(_ bytes: UnsafeRawBufferPointer, seed: UInt32 = 0) -> UInt32 {
        cairn_crc32c(seed, bytes.baseAddress, bytes.count)
    }
    public static func checksum(_ bytes: [UInt8]) -> UInt32 {
        bytes.withUnsafeBytes { checksum($0) }
    }
    /// CRC32C of one block of zeroes: what a hole reads as.
    public static let zeroBlock: UInt32 = checksum([UInt8](repeating: 0, count: blockSize))
}

/// Byte sizes as people write them: `512MiB`, `10GiB`, `4096`, `1.5TiB`, `2G`.
public enum ByteSize {
    public static func parse(_ text: String) throws -> UInt64 {
        let t = text.trimmingCharacters(in: .whitespaces)
        let units: [(String, UInt64)] = [
            ("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10),
            ("TB", 1_000_000_000_000), ("GB", 1_000_000_000), ("MB", 1_000_000), ("KB", 1000),
            ("T", 1 << 40), ("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10), ("B", 1),
        ]
        var number = Substring(t)
        var multiplier: UInt64 = 1
        for (suffix, value) in units where t.hasSuffix(suffix) {
            number = t.dropLast(suffix.count)
            multiplier = value
            break
        }
        number = Substring(number.trimmingCharacters(in: .whitespaces))
        if let whole = UInt64(number) {
            let (product, overflow) = whole.multipliedReportingOverflow(by: multiplier)
            guard !overflow else { throw CairnError.invalidArgument("size '\(text)' is too large") }
            return product
        }
        if multiplier > 1, let fraction = Double(number), fraction >= 0,
           fraction * Double(multiplier) < Double(UInt64.max / 2) {
            return UInt64(fraction * Double(multiplier))
        }
        throw CairnError.invalidArgument(
            "'\(text)' is not a size: use bytes or a number with KiB, MiB, GiB or TiB, e.g. 10GiB")
    }

    /// Formats a byte count the way people read it: `1.5 GiB`.
    public static func format(_ bytes: UInt64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]
        var value = Double(bytes)
        var unit = 0
        // Round first, so 1_048_575 bytes reads "1 MiB", not "1024 KiB".
        while (value * 10).rounded() / 10 >= 1024 && unit < units.count - 1 { value /= 1024; unit += 1 }
        if unit == 0 { return "\(bytes) B" }
        let rounded = (value * 10).rounded() / 10
        return rounded == rounded.rounded() ? "\(Int(rounded)) \(units[unit])" : "\(rounded) \(units[unit])"
    }
}


/// True when every byte is zero; word at a time, for sparse-aware copies.
public func isAllZero(_ bytes: UnsafeRawBufferPointer) -> Bool {
    let words = bytes.count / 8
    var acc: UInt64 = 0
    for i in 0..<words {
        acc |= bytes.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self)
        // Data that is not zero rarely starts with 64 zero bytes: look every 64 bytes, so
        // a read of random data costs one cache line, not a 4 KiB scan (the NBD gateway
        // asks this of every read it answers with structured replies).
        if i & 7 == 7 && acc != 0 { return false }
    }
    for i in (words * 8)..<bytes.count { acc |= UInt64(bytes[i]) }
    return acc == 0
}
