@testable import CairnFS
import CairnCore
import CairnMeta
import XCTest

/// The timed collection (PeriodicCollection.swift): one claim per interval for the whole
/// filesystem, and each mount's schedule.
final class PeriodicCollectionTests: XCTestCase {
    let second: Int64 = 1_000_000_000

    func mount(_ store: MetaStore, _ id: String, clock: Locked<Int64>) async throws -> FileSystem {
        let fs = FileSystem(store: store, prefix: "/fs/t/", data: MemorySliceStore(volume: "v" + id), mountID: id,
                            now: { FSTime(nanoseconds: clock.withLock { $0 }) })
        try await fs.ensureRoot(uid: 0, gid: 0)
        return fs
    }

    func testOneMountPerIntervalClaimsTheEndedCollection() async throws {
        let store = MemoryMetaStore()
        let clock = Locked<Int64>(1000 * 1_000_000_000)
        let a = try await mount(store, "a", clock: clock), b = try await mount(store, "b", clock: clock)
        var claimed = try await a.claimEndedCollection(interval: .seconds(600))
        XCTAssertTrue(claimed, "no claim yet: the first asker wins")
        claimed = try await b.claimEndedCollection(interval: .seconds(600))
        XCTAssertFalse(claimed, "a claimed it less than an interval ago")
        clock.withLock { $0 += 599 * second }
        claimed = try await a.claimEndedCollection(interval: .seconds(600))
        XCTAssertFalse(claimed, "not even the same mount before the interval is over")
        clock.withLock { $0 += 1 * second }
        claimed = try await b.claimEndedCollection(interval: .seconds(600))
        XCTAssertTrue(claimed, "an interval later another mount may claim it")
        let record = try await store.getJSON("/fs/t/gc-ended", as: EndedCollectionClaim.self)
        XCTAssertEqual(record?.0, EndedCollectionClaim(mount: "b", at: 1600 * second))
    }

    func testAClaimFromAClockAheadCountsAsFresh() async throws {
        let store = MemoryMetaStore()
        let ahead = Locked<Int64>(5000 * 1_000_000_000), behind = Locked<Int64>(1000 * 1_000_000_000)
        let a = try await mount(store, "a", clock: ahead), b = try await mount(store, "b", clock: behind)
        var claimed = try await a.claimEndedCollection(interval: .seconds(600))
        XCTAssertTrue(claimed)
        claimed = try await b.claimEndedCollection(interval: .seconds(600))
        XCTAssertFalse(claimed, "a claim in this clock's future is not an old claim")
    }

    func testRacingClaimsHaveOneWinner() async throws {
        let store = MemoryMetaStore()
        let clock = Locked<Int64>(1000 * 1_000_000_000)
        var mounts: [FileSystem] = []
        for i in 0..<8 { mounts.append(try await mount(store, "m\(i)", clock: clock)) }
        let wins = try await withThrowingTaskGroup(of: Bool.self) { group in
            for m in mounts { group.addTask { try await m.claimEndedCollection(interval: .seconds(60)) } }
            var n = 0
            for try await won in group where won { n += 1 }
            return n
        }
        XCTAssertEqual(wins, 1)
    }

    func testScheduleFirstDueAfterOneIntervalWithJitterThenEveryInterval() {
        var s = CollectionSchedule(interval: .seconds(10))
        let sec: UInt64 = 1_000_000_000
        XCTAssertFalse(s.isDue(monotonicNow: 0, jitter: 0.5), "the first call only sets the time")
        XCTAssertFalse(s.isDue(monotonicNow: 10 * sec, jitter: 0), "jitter 0.5 stretches the first interval by 5%")
        XCTAssertTrue(s.isDue(monotonicNow: 10 * sec + sec / 2, jitter: 0))
        XCTAssertFalse(s.isDue(monotonicNow: 20 * sec, jitter: 0))
        XCTAssertTrue(s.isDue(monotonicNow: 20 * sec + sec / 2, jitter: 0))
        var off = CollectionSchedule(interval: .zero)
        XCTAssertFalse(off.isDue(monotonicNow: 0, jitter: 0))
        XCTAssertFalse(off.isDue(monotonicNow: UInt64.max / 2, jitter: 0), "interval 0: never")
    }
}
