// A mount's side of garbage collection (see Collector.swift): the claim on its data
// volume that every map commit compares, the high-water mark below which every append
// has finished its commit attempt, and the collection of its own volume.
import CairnCore
import CairnMeta
import Foundation

struct OwnVolumeState {
    /// The bytes of v/<mount id> as this mount wrote them; nil before a session.
    var claim: [UInt8]?
    /// Stores between their append and the end of their map commit: the append mark
    /// each saw before appending (its slice lands at or above it).
    var storing: [UInt64: UInt64] = [:]
    var nextStore: UInt64 = 0
    /// Safe marks by monotonic time (nanoseconds), oldest first, at most `marksMax`.
    var marks: [(at: UInt64, mark: UInt64)] = []
    /// Ranges of the own volume already trimmed (sorted, merged).
    var trimmed: RangeSet = []
    /// The last collect request answered, with the bytes trimmed then.
    var answered: (request: UInt64, bytes: UInt64)?
}

extension FileSystem {
    /// Marks kept (one per session pass, 2 s: about 8 minutes), bounding the grace.
    static let marksMax = 256
    /// Default age of the mark a collection of the own volume uses.
    public static let collectGrace = Duration.seconds(30)

    func claimBytes(_ volume: String) throws -> [UInt8] {
        [UInt8](try JSONEncoder().encode(DataVolumeRecord(volume: volume, mount: mountID, retired: false)))
    }

    /// Makes the commit depend on this mount's volume not being retired. On a retry
    /// (the commit lost a race) it reads the record, so a retirement ends the loop.
    func requireOwnVolume(_ t: FSTransaction, recheck: Bool) async throws {
        guard let claim = ownVolume.withLock({ $0.claim }) else { return }
        let key = keys.dataVolume(mountID)
        if recheck, try await store.get(key)?.value != claim {
            throw FSError.io("this mount's data volume was retired by the garbage collector (the mount was taken for dead): remount")
        }
        t.require(key, equals: claim)
    }

    func beginStore() -> UInt64 {
        let mark = data.appendMark
        return ownVolume.withLock { o in
            let id = o.nextStore
            o.nextStore += 1
            o.storing[id] = mark
            return id
        }
    }

    func endStore(_ id: UInt64) { _ = ownVolume.withLock { $0.storing.removeValue(forKey: id) } }

    /// Notes the current safe mark (every session pass): below it, every append has
    /// finished its commit attempt.
    public func noteAppendMark(monotonicNow: UInt64) {
        let current = data.appendMark
        ownVolume.withLock { o in
            let mark = o.storing.values.reduce(current) { min($0, $1) }
            o.marks.append((monotonicNow, mark))
            if o.marks.count > Self.marksMax { o.marks.removeFirst(o.marks.count - Self.marksMax) }
        }
    }

    /// Trims the unreferenced blocks of this mount's own volume below the newest mark
    /// at least `grace` old. Returns the bytes trimmed by this pass.
    @discardableResult
    public func collectOwnVolume(monotonicNow: UInt64, grace: Duration = FileSystem.collectGrace) async throws -> UInt64 {
        let graceNanos = UInt64(grace.components.seconds) * 1_000_000_000 + UInt64(grace.components.attoseconds / 1_000_000_000)
        let limit = ownVolume.withLock { o -> UInt64 in
            o.marks.last { monotonicNow >= $0.at && monotonicNow - $0.at >= graceNanos }?.mark ?? 0
        }
        guard limit > 0 else { return 0 }
        let refs = try await Collector.references(store: store, keys: keys)[data.appendVolume] ?? []
        let done = ownVolume.withLock { $0.trimmed }
        let garbage = Collector.garbage(below: limit, referenced: refs, excluding: done)
        guard !garbage.isEmpty else { return 0 }
        try await data.trimOwn(garbage)
        ownVolume.withLock { $0.trimmed = Collector.merge($0.trimmed + garbage) }
        return garbage.reduce(0) { $0 + UInt64($1.count) }
    }

    /// Answers a `cairn fs gc` request newer than the last one answered (every session
    /// pass); the next heartbeat reports it. Returns the bytes trimmed, nil if none was asked.
    public func answerCollectRequest(monotonicNow: UInt64, grace: Duration = FileSystem.collectGrace) async throws -> UInt64? {
        guard let (request, _) = try await store.getJSON(keys.collectRequest, as: UInt64.self),
              request > (ownVolume.withLock { $0.answered?.request } ?? 0) else { return nil }
        let bytes = try await collectOwnVolume(monotonicNow: monotonicNow, grace: grace)
        ownVolume.withLock { $0.answered = (request, bytes) }
        return bytes
    }
}

extension Collector {
    /// Asks every mount to collect its own volume: returns the request number, which
    /// each mount's session record shows in `collected` once it has.
    public func requestMountCollection() async throws -> UInt64 {
        try await store.update(key: keys.collectRequest, retries: MetaLimits.updateRetriesMax) { (n: UInt64?) in (n ?? 0) + 1 }!
    }

    /// The live mounts' session records.
    public func sessions() async throws -> [String: MountRecord] {
        var out: [String: MountRecord] = [:]
        for kv in try await store.rangeAll(prefix: keys.mounts) {
            out[String(kv.key.dropFirst(keys.mounts.count))] = try FileSystem.decode(kv.value, as: MountRecord.self)
        }
        return out
    }
}
