// CairnMeta: the cluster's metadata store, a small transactional key-value interface
// modelled on etcd v3 so an etcd backend can replace the embedded ones unchanged.
//
// Invariants (every backend):
// - The store revision starts at 0 and grows by exactly one for each transaction that
//   changes at least one key; a transaction that changes nothing leaves it unchanged.
// - Every key written in a revision carries that revision as its `modRevision`; a key's
//   `createRevision` is the revision of the put that created it; `version` counts puts
//   since creation (a delete and put again starts over at 1).
// - Keys compare and match prefixes by their UTF-8 bytes (as SQLite and etcd do), never
//   by Swift's canonical-equivalence `==`.
// - A transaction's compares and ops are applied atomically: all or nothing.
//
// Fault model: a backend's I/O failure surfaces as `CairnError.io` and leaves the store
// at its previous revision; client input outside the limits in `MetaLimits` is
// `CairnError.invalidArgument`, rejected before anything is read or written.
import CairnCore

/// One stored key with its etcd-style revisions.
public struct KeyValue: Sendable, Equatable {
    public var key: String
    public var value: [UInt8]
    /// Revision of the put that created the key.
    public var createRevision: Int64
    /// Revision of the last put to the key.
    public var modRevision: Int64
    /// Number of puts since creation.
    public var version: Int64

    public init(key: String, value: [UInt8], createRevision: Int64, modRevision: Int64, version: Int64) {
        self.key = key; self.value = value
        self.createRevision = createRevision; self.modRevision = modRevision; self.version = version
    }
}

/// A condition a transaction checks before choosing its branch.
public enum TxnCompare: Sendable, Equatable {
    /// Holds when the key's `modRevision` equals the given one; 0 means "the key must not exist".
    case modRevision(key: String, equals: Int64)
    /// Holds when the key exists and its value has exactly these bytes.
    case valueEquals(key: String, value: [UInt8])
}

/// One write of a transaction branch. Within one branch a key may be put at most once
/// and may not be both put and deleted (etcd rejects such requests too).
public enum TxnOp: Sendable, Equatable {
    case put(key: String, value: [UInt8])
    case delete(key: String)
    /// Deletes every key that starts with the (non-empty) prefix.
    case deletePrefix(String)
}

public struct TxnResult: Sendable, Equatable {
    /// Whether every compare held (so the success branch ran, else the failure branch).
    public var succeeded: Bool
    /// Store revision after the transaction: unchanged when the branch that ran changed nothing.
    public var revision: Int64

    public init(succeeded: Bool, revision: Int64) {
        self.succeeded = succeeded; self.revision = revision
    }
}

/// One page of a range read, taken at a single revision.
public struct RangePage: Sendable, Equatable {
    public var items: [KeyValue]
    /// Whether keys with the prefix exist after the last item.
    public var more: Bool
    /// Store revision the page was read at.
    public var revision: Int64

    public init(items: [KeyValue], more: Bool, revision: Int64) {
        self.items = items; self.more = more; self.revision = revision
    }
}

/// One change seen by a watcher.
public struct WatchEvent: Sendable, Equatable {
    public enum Kind: Sendable { case put, delete }
    public var kind: Kind
    public var key: String
    /// The new value of a put; nil for a delete.
    public var value: [UInt8]?
    /// Revision of the transaction that made the change.
    public var modRevision: Int64

    public init(kind: Kind, key: String, value: [UInt8]?, modRevision: Int64) {
        self.kind = kind; self.key = key; self.value = value; self.modRevision = modRevision
    }
}

/// The metadata store interface. Implementations: `SQLiteMetaStore` (embedded, durable),
/// `MemoryMetaStore` (tests and simulation); an etcd backend later.
public protocol MetaStore: Sendable {
    func get(_ key: String) async throws -> KeyValue?
    /// Several keys in one call (nil for an absent one), in the order asked, at most
    /// `MetaLimits.getManyKeysMax`. A backend that can reads them all at one revision in
    /// one round trip; the default (below) is one `get` after another.
    func getMany(_ keys: [String]) async throws -> [KeyValue?]
    /// Keys with the prefix, in key order, strictly after `after` if given, at most
    /// `limit` (1...`MetaLimits.rangeLimitMax`).
    func range(prefix: String, after: String?, limit: Int) async throws -> RangePage
    /// All compares hold → apply every `success` op atomically; otherwise apply every
    /// `failure` op atomically. Either way one new revision for the whole transaction if
    /// it changed anything.
    func txn(compare: [TxnCompare], success: [TxnOp], failure: [TxnOp]) async throws -> TxnResult
    func currentRevision() async throws -> Int64
    /// Changes (puts and deletes) under a prefix after `afterRevision`, in revision order;
    /// returns when at least one exists or `timeout` passes (empty array then). Returns at
    /// most about `MetaLimits.watchEventsMax` events but never splits a revision, so a
    /// watcher continues from the last event's `modRevision`. Throws `CairnError.conflict`
    /// if the changes after `afterRevision` were compacted away: re-read with `range` and
    /// watch from the page's revision.
    func watch(prefix: String, afterRevision: Int64, timeout: Duration) async throws -> [WatchEvent]
    func close() async throws
}

extension MetaStore {
    public func getMany(_ keys: [String]) async throws -> [KeyValue?] {
        try MetaValidation.getMany(keys)
        var out: [KeyValue?] = []
        for key in keys { out.append(try await get(key)) }
        return out
    }
}

/// Every limit of the metadata interface, checked identically by every backend.
public enum MetaLimits {
    /// Longest key in UTF-8 bytes.
    public static let keyBytesMax = 4096
    /// Largest value (etcd's default request limit is 1.5 MiB).
    public static let valueBytesMax = 1 << 20
    /// Most ops in one transaction branch (etcd's default `--max-txn-ops`).
    public static let txnOpsMax = 128
    /// Most compares in one transaction.
    public static let txnComparesMax = 128
    /// Most keys of one `getMany`.
    public static let getManyKeysMax = 64
    /// Largest page of a range read.
    public static let rangeLimitMax = 10_000
    /// Events one watch call aims to return at most (a larger single revision is returned whole).
    public static let watchEventsMax = 1000
    /// Longest wait of one watch call.
    public static let watchTimeoutMax = Duration.seconds(300)
    /// Most attempts of one `update` compare-and-swap loop.
    public static let updateRetriesMax = 1000
    /// Revisions of changes the embedded backends keep for watchers.
    public static let changelogRevisionsKept: Int64 = 10_000
    /// How often the embedded backends look for new changes while a watch waits.
    public static let watchPollInterval = Duration.milliseconds(20)
}

/// What a waiting watch of an embedded backend calls between polls. Production uses
/// `task`; a simulation injects its own clock's sleep so a run replays from its seed.
public enum WatchSleep {
    public typealias Function = @Sendable (Duration) async throws -> Void
    public static let task: Function = { try await Task.sleep(for: $0) }
}
