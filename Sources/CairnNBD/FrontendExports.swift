// A frontend's view of the gateway's exports: the same volumes and shared volume clients,
// with that frontend's I/O counted under its own label (frontend="nbd", "iscsi"). The
// NBD server and the iSCSI target of one gateway share a client per volume, so the
// client itself cannot tell them apart.
import CairnClient
import CairnMetrics
import NIOCore

extension VolumeExports {
    /// The exports as `label` sees them; its I/O goes to the `cairn_volume_io_*` series
    /// with frontend=`label`.
    public nonisolated func frontend(_ label: String) -> NBDExportProvider {
        FrontendExports(exports: self, label: label)
    }
}

struct FrontendExports: NBDExportProvider {
    let exports: VolumeExports
    let label: String

    func list() async throws -> [NBDExportDescription] { try await exports.list() }
    func describe(_ name: String) async throws -> NBDExportDescription { try await exports.describe(name) }
    func release(_ name: String) async { await exports.release(name) }

    func open(_ name: String) async throws -> (NBDExportDescription, NBDDevice) {
        let (description, device) = try await exports.open(name)
        return (description, MeasuredDevice(device, io: VolumeIOMetrics.of(volume: name, frontend: label)))
    }
}

/// A device whose reads, writes, trims and flushes are counted; block status is not I/O.
final class MeasuredDevice: NBDDevice {
    let device: NBDDevice
    let io: VolumeIOMetrics

    init(_ device: NBDDevice, io: VolumeIOMetrics) { self.device = device; self.io = io }

    func read(offset: UInt64, length: Int) async throws -> ByteBuffer {
        try await io.measure(.read, bytes: length) { try await device.read(offset: offset, length: length) }
    }

    func write(offset: UInt64, data: ByteBuffer, fua: Bool) async throws {
        try await io.measure(.write, bytes: data.readableBytes) { try await device.write(offset: offset, data: data, fua: fua) }
    }

    func flush() async throws {
        try await io.measure(.flush, bytes: 0) { try await device.flush() }
    }

    func trim(offset: UInt64, length: Int) async throws {
        try await io.measure(.trim, bytes: length) { try await device.trim(offset: offset, length: length) }
    }

    func writeZeroes(offset: UInt64, length: Int, mayTrim: Bool) async throws {
        try await io.measure(mayTrim ? .trim : .write, bytes: length) {
            try await device.writeZeroes(offset: offset, length: length, mayTrim: mayTrim)
        }
    }

    func blockStatus(offset: UInt64, length: Int) async throws -> [Extent] {
        try await device.blockStatus(offset: offset, length: length)
    }
}
