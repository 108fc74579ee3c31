// The watcher that keeps a mount's metadata cache (MetaCache.swift) coherent: one long
// poll of the filesystem's whole prefix at a time, from the revision it has applied.
// Each batch of changes goes into the cache, then what other mounts changed is handed
// to the invalidation handler (the FUSE layer tells the kernel). A watch that fails, is
// compacted away or falls too far behind empties the cache (everything is served from
// the store meanwhile), and the watcher starts again from the store's current revision.
import CairnCore
import CairnMeta
import Foundation

extension FileSystem {
    /// How long one watch call waits for changes (the manager caps it at 30 s).
    static let cacheWatchWait = Duration.seconds(10)
    /// Pause after a failed watch before the resync.
    static let cacheWatchRetryPause = Duration.milliseconds(200)
    /// A watcher this many revisions behind the store drops the cache and resyncs
    /// rather than replaying the backlog (the changelog keeps 10,000 revisions).
    static let cacheWatchLagMax: Int64 = 5000
    /// Milliseconds the watcher waits at most for this mount's commits in flight to
    /// note their revisions (after that their changes are told to the kernel: harmless).
    static let ownCommitWaitsMax = 5000

    /// Who is told what the kernel must forget after other mounts' changes.
    public func setInvalidationHandler(_ handler: @escaping @Sendable ([CacheInvalidation]) async -> Void) {
        invalidationHandler.withLock { $0 = handler }
    }

    /// Whether this mount caches metadata (false: strict mode, every read asks the store).
    public var caching: Bool { cache != nil }

    /// Keeps the cache coherent until the task is cancelled; returns at once without a cache.
    public func runCacheWatcher() async {
        guard let cache else { return }
        var position: Int64?
        while !Task.isCancelled {
            do {
                if position == nil {
                    // Taken after the clear: every change after it is watched, and a read
                    // that starts after it is at least this new.
                    position = try await store.currentRevision()
                    cache.resynced()
                }
                let events = try await store.watch(prefix: keys.prefix, afterRevision: position!, timeout: Self.cacheWatchWait)
                guard let last = events.last?.modRevision else { continue }
                // A commit of this mount whose answer has not come back yet may have made
                // some of these changes: wait for it to note its revision, so the kernel
                // is not told to forget what this mount itself just told it.
                let mark = cache.commitMark
                for _ in 0..<Self.ownCommitWaitsMax where cache.commitsActive(below: mark) {
                    try await Task.sleep(for: .milliseconds(1))
                }
                let invalidations = cache.apply(events)
                position = last
                if !invalidations.isEmpty, let handler = invalidationHandler.withLock({ $0 }) { await handler(invalidations) }
                if events.count >= MetaLimits.watchEventsMax, try await store.currentRevision() - last > Self.cacheWatchLagMax {
                    throw CairnError.conflict("the cache watch is more than \(Self.cacheWatchLagMax) revisions behind")
                }
            } catch {
                if Task.isCancelled { return }
                cache.invalidateAll()
                position = nil
                // The kernel may hold anything another mount changed meanwhile: it has
                // to ask again (for what it learnt from this mount's cache).
                if let handler = invalidationHandler.withLock({ $0 }) { await handler([.all]) }
                try? await Task.sleep(for: Self.cacheWatchRetryPause)
            }
        }
    }

    /// Counters of the cache (hits, misses, clears), for tests and diagnostics.
    public var cacheCounters: (hits: Int, misses: Int, clears: Int)? { cache?.counters }
}
