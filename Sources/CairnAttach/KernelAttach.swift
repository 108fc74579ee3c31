// The kernel block clients: nbd-client against the gateway's NBD export and open-iscsi
// against the gateway's iSCSI target. The kernel does the I/O; no Cairn process runs on
// the host beside the gateway.
//
// NOT EXERCISED ON THE DEVELOPMENT MACHINE: it has neither the nbd nor the iSCSI
// initiator kernel modules (no /dev/nbd*, no iscsiadm), so these two methods are written
// from the tools' documented command lines and are selected only where the host has them.
//
// Read-only attachments set the block device read-only (blockdev --setro) after it
// appears; the gateway itself exports a volume read-only only when the volume is.
import CairnCore
import Foundation

struct NBDAttach: AttachBackend {
    let options: AttachOptions
    /// Connections per device (the gateway's exports allow several: CAN_MULTI_CONN).
    static let connections = 4

    func attach(_ record: Attachment) async throws -> Attachment {
        var a = record
        let (host, port) = try splitHostPort(options.nbdAddress)
        guard let device = freeDevice() else { throw CairnError.unavailable("no free /dev/nbd* device") }
        try SystemTools.run("nbd-client", [host, port, device, "-N", a.volume, "-b", "4096",
                                           "-C", String(Self.connections)])
        a.devicePath = device
        if a.readOnly { try SystemTools.run("blockdev", ["--setro", device]) }
        return a
    }

    /// A device is free when the kernel reports no size for it.
    func freeDevice() -> String? {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: "/sys/block")) ?? []
        let nbds = names.filter { $0.hasPrefix("nbd") }.sorted { $0.count == $1.count ? $0 < $1 : $0.count < $1.count }
        return nbds.first { SystemTools.readTrimmed("/sys/block/\($0)/size") == "0" }.map { "/dev/" + $0 }
    }

    func healthy(_ a: Attachment) -> Bool {
        let name = (a.devicePath as NSString).lastPathComponent
        guard let size = SystemTools.readTrimmed("/sys/block/\(name)/size"), let n = UInt64(size) else { return false }
        return n > 0
    }

    func detach(_ a: Attachment) async throws {
        guard !a.devicePath.isEmpty, healthy(a) else { return }
        if SystemTools.deviceBusy(a.devicePath) {
            throw CairnError.conflict("\(a.devicePath) (volume '\(a.volume)') is mounted or in use; unmount it first")
        }
        try SystemTools.run("nbd-client", ["-d", a.devicePath])
    }

    /// The kernel NBD client learns a new size only on reconnect: refused here.
    func refreshSize(_ a: Attachment, sizeBytes: UInt64) async throws {
        throw CairnError.unavailable("the nbd attach method cannot grow a connected device; detach and attach again")
    }
}

struct ISCSIAttach: AttachBackend {
    let options: AttachOptions
    /// The gateway's target names (see docs/iscsi.md).
    static func target(_ volume: String) -> String { "iqn.2026-11.io.cairn:" + volume }

    /// udev's link for LUN 0 of the target on the portal.
    static func byPathLink(portal: String, target: String) -> String {
        "/dev/disk/by-path/ip-\(portal)-iscsi-\(target)-lun-0"
    }

    func attach(_ record: Attachment) async throws -> Attachment {
        var a = record
        let target = Self.target(a.volume), portal = options.iscsiPortal
        a.target = target
        a.portal = portal
        try SystemTools.run("iscsiadm", ["-m", "discovery", "-t", "sendtargets", "-p", portal])
        try SystemTools.run("iscsiadm", ["-m", "node", "-T", target, "-p", portal, "--login"])
        let link = Self.byPathLink(portal: portal, target: target)
        guard await SystemTools.waitUntil(options.startTimeout, { FileManager.default.fileExists(atPath: link) }) else {
            throw CairnError.io("logged in to \(target) but \(link) did not appear")
        }
        a.devicePath = URL(fileURLWithPath: link).resolvingSymlinksInPath().path
        if a.readOnly { try SystemTools.run("blockdev", ["--setro", a.devicePath]) }
        return a
    }

    func healthy(_ a: Attachment) -> Bool {
        guard let target = a.target, let portal = a.portal else { return false }
        return FileManager.default.fileExists(atPath: Self.byPathLink(portal: portal, target: target))
    }

    func detach(_ a: Attachment) async throws {
        guard let target = a.target, let portal = a.portal else { return }
        if !a.devicePath.isEmpty, healthy(a), SystemTools.deviceBusy(a.devicePath) {
            throw CairnError.conflict("\(a.devicePath) (volume '\(a.volume)') is mounted or in use; unmount it first")
        }
        // Logging out of a session that is not there is status 21 (no objects found).
        let out = try SystemTools.run("iscsiadm", ["-m", "node", "-T", target, "-p", portal, "--logout"], check: false)
        guard out.status == 0 || out.status == 21 else {
            throw CairnError.io("iscsiadm --logout of \(target) failed: \(out.stderr)")
        }
        try SystemTools.run("iscsiadm", ["-m", "node", "-T", target, "-p", portal, "-o", "delete"], check: false)
    }

    /// The initiator re-reads the capacity on a session rescan.
    func refreshSize(_ a: Attachment, sizeBytes: UInt64) async throws {
        guard let target = a.target, let portal = a.portal else { throw CairnError.notFound("no iSCSI session for '\(a.volume)'") }
        try SystemTools.run("iscsiadm", ["-m", "node", "-T", target, "-p", portal, "-R"])
    }
}

/// "HOST:PORT" (an IPv6 host in brackets) as nbd-client takes it: host and port apart.
func splitHostPort(_ address: String) throws -> (String, String) {
    guard let colon = address.lastIndex(of: ":"), colon != address.startIndex,
          let port = UInt16(address[address.index(after: colon)...]) else {
        throw CairnError.invalidArgument("'\(address)' is not HOST:PORT")
    }
    var host = String(address[..<colon])
    if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
    return (host, String(port))
}
