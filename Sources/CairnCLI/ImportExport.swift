// `cairn volume import` and `cairn volume export`: raw images in and out, sparse-aware
// (all-zero ranges are trimmed on import and left as holes on export), with a progress
// bar when stderr is a terminal.
import ArgumentParser
import CairnClient
import CairnCore
import CairnNet
import Foundation
import NIOCore

/// Pieces per transfer request, and how many run at once.
let transferPieceBytes = 4 << 20
let transferInFlightMax = 8

final class ProgressBar: @unchecked Sendable {
    let total: UInt64
    let label: String
    let enabled = isatty(STDERR_FILENO) == 1
    let start = Date()
    private let done = Locked<(bytes: UInt64, lastDraw: Double)>((0, 0))

    init(label: String, total: UInt64) { self.label = label; self.total = total }

    func advance(_ bytes: Int) {
        guard enabled else { return }
        let (d, draw) = done.withLock { s -> (UInt64, Bool) in
            s.bytes += UInt64(bytes)
            let now = Date().timeIntervalSince(start)
            let draw = now - s.lastDraw > 0.1 || s.bytes >= total
            if draw { s.lastDraw = now }
            return (s.bytes, draw)
        }
        if draw { render(d) }
    }

    func render(_ d: UInt64) {
        let fraction = total == 0 ? 1 : min(1, Double(d) / Double(total))
        let width = 30
        let filled = Int(fraction * Double(width))
        let rate = Double(d) / max(0.001, Date().timeIntervalSince(start))
        let bar = String(repeating: "#", count: filled) + String(repeating: " ", count: width - filled)
        let text = "\r\(label) [\(bar)] \(Int(fraction * 100))% \(ByteSize.format(d)) of \(ByteSize.format(total)), "
            + "\(ByteSize.format(UInt64(rate)))/s   "
        FileHandle.standardError.write(Data(text.utf8))
    }

    func finish() {
        if enabled { FileHandle.standardError.write(Data("\n".utf8)) }
    }
}


/// Runs `body` for each offset in [0, total) stepping by `step`, at most `width` at once.
func slidingWindow(total: UInt64, step: Int, width: Int, _ body: @escaping @Sendable (UInt64, Int) async throws -> Void) async throws {
    try await withThrowingTaskGroup(of: Void.self) { group in
        var offset: UInt64 = 0
        var running = 0
        while offset < total {
            if running == width { try await group.next(); running -= 1 }
            let n = Int(min(UInt64(step), total - offset))
            let o = offset
            group.addTask { try await body(o, n) }
            running += 1
            offset += UInt64(n)
        }
        try await group.waitForAll()
    }
}

func openVolume(_ name: String, client: ClientOptions, readOnly: Bool, force: Bool = false) async throws -> (VolumeClient, DataConnectionPool) {
    let c = try ClientConfig.resolve(manager: client.manager, secretFile: client.secretFile)
    let mc = ManagerClient(baseURL: c.manager, secret: c.secret, group: Runtime.group)
    let host = ProcessInfo.processInfo.hostName
    let id = "cli-\(host)-\(getpid())"
    let pool = DataConnectionPool(secret: c.secret, client: id, group: Runtime.group)
    var options = VolumeClientOptions(clientID: id, readOnly: readOnly, force: force)
    options.localNode = ProcessInfo.processInfo.environment["CAIRN_LOCAL_NODE"]
    options.frontend = "cli"
    let vc = try await VolumeClient.open(name, control: mc, transport: pool, options: options, logger: Runtime.logger("cairn.client"))
    return (vc, pool)
}

extension VolumeCommand {
    struct Import: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Write a raw image file into a volume.")
        @Argument var name: String
        @Argument var file: String
        @Flag(help: "Take the volume from another writer (fencing it).") var force = false
        @OptionGroup var client: ClientOptions

