// JSON shapes of the metadata proxy (the manager's /v1/fs/{name}/meta/* routes) that
// lets a FUSE mount on another host use the cluster's metadata store through the
// manager. Values travel as base64; every key a request names is checked by the manager
// to lie under the filesystem's own prefix before the store sees it.
import CairnCore
import Foundation

public enum MetaWire {
    public struct KV: Codable, Sendable {
        public var key: String
        public var value: String  // base64
        public var createRevision: Int64
        public var modRevision: Int64
        public var version: Int64
        public init(_ kv: KeyValue) {
            key = kv.key; value = Data(kv.value).base64EncodedString()
            createRevision = kv.createRevision; modRevision = kv.modRevision; version = kv.version
        }
        public func decoded() throws -> KeyValue {
            KeyValue(key: key, value: try MetaWire.bytes(value), createRevision: createRevision,
                     modRevision: modRevision, version: version)
        }
    }

    public struct GetRequest: Codable, Sendable {
        public var key: String
        public init(key: String) { self.key = key }
    }
    public struct GetAnswer: Codable, Sendable {
        public var kv: KV?
        public init(kv: KV?) { self.kv = kv }
    }

    public struct GetManyRequest: Codable, Sendable {
        public var keys: [String]
        public init(keys: [String]) { self.keys = keys }
    }
    public struct GetManyAnswer: Codable, Sendable {
        /// One per key asked, in order; nil for an absent key.
        public var kvs: [KV?]
        public init(kvs: [KV?]) { self.kvs = kvs }
    }

    public struct RangeRequest: Codable, Sendable {
        public var prefix: String
        public var after: String?
        public var limit: Int
        public init(prefix: String, after: String?, limit: Int) { self.prefix = prefix; self.after = after; self.limit = limit }
    }
    public struct RangeAnswer: Codable, Sendable {
        public var items: [KV]
        public var more: Bool
        public var revision: Int64
        public init(_ page: RangePage) { items = page.items.map(KV.init); more = page.more; revision = page.revision }
        public func decoded() throws -> RangePage {
            RangePage(items: try items.map { try $0.decoded() }, more: more, revision: revision)
        }
    }

    public struct Compare: Codable, Sendable {
        public var key: String
        /// Set for a modRevision compare.
        public var modRevision: Int64?
        /// Set (base64) for a value compare.
        public var value: String?
        public init(_ c: TxnCompare) {
            switch c {
            case .modRevision(let k, let r): key = k; modRevision = r; value = nil
            case .valueEquals(let k, let v): key = k; modRevision = nil; value = Data(v).base64EncodedString()
            }
        }
        public func decoded() throws -> TxnCompare {
            if let modRevision { return .modRevision(key: key, equals: modRevision) }
            guard let value else { throw CairnError.invalidArgument("compare of '\(key)' names neither a revision nor a value") }
            return .valueEquals(key: key, value: try MetaWire.bytes(value))
        }
    }

    public struct Op: Codable, Sendable {
        /// put, delete or deletePrefix.
        public var op: String
        public var key: String
        public var value: String?
        public init(_ o: TxnOp) {
            switch o {
            case .put(let k, let v): op = "put"; key = k; value = Data(v).base64EncodedString()
            case .delete(let k): op = "delete"; key = k; value = nil
            case .deletePrefix(let p): op = "deletePrefix"; key = p; value = nil
            }
        }
        public func decoded() throws -> TxnOp {
            switch op {
            case "put": return .put(key: key, value: try MetaWire.bytes(value ?? ""))
            case "delete": return .delete(key: key)
            case "deletePrefix": return .deletePrefix(key)
            default: throw CairnError.invalidArgument("unknown transaction op '\(op)'")
            }
        }
    }

    public struct TxnRequest: Codable, Sendable {
        public var compare: [Compare]
        public var success: [Op]
        public var failure: [Op]
        public init(compare: [TxnCompare], success: [TxnOp], failure: [TxnOp]) {
            self.compare = compare.map(Compare.init); self.success = success.map(Op.init); self.failure = failure.map(Op.init)
        }
        /// Every key the request touches (compares, ops, prefixes).
        public var keys: [String] { compare.map(\.key) + success.map(\.key) + failure.map(\.key) }
    }
    public struct TxnAnswer: Codable, Sendable {
        public var succeeded: Bool
        public var revision: Int64
        public init(succeeded: Bool, revision: Int64) { self.succeeded = succeeded; self.revision = revision }
    }

    public struct RevisionAnswer: Codable, Sendable {
        public var revision: Int64
        public init(revision: Int64) { self.revision = revision }
    }

    public struct WatchRequest: Codable, Sendable {
        public var prefix: String
        public var afterRevision: Int64
        public var timeoutMilliseconds: Int64
        public init(prefix: String, afterRevision: Int64, timeoutMilliseconds: Int64) {
            self.prefix = prefix; self.afterRevision = afterRevision; self.timeoutMilliseconds = timeoutMilliseconds
        }
    }
    public struct Event: Codable, Sendable {
        public var put: Bool
        public var key: String
        public var value: String?
        public var modRevision: Int64
        public init(_ e: WatchEvent) {
            put = e.kind == .put; key = e.key; value = e.value.map { Data($0).base64EncodedString() }; modRevision = e.modRevision
        }
        public func decoded() throws -> WatchEvent {
            WatchEvent(kind: put ? .put : .delete, key: key, value: try value.map { try MetaWire.bytes($0) }, modRevision: modRevision)
        }
    }

    static func bytes(_ base64: String) throws -> [UInt8] {
        guard let d = Data(base64Encoded: base64) else { throw CairnError.invalidArgument("value is not base64") }
        return [UInt8](d)
    }

    /// The prefix every key of filesystem `name` lies under.
    public static func filesystemPrefix(_ name: String) -> String { "/fs/\(name)/" }
    /// Where the CSI plugin keeps its records (POST /v1/csi/meta/*).
    public static let csiPrefix = "/csi/"
}
