// Where the CLI and the daemons find the manager and the cluster secret.
//
// Order: explicit flags, then environment (CAIRN_MANAGER, CAIRN_SECRET), then the
// configuration file (CAIRN_CONFIG, else ~/.config/cairn/config) that `cairn local up`
// writes. The file is JSON: {"manager": "http://127.0.0.1:9400", "secret": "..."}.
import Foundation

public struct ClientConfig: Codable, Sendable, Equatable {
    public var manager: String
    public var secret: String
    public init(manager: String, secret: String) { self.manager = manager; self.secret = secret }

    public static let managerDefault = "http://127.0.0.1:9400"

    public static var defaultPath: String {
        if let p = ProcessInfo.processInfo.environment["CAIRN_CONFIG"], !p.isEmpty { return p }
        let home = ProcessInfo.processInfo.environment["HOME"] ?? NSHomeDirectory()
        return home + "/.config/cairn/config"
    }

    public static func load(path: String = defaultPath) -> ClientConfig? {
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        return try? JSONDecoder().decode(ClientConfig.self, from: data)
    }

    /// Writes the file readable by its owner only (it holds the secret): created 0600 under
    /// a temporary name, synced, then renamed over the old one.
    public func save(path: String = defaultPath) throws {
        try AtomicFile.writeJSON(self, to: path)
    }

    /// Resolves the manager address and secret from flags, environment and file.
    public static func resolve(manager: String?, secretFile: String?) throws -> ClientConfig {
        let env = ProcessInfo.processInfo.environment
        let file = load()
        let address = manager ?? env["CAIRN_MANAGER"] ?? file?.manager ?? managerDefault
        var secret: String?
        if let secretFile {
            guard let data = FileManager.default.contents(atPath: secretFile),
                  let text = String(data: data, encoding: .utf8) else {
                throw CairnError.invalidArgument("cannot read the secret file \(secretFile)")
            }
            secret = text.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        secret = secret ?? env["CAIRN_SECRET"] ?? file?.secret
        guard let secret, !secret.isEmpty else {
            throw CairnError.unauthenticated(
                "no cluster secret: pass --secret-file, set CAIRN_SECRET, or run `cairn local up` to write \(defaultPath)")
        }
        return ClientConfig(manager: address, secret: secret)
    }

    /// A new random secret (256 bits, hex).
    public static func generateSecret() -> String {
        var rng = SystemRandomNumberGenerator()
        return (0..<32).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &rng)) }.joined()
    }
}
