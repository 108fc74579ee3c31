// Garbage collection of file data: slices no map references any more (overwritten,
// truncated, punched or deleted data), and the data volumes of mounts that ended.
//
// Data volumes. Every mount claims its volume with a record v/<mount id> written in the
// same transaction as its first session record, so a volume has no moment without a
// session while its mount lives. Every map commit of the mount (`FileSystem.store`)
// compares that record's bytes. A collector *retires* the volume of a mount whose
// session record is gone (ended cleanly, or taken for dead by the sweep): it rewrites
// v/<id> with `retired`, comparing the session record's absence. From then on no map
// can gain a reference to that volume — a mount that was only slow finds its commits
// refused and reports EIO (the bytes stay in its buffer; remount) —, so the set of
// references to a retired volume only shrinks.
//
// Scan. References are read from every inode's map (i/*, orphans included), page by
// page, not as one snapshot. For a retired volume that is enough: a range no inode
// referenced when read is never referenced again. A retired volume nothing references
// is deleted; one still referenced gets its unreferenced ranges trimmed (attached for
// writing; its mount is gone).
//
// A live mount's own volume is collected by the mount itself (the only writer): a
// slice appended but not committed yet looks unreferenced. The mount tracks its stores
// in flight (append, then map commit) and notes, every session pass, a mark below which
// every append has finished its commit attempt; a collection uses a mark at least
// `grace` old (default 30 s), so a commit whose answer was lost but that the store
// applied late is also covered. Below the mark the references again only shrink: new
// slices land above it. Trims cover whole 4 KiB blocks only; the mount remembers what it
// trimmed, so a pass only sends the new garbage.
//
// Not done: compaction (copying a retired volume's live slices into a live volume to
// delete it sooner; today a retired volume is kept, trimmed, until no map references
// it); periodic collection without `cairn fs gc` asking.
import CairnCore
import CairnMeta
import Foundation

/// v/<mount id>: the data volume a mount appends to.
public struct DataVolumeRecord: Codable, Sendable, Equatable {
    public var volume: String
    public var mount: String
    /// Set by a collector once the mount's session ended: no map may reference it anew.
    public var retired: Bool
}

/// Deleting and trimming the data volumes of ended mounts (their writers are gone).
public protocol DataVolumeAdmin: Sendable {
    /// Gives back the ranges (whole blocks) of a retired volume.
    func trim(volume: String, _ ranges: [Range<UInt64>]) async throws
    func delete(volume: String) async throws
}

/// What one collection did.
public struct CollectionReport: Codable, Sendable, Equatable {
    public var retired: [String] = []
    public var deleted: [String] = []
    /// Retired volumes kept because maps still reference them, with referenced bytes.
    public var kept: [String: UInt64] = [:]
    public var trimmedBytes: UInt64 = 0
    public init() {}
}

/// Ranges of one volume, sorted and merged.
typealias RangeSet = [Range<UInt64>]

public struct Collector: Sendable {
    public static let blockBytes: UInt64 = 4096
    /// Largest trim sent at once (the data path's I/O limit).
    static let trimBytesMax: UInt64 = 16 << 20

    let store: MetaStore
    let keys: FSKeys
    let admin: DataVolumeAdmin

    public init(store: MetaStore, prefix: String, admin: DataVolumeAdmin) {
        precondition(prefix.hasSuffix("/"), "a filesystem prefix ends with '/'")
        self.store = store; self.keys = FSKeys(prefix: prefix); self.admin = admin
    }

    /// Retires the volumes of ended mounts, then deletes those no map references and
    /// trims the unreferenced ranges of the others, up to each one's `sizeBytes`.
    public func collectEnded(sizeOf: (String) async throws -> UInt64) async throws -> CollectionReport {
        var report = CollectionReport()
        report.retired = try await retireEnded()
        let refs = try await Self.references(store: store, keys: keys)
        for kv in try await store.rangeAll(prefix: keys.dataVolumes) {
            let record = try FileSystem.decode(kv.value, as: DataVolumeRecord.self)
            guard record.retired else { continue }
            guard let used = refs[record.volume], !used.isEmpty else {
                try await admin.delete(volume: record.volume)
                _ = try await store.txn(compare: [.modRevision(key: kv.key, equals: kv.modRevision)],
                                        success: [.delete(key: kv.key)], failure: [])
                report.deleted.append(record.volume)
                continue
            }
            report.kept[record.volume] = used.reduce(0) { $0 + UInt64($1.count) }
            let garbage = Self.garbage(below: try await sizeOf(record.volume), referenced: used)
            try await admin.trim(volume: record.volume, garbage)
            report.trimmedBytes += garbage.reduce(0) { $0 + UInt64($1.count) }
        }
        return report
    }

    /// Marks retired every data volume whose mount has no session record.
    func retireEnded() async throws -> [String] {
        var retired: [String] = []
        for kv in try await store.rangeAll(prefix: keys.dataVolumes) {
            var record = try FileSystem.decode(kv.value, as: DataVolumeRecord.self)
            guard !record.retired else { continue }
            let session = keys.mount(record.mount)
            guard try await store.get(session) == nil else { continue }
            record.retired = true
            let result = try await store.txn(
                compare: [.modRevision(key: session, equals: 0), .modRevision(key: kv.key, equals: kv.modRevision)],
                success: [.put(key: kv.key, value: [UInt8](try JSONEncoder().encode(record)))], failure: [])
            if result.succeeded { retired.append(record.volume) }
        }
        return retired
    }

    /// Every range of every volume some inode's map references.
    static func references(store: MetaStore, keys: FSKeys) async throws -> [String: RangeSet] {
        var raw: [String: [Range<UInt64>]] = [:]
        let prefix = keys.prefix + "i/"
        var after: String?
        while true {
            let page = try await store.range(prefix: prefix, after: after, limit: 1000)
            for kv in page.items {
                let node = try FileSystem.decode(kv.value, as: Inode.self)
                for s in node.slices { raw[s.volume, default: []].append(s.volumeOffset..<s.volumeOffset + s.length) }
            }
            guard page.more, let last = page.items.last else { break }
            after = last.key
        }
        return raw.mapValues(merge)
    }

    static func merge(_ ranges: [Range<UInt64>]) -> RangeSet {
        var out: RangeSet = []
        for r in ranges.sorted(by: { $0.lowerBound < $1.lowerBound }) where !r.isEmpty {
            if let last = out.last, r.lowerBound <= last.upperBound {
                out[out.count - 1] = last.lowerBound..<max(last.upperBound, r.upperBound)
            } else {
                out.append(r)
            }
        }
        return out
    }

    /// Whole blocks of [0, limit) that no referenced range touches, cut into pieces of
    /// at most `trimBytesMax`.
    static func garbage(below limit: UInt64, referenced: RangeSet, excluding done: RangeSet = []) -> RangeSet {
        var out: RangeSet = []
        var at: UInt64 = 0
        func add(_ from: UInt64, _ to: UInt64) {
            var a = (from + blockBytes - 1) / blockBytes * blockBytes
            let b = min(to, limit) / blockBytes * blockBytes
            while a < b {
                let e = min(b, a + trimBytesMax)
                out.append(a..<e)
                a = e
            }
        }
        for r in merge(referenced + done) {
            if r.lowerBound >= limit { break }
            if r.lowerBound > at { add(at, r.lowerBound) }
            at = max(at, r.upperBound)
        }
        if at < limit { add(at, limit) }
        return out
    }
}
