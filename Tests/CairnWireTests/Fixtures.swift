import CairnCore
import CairnWire
import NIOCore
import XCTest

/// Requests covering every opcode and the edge cases of each payload layout.
enum Fixtures {
    static let address = ChunkAddress(volume: 0x0102_0304_0506_0708, chunk: 9, epoch: 10)
    static let dataBlock = (0..<blockSize).map { UInt8(truncatingIfNeeded: $0 &* 7) }
    static let dataEntry = BlockEntry(state: .data, crc: CRC32C.checksum(dataBlock), version: BlockVersion(epoch: 10, seq: 3))

    static let requests: [DataRequest] = [
        .hello(secret: "s3cret", client: "client-1"),
        .hello(secret: "", client: "zürich-ü"),
        .read(address, offset: 4096, length: 8192),
        .write(address, seq: 77, offset: 0, data: ByteBuffer(bytes: dataBlock)),
        .write(address, seq: 78, offset: 4096, data: ByteBuffer()),
        .trim(address, seq: 79, offset: 4096, length: 4096),
        .blockTable(address, first: 0, count: 16384),
        .readBlocksRaw(address, first: 3, count: 2),
        .putBlocks(address, [BlockPut(index: 0, entry: dataEntry, data: dataBlock),
                             BlockPut(index: 5, entry: .hole, data: nil)]),
        .putBlocks(address, []),
        .fence(volume: 1, epoch: 2),
        .deleteChunk(address),
        .deleteVolume(volume: 3, epoch: 4),
        .rebuild(RebuildOrder(address: address, sinceEpoch: 5, bytesPerSecond: 256 << 20,
                              sources: ["10.0.0.1:9500", "[::1]:9500"])),
        .rebuild(RebuildOrder(address: address, sinceEpoch: 0, bytesPerSecond: 1,
                              sources: (0..<16).map { "node-\($0):9500" })),
        .ping,
        .copyChunk(from: address, to: ChunkAddress(volume: 9, chunk: 3, epoch: 12)),
    ]

    /// Fixed-size part of a WRITE payload: address, seq and offset; the rest is data.
    static let writeFixedBytes = 32

    /// A request header with arbitrary fields, for malformed-input tests.
    static func requestHeader(magic: UInt32 = RequestFrame.magic, version: UInt8 = 1, opcode: UInt8 = 11,
                              field: UInt16 = 0, id: UInt64 = 1, length: UInt32 = 0) -> ByteBuffer {
        var b = ByteBuffer()
        b.writeInteger(magic); b.writeInteger(version); b.writeInteger(opcode); b.writeInteger(field)
        b.writeInteger(id); b.writeInteger(length); b.writeInteger(UInt32(0))
        return b
    }

    static func encoded(_ frame: RequestFrame) -> ByteBuffer {
        var out = ByteBuffer()
        FrameCodec.encode(frame, into: &out)
        return out
    }
}

extension ByteBuffer {
    var bytes: [UInt8] { Array(readableBytesView) }
}

func assertProtocolError<T>(_ body: @autoclosure () throws -> T, _ message: String = "",
                            file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertThrowsError(try body(), message, file: file, line: line) { error in
        guard case CairnError.protocolError? = error as? CairnError else {
            return XCTFail("expected protocolError, got \(error) (\(message))", file: file, line: line)
        }
    }
}
