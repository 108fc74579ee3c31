@testable import CairnFS
import CairnCore
import CairnMeta

/// A FileSystem on `store` with a root, a clock that ticks a nanosecond per reading, and
/// the given buffering: the mount most unit tests of this module start from.
func makeTestMount(_ store: MetaStore, _ data: SliceStore, _ id: String,
                   buffering: WriteBufferLimits = .none) async throws -> FileSystem {
    let clock = Locked<Int64>(1_000_000_000)
    let fs = FileSystem(store: store, prefix: "/fs/t/", data: data, mountID: id, buffering: buffering,
                        now: { FSTime(nanoseconds: clock.withLock { $0 += 1; return $0 }) })
    try await fs.ensureRoot(uid: 0, gid: 0)
    return fs
}
