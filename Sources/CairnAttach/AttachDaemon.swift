// The fuse-loop daemon (`cairn attach-daemon`): serves one volume as the one file of a
// FUSE mount until it is unmounted or signalled.
//
// It attaches as the volume's writer under a stable id per host and volume (so a
// restarted daemon takes its own attachment back without fencing), or opens the volume
// read-only. Signals: SIGTERM/SIGINT unmount (which ends the serving loop, then the
// volume is detached); SIGHUP re-reads the volume's map, so the file shows a new size.
import CairnClient
import CairnCore
import CairnFuse
import CairnNet
import Foundation
import Logging
import NIOCore

/// The volume client as the file's store.
struct VolumeFileBackend: BlockFileBackend {
    let client: VolumeClient
    var sizeBytes: UInt64 { client.size }
    func read(offset: UInt64, length: Int) async throws -> ByteBuffer { try await client.read(offset: offset, length: length) }
    func write(offset: UInt64, data: ByteBuffer) async throws { try await client.write(offset: offset, data: data, fua: false) }
    func flush() async throws { try await client.flush() }
    func trim(offset: UInt64, length: Int) async throws { try await client.trim(offset: offset, length: length) }
    func writeZeroes(offset: UInt64, length: Int) async throws {
        try await client.writeZeroes(offset: offset, length: length, mayTrim: false)
    }
}

public struct AttachDaemonOptions: Sendable {
    public var volume: String
    public var mountpoint: String
    /// Written (atomically) once the mount serves; removed at exit.
    public var pidFile: String?
    public var readOnly = false
    public var fuseDirectIO = true
    public var force = false
    public var localNode: String?
    /// libfuse worker threads: each only copies a request and hands it to a Task.
    public var threadsMax: UInt32 = 8
    public init(volume: String, mountpoint: String) { self.volume = volume; self.mountpoint = mountpoint }
}

public enum AttachDaemon {
    /// The writer id: stable per host and volume.
    public static func clientID(volume: String) -> String { "attach-\(ProcessInfo.processInfo.hostName)-\(volume)" }

    public static func run(_ o: AttachDaemonOptions, config: ClientConfig, group: EventLoopGroup, logger: Logger) async throws {
        try validateVolumeName(o.volume)
        let id = clientID(volume: o.volume)
        let mc = ManagerClient(baseURL: config.manager, secret: config.secret, group: group)
        let pool = DataConnectionPool(secret: config.secret, client: id, group: group)
        defer { pool.closeAll() }
        var clientOptions = VolumeClientOptions(clientID: id, readOnly: o.readOnly, force: o.force, localNode: o.localNode)
        clientOptions.frontend = "attach"
        clientOptions.refreshMapBeforeHoleRead = o.readOnly
        let client = try await VolumeClient.open(o.volume, control: mc, transport: pool, options: clientOptions, logger: logger)
        if try FuseSession.cleanStaleMount(o.mountpoint) {
            logger.notice("cleaned up a stale mount", metadata: ["mountpoint": "\(o.mountpoint)"])
        }
        var fileOptions = BlockFileOptions(fileName: o.volume, readOnly: o.readOnly)
        fileOptions.directIO = o.fuseDirectIO
        let handler = BlockFileHandler(backend: VolumeFileBackend(client: client), options: fileOptions)
        var mountOptions = FuseMountOptions()
        mountOptions.sourceName = "cairn:\(o.volume)"
        mountOptions.subtype = "cairn-attach"
        mountOptions.readOnly = o.readOnly
        mountOptions.threadsMax = o.threadsMax
        let mount = mountOptions
        let signals = Signals(mountpoint: o.mountpoint, client: client, logger: logger)
        signals.start()
        let result: Result<Void, Error> = await withCheckedContinuation { cont in
            // libfuse's loop blocks its thread: it gets one of its own.
            let t = Thread {
                cont.resume(returning: Result {
                    try FuseSession.run(handler, mountpoint: o.mountpoint, options: mount) {
                        if let pidFile = o.pidFile { writePIDFile(pidFile) }
                        logger.info("serving", metadata: ["volume": "\(o.volume)", "file": "\(o.mountpoint)/\(o.volume)",
                                                           "bytes": "\(client.size)", "epoch": "\(client.epoch)"])
                    }
                })
            }
            t.start()
        }
        signals.stop()
        await client.close()
        if let pidFile = o.pidFile { unlink(pidFile) }
        try result.get()
        logger.info("unmounted; volume detached", metadata: ["volume": "\(o.volume)"])
    }

    static func writePIDFile(_ path: String) {
        let temp = path + ".tmp"
        _ = FileManager.default.createFile(atPath: temp, contents: Data("\(getpid())\n".utf8))
        rename(temp, path)
    }

    /// SIGTERM/SIGINT: a lazy unmount, which ends the loop. SIGHUP: re-read the map.
    final class Signals: @unchecked Sendable {
        let mountpoint: String
        let client: VolumeClient
        let logger: Logger
        var sources: [DispatchSourceSignal] = []

        init(mountpoint: String, client: VolumeClient, logger: Logger) {
            self.mountpoint = mountpoint; self.client = client; self.logger = logger
        }

        func start() {
            for sig in [SIGINT, SIGTERM, SIGHUP] {
                signal(sig, SIG_IGN)
                let s = DispatchSource.makeSignalSource(signal: sig, queue: .global())
                s.setEventHandler { [self] in handle(sig) }
                s.resume()
                sources.append(s)
            }
        }

        func handle(_ sig: Int32) {
            if sig == SIGHUP {
                Task {
                    do {
                        try await client.refreshMap()
                        logger.info("map refreshed", metadata: ["bytes": "\(client.size)"])
                    } catch {
                        logger.error("map refresh failed", metadata: ["error": "\(error)"])
                    }
                }
                return
            }
            logger.info("signal \(sig): unmounting", metadata: ["mountpoint": "\(mountpoint)"])
            do { try FuseSession.unmount(mountpoint, lazy: true) } catch {
                logger.error("unmount failed", metadata: ["error": "\(error)"])
            }
        }

        func stop() { for s in sources { s.cancel() } }
    }
}
