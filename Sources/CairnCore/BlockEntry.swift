/// State of one 4 KiB block on a replica.
public enum BlockState: UInt8, Sendable {
    /// Never written, trimmed or zeroed: reads as zeroes and takes no space.
    case hole = 0
    case data = 1
}

/// Per-block metadata stored next to the data on a replica and sent on the wire: 24 bytes,
/// state u8, 3 bytes padding, crc u32, epoch u64, seq u64 (little endian on disk, big
/// endian on the wire like every integer there).
public struct BlockEntry: Equatable, Sendable {
    public var state: BlockState
    public var crc: UInt32
    public var version: BlockVersion
    public init(state: BlockState, crc: UInt32, version: BlockVersion) {
        self.state = state; self.crc = crc; self.version = version
    }
    public static let encodedSize = 24
    public static let hole = BlockEntry(state: .hole, crc: 0, version: .zero)
}
