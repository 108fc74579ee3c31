// Input checks shared by every backend, so each rejects exactly the same requests
// before it reads or writes anything.
import CairnCore

public enum MetaValidation {
    public static func key(_ key: String) throws {
        let bytes = key.utf8.count
        guard bytes > 0 else { throw CairnError.invalidArgument("metadata key must not be empty") }
        guard bytes <= MetaLimits.keyBytesMax else {
            throw CairnError.invalidArgument("metadata key of \(bytes) bytes exceeds \(MetaLimits.keyBytesMax)")
        }
        guard !key.utf8.contains(0) else {
            throw CairnError.invalidArgument("metadata key must not contain a NUL byte")
        }
    }

    public static func getMany(_ keys: [String]) throws {
        guard keys.count <= MetaLimits.getManyKeysMax else {
            throw CairnError.invalidArgument("\(keys.count) keys in one read exceed \(MetaLimits.getManyKeysMax)")
        }
        for k in keys { try key(k) }
    }

    /// A prefix may be empty (everything) for reads, never for `deletePrefix`.
    public static func prefix(_ prefix: String, allowEmpty: Bool) throws {
        if prefix.isEmpty {
            guard allowEmpty else { throw CairnError.invalidArgument("deletePrefix needs a non-empty prefix") }
            return
        }
        try key(prefix)
    }

    public static func value(_ value: [UInt8], key: String) throws {
        guard value.count <= MetaLimits.valueBytesMax else {
            throw CairnError.invalidArgument(
                "value of \(value.count) bytes for \(key) exceeds \(MetaLimits.valueBytesMax)")
        }
    }

    public static func range(prefix: String, after: String?, limit: Int) throws {
        try self.prefix(prefix, allowEmpty: true)
        if let after { try key(after) }
        guard limit >= 1, limit <= MetaLimits.rangeLimitMax else {
            throw CairnError.invalidArgument("range limit \(limit) is outside 1...\(MetaLimits.rangeLimitMax)")
        }
    }

    public static func watch(prefix: String, afterRevision: Int64, timeout: Duration) throws {
        try self.prefix(prefix, allowEmpty: true)
        guard afterRevision >= 0 else {
            throw CairnError.invalidArgument("watch revision \(afterRevision) is negative")
        }
        guard timeout >= .zero, timeout <= MetaLimits.watchTimeoutMax else {
            throw CairnError.invalidArgument("watch timeout \(timeout) is outside 0...\(MetaLimits.watchTimeoutMax)")
        }
    }

    public static func txn(compare: [TxnCompare], success: [TxnOp], failure: [TxnOp]) throws {
        guard compare.count <= MetaLimits.txnComparesMax else {
            throw CairnError.invalidArgument("\(compare.count) compares exceed \(MetaLimits.txnComparesMax)")
        }
        for c in compare {
            switch c {
            case .modRevision(let k, let rev):
                try key(k)
                guard rev >= 0 else { throw CairnError.invalidArgument("compare revision \(rev) for \(k) is negative") }
            case .valueEquals(let k, let v):
                try key(k)
                try value(v, key: k)
            }
        }
        try branch(success)
        try branch(failure)
    }

    /// etcd's rule: a key is put at most once per branch and is not also deleted by it,
    /// so the result never depends on the order of the ops.
    private static func branch(_ ops: [TxnOp]) throws {
        guard ops.count <= MetaLimits.txnOpsMax else {
            throw CairnError.invalidArgument("\(ops.count) ops exceed \(MetaLimits.txnOpsMax)")
        }
        var putKeys: [String] = []
        var deleteKeys: [String] = []
        var deletePrefixes: [String] = []
        for op in ops {
            switch op {
            case .put(let k, let v):
                try key(k); try value(v, key: k); putKeys.append(k)
            case .delete(let k):
                try key(k); deleteKeys.append(k)
            case .deletePrefix(let p):
                try prefix(p, allowEmpty: false); deletePrefixes.append(p)
            }
        }
        var seen = Set<[UInt8]>()
        for k in putKeys {
            guard seen.insert(Array(k.utf8)).inserted else {
                throw CairnError.invalidArgument("key \(k) is put twice in one transaction")
            }
            let deleted = deleteKeys.contains { $0.utf8Equals(k) } || deletePrefixes.contains { k.utf8HasPrefix($0) }
            guard !deleted else {
                throw CairnError.invalidArgument("key \(k) is both put and deleted in one transaction")
            }
        }
    }
}

/// Byte-wise key comparisons: Swift's `String` compares by canonical equivalence, which
/// would make two distinct stored keys equal in memory but not in SQLite or etcd.
extension String {
    func utf8Equals(_ other: String) -> Bool { utf8.elementsEqual(other.utf8) }
    func utf8Precedes(_ other: String) -> Bool { utf8.lexicographicallyPrecedes(other.utf8) }
    func utf8HasPrefix(_ prefix: String) -> Bool { utf8.starts(with: prefix.utf8) }

    /// The least string greater than every string with this prefix (the prefix with its
    /// last scalar incremented, as etcd's `prefixEnd`), or nil when there is none.
    /// UTF-8 byte order equals scalar order, so `[self, upperBound)` is exactly the prefix.
    var prefixUpperBound: String? {
        var scalars = Array(unicodeScalars)
        while let last = scalars.popLast() {
            var next = last.value + 1
            if next == 0xD800 { next = 0xE000 }  // Skip the surrogates, which are no scalars.
            if let scalar = Unicode.Scalar(next) {
                scalars.append(scalar)
                var s = String.UnicodeScalarView()
                s.append(contentsOf: scalars)
                return String(s)
            }
        }
        return nil
    }
}
