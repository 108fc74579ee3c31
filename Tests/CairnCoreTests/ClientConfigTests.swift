import CairnCore
import Foundation
import XCTest

/// Points CAIRN_CONFIG at a fresh temporary directory and clears CAIRN_MANAGER and
/// CAIRN_SECRET for each test, restoring all three afterwards.
final class ClientConfigTests: XCTestCase {
    private static let variables = ["CAIRN_CONFIG", "CAIRN_MANAGER", "CAIRN_SECRET"]
    private var saved: [String: String?] = [:]
    private var directory = ""
    private var configPath: String { directory + "/nested/config" }

    override func setUpWithError() throws {
        for name in Self.variables { saved[name] = getenv(name).map { String(cString: $0) } }
        directory = NSTemporaryDirectory() + "cairn-config-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        setenv("CAIRN_CONFIG", configPath, 1)
        unsetenv("CAIRN_MANAGER")
        unsetenv("CAIRN_SECRET")
    }

    override func tearDownWithError() throws {
        for (name, value) in saved {
            if let value { setenv(name, value, 1) } else { unsetenv(name) }
        }
        try? FileManager.default.removeItem(atPath: directory)
    }

    private func writeSecretFile(_ text: String) throws -> String {
        let path = directory + "/secret"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func testDefaultPathFollowsCairnConfig() {
        XCTAssertEqual(ClientConfig.defaultPath, configPath)
        setenv("CAIRN_CONFIG", "", 1)
        XCTAssertTrue(ClientConfig.defaultPath.hasSuffix("/.config/cairn/config"))
    }

    func testSaveAndLoadRoundTripOwnerOnly() throws {
        let config = ClientConfig(manager: "http://10.0.0.1:9400", secret: "s3cret")
        try config.save()
        XCTAssertEqual(ClientConfig.load(), config)
        let attributes = try FileManager.default.attributesOfItem(atPath: configPath)
        XCTAssertEqual((attributes[.posixPermissions] as? NSNumber)?.intValue, 0o600)
    }

    func testSaveOverwritesAndKeepsOwnerOnly() throws {
        try ClientConfig(manager: "http://a:1", secret: "one").save()
        chmod(configPath, 0o644)
        try ClientConfig(manager: "http://b:2", secret: "two").save()
        XCTAssertEqual(ClientConfig.load(), ClientConfig(manager: "http://b:2", secret: "two"))
        let attributes = try FileManager.default.attributesOfItem(atPath: configPath)
        XCTAssertEqual((attributes[.posixPermissions] as? NSNumber)?.intValue, 0o600)
    }

    func testLoadOfMissingOrMalformedFileIsNil() throws {
        XCTAssertNil(ClientConfig.load())
        try FileManager.default.createDirectory(atPath: directory + "/nested", withIntermediateDirectories: true)
        try "not json".write(toFile: configPath, atomically: true, encoding: .utf8)
        XCTAssertNil(ClientConfig.load())
    }

    func testResolveUsesTheFileWhenNothingElseIsGiven() throws {
        try ClientConfig(manager: "http://file:1", secret: "file-secret").save()
        XCTAssertEqual(try ClientConfig.resolve(manager: nil, secretFile: nil),
                       ClientConfig(manager: "http://file:1", secret: "file-secret"))
    }

    func testEnvironmentBeatsTheFile() throws {
        try ClientConfig(manager: "http://file:1", secret: "file-secret").save()
        setenv("CAIRN_MANAGER", "http://env:2", 1)
        setenv("CAIRN_SECRET", "env-secret", 1)
        XCTAssertEqual(try ClientConfig.resolve(manager: nil, secretFile: nil),
                       ClientConfig(manager: "http://env:2", secret: "env-secret"))
    }

    func testFlagsBeatTheEnvironment() throws {
        setenv("CAIRN_MANAGER", "http://env:2", 1)
        setenv("CAIRN_SECRET", "env-secret", 1)
        let secretFile = try writeSecretFile("  flag-secret\n")
        XCTAssertEqual(try ClientConfig.resolve(manager: "http://flag:3", secretFile: secretFile),
                       ClientConfig(manager: "http://flag:3", secret: "flag-secret"))
    }

    func testManagerDefaultsWhenUnset() throws {
        setenv("CAIRN_SECRET", "env-secret", 1)
        XCTAssertEqual(try ClientConfig.resolve(manager: nil, secretFile: nil).manager, ClientConfig.managerDefault)
    }

    func testMissingSecretIsUnauthenticated() {
        XCTAssertThrowsError(try ClientConfig.resolve(manager: "http://m:1", secretFile: nil)) { error in
            guard case CairnError.unauthenticated? = error as? CairnError else { return XCTFail("\(error)") }
        }
    }

    func testEmptySecretFileIsUnauthenticated() throws {
        setenv("CAIRN_SECRET", "env-secret", 1)
        let secretFile = try writeSecretFile(" \n")
        XCTAssertThrowsError(try ClientConfig.resolve(manager: nil, secretFile: secretFile)) { error in
            guard case CairnError.unauthenticated? = error as? CairnError else { return XCTFail("\(error)") }
        }
    }

    func testUnreadableSecretFileIsInvalidArgument() {
        setenv("CAIRN_SECRET", "env-secret", 1)
        assertInvalidArgument(try ClientConfig.resolve(manager: nil, secretFile: directory + "/absent"))
    }

    func testGeneratedSecretsAre256BitHexAndDiffer() {
        let a = ClientConfig.generateSecret(), b = ClientConfig.generateSecret()
        XCTAssertEqual(a.count, 64)
        XCTAssertTrue(a.allSatisfy { $0.isHexDigit && !$0.isUppercase })
        XCTAssertNotEqual(a, b)
    }
}
