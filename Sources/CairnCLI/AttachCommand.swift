// `cairn attach VOLUME` / `cairn detach VOLUME`: a volume as a local block device
// (CairnAttach), and `cairn attach-daemon`, the fuse-loop method's daemon they start.
import ArgumentParser
import CairnAttach
import CairnCore
import Foundation

extension AttachMethod: ExpressibleByArgument {}

/// Options of attach and detach.
struct AttachStateOptions: ParsableArguments {
    @Option(name: .customLong("state-dir"), help: "Where attachments are recorded and fuse-loop daemons mount and log.")
    var stateDirectory = AttachOptions.stateDirectoryDefault

    func attacher(_ client: ClientOptions, force: Bool = false) throws -> Attacher {
        let c = try ClientConfig.resolve(manager: client.manager, secretFile: client.secretFile)
        return Attacher(options: AttachOptions(
            managers: c.manager.split(separator: ",").map(String.init), secret: c.secret, stateDirectory: stateDirectory,
            localNode: ProcessInfo.processInfo.environment["CAIRN_LOCAL_NODE"], force: force))
    }
}

struct AttachCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "attach",
        abstract: "Attach a block volume as a local block device and print the device (idempotent).",
        discussion: "Methods: nbd (kernel NBD client), iscsi (open-iscsi), fuse-loop (a FUSE daemon and a loop device); "
            + "the first available when --method is not given. With --refresh-size, an attached device takes the volume's new size.")
    @Argument(help: "The volume; omit it with --list.") var volume: String?
    @Option(help: "nbd, iscsi or fuse-loop.") var method: AttachMethod?
    @Flag(name: .customLong("read-only")) var readOnly = false
    @Flag(help: "Fence out another writer of the volume.") var force = false
    @Flag(name: .customLong("refresh-size"), help: "Make the attached device show the volume's current size.")
    var refreshSize = false
    @Flag(help: "List this host's attachments.") var list = false
    @OptionGroup var state: AttachStateOptions
    @OptionGroup var client: ClientOptions

    func run() async throws {
        try await runReporting {
            let attacher = try state.attacher(client, force: force)
            if list {
                let all = attacher.attachments()
                if client.output == .json { return try printJSON(all) }
                printTable(["VOLUME", "METHOD", "DEVICE", "ACCESS", "HEALTHY"], all.map {
                    [$0.volume, $0.method.rawValue, $0.devicePath, $0.readOnly ? "ro" : "rw", attacher.isHealthy($0) ? "yes" : "no"]
                })
                return
            }
            guard let volume else { throw CairnError.invalidArgument("give a volume (or --list)") }
            if refreshSize {
                let size = try await attacher.refreshSize(volume: volume)
                print("\(attacher.attachment(volume: volume)?.devicePath ?? volume): \(ByteSize.format(size))")
                return
            }
            let a = try await attacher.attach(volume: volume, method: method, readOnly: readOnly)
            if client.output == .json { try printJSON(a) } else { print(a.devicePath) }
        }
    }
}

struct DetachCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "detach", abstract: "Detach a volume attached with `cairn attach` (idempotent; unmount it first).")
    @Argument var volume: String
    @OptionGroup var state: AttachStateOptions
    @OptionGroup var client: ClientOptions

    func run() async throws {
        try await runReporting { try await state.attacher(client).detach(volume: volume) }
    }
}

struct AttachDaemonCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "attach-daemon",
        abstract: "Serve a volume as the one file of a FUSE mount (the fuse-loop attach method; started by `cairn attach`).",
        shouldDisplay: false)
    @Argument var volume: String
    @Option(help: "The (empty) directory to mount on; the file is DIR/VOLUME.") var dir: String
    @Option(name: .customLong("pid-file"), help: "Written once the mount serves.") var pidFile: String?
    @Flag(name: .customLong("read-only")) var readOnly = false
    @Flag(name: .customLong("page-cache"), help: "Let the kernel cache the file's pages (default: direct I/O).")
    var pageCache = false
    @Flag var force = false
    @OptionGroup var client: ClientOptions

    func run() async throws {
        try await runReporting {
            let c = try ClientConfig.resolve(manager: client.manager, secretFile: client.secretFile)
            var o = AttachDaemonOptions(volume: volume, mountpoint: dir)
            o.pidFile = pidFile
            o.readOnly = readOnly
            o.fuseDirectIO = !pageCache
            o.force = force
            o.localNode = ProcessInfo.processInfo.environment["CAIRN_LOCAL_NODE"]
            try await AttachDaemon.run(o, config: c, group: Runtime.group, logger: Runtime.logger("cairn.attach"))
        }
    }
}
