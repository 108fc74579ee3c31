// Conveniences every caller of a MetaStore shares: JSON records, reading a whole prefix,
// and the compare-and-swap retry loop. Generic over the protocol, so they behave the same
// on every backend.
import CairnCore
import Foundation

extension MetaStore {
    /// The key's value decoded from JSON, with its `modRevision` for a later compare.
    public func getJSON<T: Decodable>(_ key: String, as type: T.Type) async throws -> (T, Int64)? {
        guard let kv = try await get(key) else { return nil }
        do {
            return (try JSONDecoder().decode(T.self, from: Data(kv.value)), kv.modRevision)
        } catch {
            throw CairnError.internalError("metadata key \(key) does not hold a \(T.self): \(error)")
        }
    }

    /// A put of the value as JSON. Keys are sorted so equal values give equal bytes, which
    /// `TxnCompare.valueEquals` relies on.
    public func putJSON<T: Encodable>(_ key: String, _ value: T) throws -> TxnOp {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        do {
            return .put(key: key, value: [UInt8](try encoder.encode(value)))
        } catch {
            throw CairnError.invalidArgument("cannot encode \(T.self) for \(key): \(error)")
        }
    }

    /// Every key with the prefix, paging with `MetaLimits.rangeLimitMax`. The pages are read
    /// at successive revisions, not one snapshot: use it for listings, not for invariants
    /// that span keys.
    public func rangeAll(prefix: String) async throws -> [KeyValue] {
        var items: [KeyValue] = []
        var after: String?
        while true {
            let page = try await range(prefix: prefix, after: after, limit: MetaLimits.rangeLimitMax)
            items += page.items
            guard page.more, let last = page.items.last else { return items }
            after = last.key
        }
    }

    /// Reads the key's JSON value, applies `transform` and writes the result if the key has
    /// not changed meanwhile (a nil result deletes the key), retrying on a conflict up to
    /// `retries` attempts (1...`MetaLimits.updateRetriesMax`). Returns what was written.
    /// Throws `CairnError.conflict` when every attempt lost the race; an error thrown by
    /// `transform` ends the loop and is rethrown.
    @discardableResult
    public func update<T: Codable>(key: String, retries: Int, transform: (T?) throws -> T?) async throws -> T? {
        guard retries >= 1, retries <= MetaLimits.updateRetriesMax else {
            throw CairnError.invalidArgument("update retries \(retries) is outside 1...\(MetaLimits.updateRetriesMax)")
        }
        for _ in 0..<retries {
            let current = try await getJSON(key, as: T.self)
            let next = try transform(current?.0)
            let ops: [TxnOp]
            if let next {
                ops = [try putJSON(key, next)]
            } else if current != nil {
                ops = [.delete(key: key)]
            } else {
                ops = []  // Absent and to stay absent: the compare alone confirms it.
            }
            let result = try await txn(compare: [.modRevision(key: key, equals: current?.1 ?? 0)],
                                       success: ops, failure: [])
            if result.succeeded { return next }
        }
        throw CairnError.conflict("update of \(key) lost the race \(retries) times")
    }
}