        func run() async throws {
            try await runReporting {
                let fd = open(file, O_RDONLY)
                guard fd >= 0 else { throw CairnError.invalidArgument("cannot open \(file): \(String(cString: strerror(errno)))") }
                defer { close(fd) }
                var st = stat()
                fstat(fd, &st)
                let size = UInt64(st.st_size)
                let (vc, pool) = try await openVolume(name, client: client, readOnly: false, force: force)
                defer { pool.closeAll() }
                do {
                    guard size <= vc.size else {
                        throw CairnError.invalidArgument(
                            "\(file) is \(size) bytes, larger than volume '\(name)' (\(vc.size) bytes); resize the volume first")
                    }
                    let bar = ProgressBar(label: "import", total: size)
                    try await slidingWindow(total: size, step: transferPieceBytes, width: transferInFlightMax) { offset, n in
                        var buffer = ByteBuffer()
                        let got = buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: n) { p in
                            pread(fd, p.baseAddress, n, off_t(offset))
                        }
                        guard got == n else { throw CairnError.io("short read from \(file) at \(offset)") }
                        if buffer.withUnsafeReadableBytes { isAllZero($0) } {
                            try await vc.trim(offset: offset, length: n)
                        } else {
                            try await vc.write(offset: offset, data: buffer, fua: false)
                        }
                        bar.advance(n)
                    }
                    try await vc.flush()
                    bar.finish()
                    await vc.close()
                } catch {
                    await vc.close()
                    throw error
                }
                if client.output == .table { print("imported \(ByteSize.format(size)) into \(name)") }
            }
        }
    }

    struct Export: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Read a volume into a raw (sparse) image file.")
        @Argument var name: String
        @Argument var file: String
        @OptionGroup var client: ClientOptions

        func run() async throws {
            try await runReporting {
                let (vc, pool) = try await openVolume(name, client: client, readOnly: true)
                defer { pool.closeAll() }
                let fd = open(file, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
                guard fd >= 0 else { throw CairnError.invalidArgument("cannot create \(file): \(String(cString: strerror(errno)))") }
                defer { close(fd) }
                let size = vc.size
                guard ftruncate(fd, off_t(size)) == 0 else { throw CairnError.io("cannot size \(file): \(String(cString: strerror(errno)))") }
                let bar = ProgressBar(label: "export", total: size)
                try await slidingWindow(total: size, step: transferPieceBytes, width: transferInFlightMax) { offset, n in
                    let extents = try await vc.blockStatus(offset: offset, length: n)
                    for e in extents where !e.hole {
                        let data = try await vc.read(offset: e.offset, length: Int(e.length))
                        if data.withUnsafeReadableBytes { isAllZero($0) } { continue }
                        let written = data.withUnsafeReadableBytes { p in pwrite(fd, p.baseAddress, p.count, off_t(e.offset)) }
                        guard written == Int(e.length) else { throw CairnError.io("cannot write \(file): \(String(cString: strerror(errno)))") }
                    }
                    bar.advance(n)
                }
                guard fsync(fd) == 0 else { throw CairnError.io("cannot sync \(file)") }
                bar.finish()
                if client.output == .table { print("exported \(ByteSize.format(size)) from \(name) to \(file)") }
            }
        }
    }
}

extension VolumeCommand {
    struct Verify: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check that every chunk's replicas agree (and, with --deep, that every block matches its checksum).")
        @Argument var name: String
        @Flag(help: "Read every replica in full so each node checks every block's checksum.") var deep = false
        @OptionGroup var client: ClientOptions

        func run() async throws {
            try await runReporting {
                let (vc, pool) = try await openVolume(name, client: client, readOnly: true)
                defer { pool.closeAll() }
                let checks = try await vc.verifyReplicas(deep: deep)
                if client.output == .json { try printJSON(checks) } else {
                    printTable(["CHUNK", "REPLICAS", "DIFFERING BLOCKS", "UNREACHABLE", "CORRUPT"], checks.map { c in
                        ["\(c.chunk)", c.replicas.joined(separator: ","), "\(c.differingBlocks)",
                         c.unreachable.isEmpty ? "-" : c.unreachable.joined(separator: ","),
                         c.corrupt.isEmpty ? "-" : c.corrupt.map { "\($0.key)@block\($0.value)" }.sorted().joined(separator: ",")]
                    })
                }
                let bad = checks.filter { !$0.ok }.count
                guard bad == 0 else { throw CairnError.io("\(bad) of \(checks.count) chunks of '\(name)' have replicas that disagree or fail") }
                if client.output == .table { print("all \(checks.count) allocated chunks of \(name) agree across replicas") }
            }
        }
    }
}
