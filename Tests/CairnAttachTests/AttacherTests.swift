@testable import CairnAttach
import CairnCore
import Foundation
import XCTest

final class MethodSelectionTests: XCTestCase {
    func probe(nbd: Bool, fuse: Bool, tools: Set<String>) -> HostProbe {
        HostProbe(nbdDevices: { nbd }, fuseDevice: { fuse }, hasTool: { tools.contains($0) })
    }

    func testPreferenceOrderIsNBDThenISCSIThenFuseLoop() {
        let all = probe(nbd: true, fuse: true, tools: ["nbd-client", "iscsiadm", "losetup", "fusermount3", "setsid"])
        XCTAssertEqual(all.availableMethods(), [.nbd, .iscsi, .fuseLoop])
    }

    func testNBDNeedsBothDevicesAndClient() {
        XCTAssertEqual(probe(nbd: true, fuse: false, tools: []).availableMethods(), [])
        XCTAssertEqual(probe(nbd: false, fuse: false, tools: ["nbd-client"]).availableMethods(), [])
    }

    func testFuseLoopNeedsFuseDeviceAndTools() {
        let tools: Set<String> = ["losetup", "fusermount3", "setsid"]
        XCTAssertEqual(probe(nbd: false, fuse: true, tools: tools).availableMethods(), [.fuseLoop])
        XCTAssertEqual(probe(nbd: false, fuse: false, tools: tools).availableMethods(), [])
        XCTAssertEqual(probe(nbd: false, fuse: true, tools: ["losetup", "setsid"]).availableMethods(), [])
    }

    func testChooseTakesFirstAvailableOrTheRequestedOne() throws {
        XCTAssertEqual(try chooseMethod(requested: nil, available: [.iscsi, .fuseLoop]), .iscsi)
        XCTAssertEqual(try chooseMethod(requested: .fuseLoop, available: [.iscsi, .fuseLoop]), .fuseLoop)
    }

    func testChooseRefusesUnavailableMethodWithClearError() {
        XCTAssertThrowsError(try chooseMethod(requested: .nbd, available: [.fuseLoop])) { e in
            guard case CairnError.unavailable(let m)? = e as? CairnError else { return XCTFail("\(e)") }
            XCTAssertTrue(m.contains("nbd") && m.contains("fuse-loop"), m)
        }
        XCTAssertThrowsError(try chooseMethod(requested: nil, available: []))
    }

    func testMethodNamesOnTheWire() throws {
        XCTAssertEqual(AttachMethod(rawValue: "fuse-loop"), .fuseLoop)
        let a = Attachment(volume: "v1", method: .fuseLoop, devicePath: "/dev/loop3", readOnly: false)
        let json = String(decoding: try JSONEncoder().encode(a), as: UTF8.self)
        XCTAssertTrue(json.contains("\"fuse-loop\""), json)
    }

    func testHostPortSplitting() throws {
        XCTAssertTrue(try splitHostPort("127.0.0.1:10809") == ("127.0.0.1", "10809"))
        XCTAssertTrue(try splitHostPort("[::1]:10809") == ("::1", "10809"))
        XCTAssertThrowsError(try splitHostPort("localhost"))
        XCTAssertThrowsError(try splitHostPort("host:99999"))
    }

    func testISCSIDeviceLinkName() {
        XCTAssertEqual(ISCSIAttach.byPathLink(portal: "127.0.0.1:3260", target: ISCSIAttach.target("v1")),
                       "/dev/disk/by-path/ip-127.0.0.1:3260-iscsi-iqn.2026-11.io.cairn:v1-lun-0")
    }
}

final class AttachmentStoreTests: XCTestCase {
    var dir = ""
    override func setUp() {
        dir = NSTemporaryDirectory() + "attach-tests-\(UUID().uuidString)"
    }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func testSaveLoadRemove() throws {
        let store = AttachmentStore(directory: dir)
        XCTAssertNil(store.load("v1"))
        var a = Attachment(volume: "v1", method: .fuseLoop, devicePath: "/dev/loop5", readOnly: true)
        a.daemonPID = 1234
        a.backingFile = store.mountpoint("v1") + "/v1"
        try store.save(a)
        XCTAssertEqual(store.load("v1"), a)
        XCTAssertEqual(store.volumes(), ["v1"])
        // The record is private to its owner: it names what holds the volume.
        var st = stat()
        XCTAssertEqual(stat(store.recordPath("v1"), &st), 0)
        XCTAssertEqual(st.st_mode & 0o777, 0o600)
        try FileManager.default.createDirectory(atPath: store.mountpoint("v1"), withIntermediateDirectories: true)
        try store.remove("v1")
        XCTAssertNil(store.load("v1"))
        XCTAssertEqual(store.volumes(), [])
        try store.remove("v1")  // idempotent
    }

    func testRemoveRefusesANonEmptyMountpoint() throws {
        let store = AttachmentStore(directory: dir)
        try store.save(Attachment(volume: "v2", method: .fuseLoop, devicePath: "", readOnly: false))
        try FileManager.default.createDirectory(atPath: store.mountpoint("v2"), withIntermediateDirectories: true)
        FileManager.default.createFile(atPath: store.mountpoint("v2") + "/v2", contents: Data([1]))
        XCTAssertThrowsError(try store.remove("v2"))
        XCTAssertNotNil(store.load("v2"))
    }

    func testAttacherReportsNoAttachmentFromTheStateDirectory() throws {
        let attacher = Attacher(options: AttachOptions(managers: ["http://127.0.0.1:1"], secret: "s", stateDirectory: dir))
        XCTAssertNil(attacher.attachment(volume: "v1"))
        // A record without a device (an attach cut short) is not an attachment.
        try AttachmentStore(directory: dir).save(Attachment(volume: "v1", method: .fuseLoop, devicePath: "", readOnly: false))
        XCTAssertNil(attacher.attachment(volume: "v1"))
        try AttachmentStore(directory: dir).save(Attachment(volume: "v1", method: .fuseLoop, devicePath: "/dev/loop1", readOnly: false))
        XCTAssertEqual(attacher.attachment(volume: "v1")?.devicePath, "/dev/loop1")
        XCTAssertNil(attacher.attachment(volume: "../etc"))
    }

    func testBadVolumeNamesAreRefusedBeforeTouchingTheHost() async throws {
        let attacher = Attacher(options: AttachOptions(managers: ["http://127.0.0.1:1"], secret: "s", stateDirectory: dir))
        for name in ["", "../x", "A", "-v", String(repeating: "a", count: 64)] {
            do {
                _ = try await attacher.attach(volume: name, method: .fuseLoop, readOnly: false)
                XCTFail("attached '\(name)'")
            } catch CairnError.invalidArgument {
            }
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir))
    }

    func testLockSerialisesWorkOnOneVolume() async throws {
        let store = AttachmentStore(directory: dir)
        let inside = Locked(0), maxInside = Locked(0)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<4 {
                group.addTask {
                    try await store.withLock("v1", timeout: .seconds(10)) {
                        let n = inside.withLock { $0 += 1; return $0 }
                        maxInside.withLock { $0 = max($0, n) }
                        try await Task.sleep(for: .milliseconds(30))
                        inside.withLock { $0 -= 1 }
                    }
                }
            }
            try await group.waitForAll()
        }
        XCTAssertEqual(maxInside.snapshot, 1)
    }
}
