// The `cairn` command: one executable, one subcommand per role (see docs/ARCHITECTURE.md).
import ArgumentParser
import CairnCore
import Foundation

public struct CairnCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "cairn",
        abstract: "Cairn: replicated volumes as block devices and a shared filesystem.",
        subcommands: [
            LocalCommand.self, ManagerCommand.self, StorageCommand.self, StatusCommand.self,
            VolumeCommand.self, NodeCommand.self, BenchCommand.self, GatewayCommand.self,
            MountCommand.self, UmountCommand.self, FSCommand.self,
            SnapshotCommand.self,
            AttachCommand.self, DetachCommand.self, AttachDaemonCommand.self,
            CSICommand.self,
        ])
    public init() {}
}

/// Options every administrative command shares.
struct ClientOptions: ParsableArguments {
    @Option(help: "Manager address, e.g. http://127.0.0.1:9400 (default: $CAIRN_MANAGER, then the config file).")
    var manager: String?
    @Option(name: .customLong("secret-file"), help: "File holding the cluster secret (default: $CAIRN_SECRET, then the config file).")
    var secretFile: String?
    @Option(help: "Output format: table or json.")
    var output: OutputFormat = .table
}

enum OutputFormat: String, ExpressibleByArgument {
    case table, json
}

/// Runs a command body, turning any error into one clear line and exit status 1.
func runReporting(_ body: () async throws -> Void) async throws {
    do {
        try await body()
    } catch let e as CairnError {
        FileHandle.standardError.write(Data("cairn: \(e.description)\n".utf8))
        throw ExitCode(1)
    } catch let e as ExitCode {
        throw e
    } catch {
        FileHandle.standardError.write(Data("cairn: \(error)\n".utf8))
        throw ExitCode(1)
    }
}

func parseDuration(_ text: String) throws -> Duration {
    let units: [(String, Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600)]
    for (suffix, scale) in units where text.hasSuffix(suffix) {
        if let v = Double(text.dropLast(suffix.count)), v >= 0 {
            return .milliseconds(Int64(v * scale * 1000))
        }
    }
    if let v = Double(text), v >= 0 { return .milliseconds(Int64(v * 1000)) }
    throw CairnError.invalidArgument("'\(text)' is not a duration: use e.g. 500ms, 5s, 2m")
}

struct DurationArgument: ExpressibleByArgument {
    var value: Duration
    init?(argument: String) {
        guard let d = try? parseDuration(argument) else { return nil }
        value = d
    }
}

struct SizeArgument: ExpressibleByArgument {
    var bytes: UInt64
    init?(argument: String) {
        guard let b = try? ByteSize.parse(argument) else { return nil }
        bytes = b
    }
}

func printJSON<T: Encodable>(_ value: T) throws {
    let e = JSONEncoder()
    e.outputFormatting = [.prettyPrinted, .sortedKeys]
    print(String(decoding: try e.encode(value), as: UTF8.self))
}

/// Left-aligned text table with a header row.
func printTable(_ header: [String], _ rows: [[String]]) {
    var widths = header.map(\.count)
    for r in rows { for (i, c) in r.enumerated() where i < widths.count { widths[i] = max(widths[i], c.count) } }
    func line(_ cells: [String]) -> String {
        cells.enumerated().map { i, c in i == cells.count - 1 ? c : c.padding(toLength: widths[i], withPad: " ", startingAt: 0) }
            .joined(separator: "  ")
    }
    print(line(header))
    for r in rows { print(line(r)) }
}
