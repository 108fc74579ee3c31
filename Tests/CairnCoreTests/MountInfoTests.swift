import XCTest
@testable import CairnCore

final class MountInfoTests: XCTestCase {
    func testParsesLinesWithOptionalFieldsAndEscapes() {
        let text = """
        36 35 98:0 /mnt1 /mnt/parent\\040dir rw,noatime master:1 - ext3 /dev/root rw,errors=continue
        40 36 0:52 / /var/lib/csi/staging rw,nosuid,nodev shared:7 - fuse.cairn cairn:fs1 rw,user_id=0
        bad line
        41 36 0:5 /loop3 /pods/vol ro,relatime - devtmpfs udev rw
        """
        let m = MountInfo.parse(text)
        XCTAssertEqual(m.count, 3)
        XCTAssertEqual(m[0].mountPoint, "/mnt/parent dir")
        XCTAssertEqual(m[0].fsType, "ext3")
        XCTAssertEqual(m[1].source, "cairn:fs1")
        XCTAssertEqual(MountInfo.mount(at: "/var/lib/csi/staging/", in: m)?.fsType, "fuse.cairn")
        XCTAssertTrue(m[2].readOnly)
        XCTAssertNil(MountInfo.mount(at: "/elsewhere", in: m))
    }

    func testAbsolutePathsAreResolvedAsText() {
        XCTAssertEqual(MountInfo.absolute("/a/./b/../c/"), "/a/c")
        XCTAssertEqual(MountInfo.absolute("/.."), "/")
        XCTAssertEqual(MountInfo.absolute("x/y"), FileManager.default.currentDirectoryPath + "/x/y")
    }
}
