// Garbage collection without `cairn fs gc` asking (Collector.swift has the rules).
//
// Every mount collects its own volume every `--gc-interval` (default 10 minutes): the
// same trim below an append mark at least `--gc-grace` old that answers a `cairn fs gc`
// request. The collection of ended mounts' volumes (retire, delete, trim) is one job for
// the whole filesystem: at each interval a mount tries to claim it by rewriting
// `gc-ended` (the claiming mount and the wall-clock time) in a transaction comparing the
// record's revision, and only when the last claim is at least one interval old. So one
// mount of many runs it per interval; two that both win (a clock step, a lost answer)
// are still safe, because every step of `collectEnded` is a compare-and-swap or
// idempotent (a second delete finds the volume gone, a second trim frees nothing new).
import CairnCore
import CairnMeta
import Foundation

/// gc-ended: the last timed collection of ended mounts' volumes.
public struct EndedCollectionClaim: Codable, Sendable, Equatable {
    public var mount: String
    /// Wall-clock time of the claim (nanoseconds since the epoch).
    public var at: Int64
}

extension FileSystem {
    /// Default period of the timed collection (`cairn mount --gc-interval`).
    public static let collectInterval = Duration.seconds(600)

    /// Claims this interval's collection of ended mounts' volumes: true when no claim
    /// exists or the last is at least `interval` old and this mount's claim replaced it.
    public func claimEndedCollection(interval: Duration) async throws -> Bool {
        let key = keys.endedCollection
        let nowNanos = now().nanoseconds
        let last = try await store.getJSON(key, as: EndedCollectionClaim.self)
        if let (claim, _) = last {
            // A claim from the future (another host's clock is ahead) counts as fresh.
            if nowNanos - claim.at < Self.nanos(interval) { return false }
        }
        let record = try store.putJSON(key, EndedCollectionClaim(mount: mountID, at: nowNanos))
        let result = try await store.txn(compare: [.modRevision(key: key, equals: last?.1 ?? 0)],
                                         success: [record], failure: [])
        return result.succeeded
    }

    static func nanos(_ d: Duration) -> Int64 {
        d.components.seconds * 1_000_000_000 + d.components.attoseconds / 1_000_000_000
    }
}

/// When a mount's timed collection is next due (monotonic nanoseconds).
public struct CollectionSchedule: Sendable {
    public let interval: Duration
    private var due: UInt64?

    /// `interval` zero: never due.
    public init(interval: Duration) { self.interval = interval }

    /// True (and the next time set) when a collection is due at `now`. The first is one
    /// interval after the first call, stretched by up to a tenth by `jitter` (0...1) so
    /// mounts started together do not collect together.
    public mutating func isDue(monotonicNow now: UInt64, jitter: Double) -> Bool {
        guard interval > .zero else { return false }
        let step = UInt64(FileSystem.nanos(interval))
        guard let at = due else {
            due = now + step + UInt64(Double(step) * min(max(jitter, 0), 1) / 10)
            return false
        }
        guard now >= at else { return false }
        due = now + step
        return true
    }
}
