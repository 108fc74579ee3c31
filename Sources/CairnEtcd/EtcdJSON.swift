// The JSON shapes of etcd's v3 gRPC gateway (etcd 3.4+, `POST /v3/...`), written from the
// etcd API reference (rpc.proto, kv.proto): proto3 JSON mapping, so keys and values are
// base64, 64-bit integers are decimal strings, and fields at their default value (false,
// 0, empty) are left out of answers. Pure data: no I/O here.
import Foundation

enum EtcdJSON {
    static func b64(_ bytes: [UInt8]) -> String { Data(bytes).base64EncodedString() }
    static func b64(_ text: String) -> String { b64(Array(text.utf8)) }
    static func bytes(_ b64: String?) -> [UInt8] {
        guard let b64, let data = Data(base64Encoded: b64) else { return [] }
        return [UInt8](data)
    }
    static func int(_ text: String?) -> Int64 { text.flatMap { Int64($0) } ?? 0 }

    /// The smallest key greater than every key that starts with `prefix` (etcd's range_end
    /// for a prefix); "\0" (every key) for an empty prefix or one of only 0xff bytes.
    static func prefixEnd(_ prefix: [UInt8]) -> [UInt8] {
        var end = prefix
        while let last = end.last {
            if last < 0xff {
                end[end.count - 1] = last + 1
                return end
            }
            end.removeLast()
        }
        return [0]
    }

    // MARK: Requests

    struct RangeRequest: Encodable {
        var key: String
        var range_end: String?
        var limit: String?
        var count_only: Bool?
    }

    struct Compare: Encodable {
        var result = "EQUAL"
        var target: String  // "MOD" or "VALUE"
        var key: String
        var mod_revision: String?
        var value: String?
    }

    struct PutRequest: Encodable {
        var key: String
        var value: String
        var lease: String?
    }

    struct DeleteRangeRequest: Encodable {
        var key: String
        var range_end: String?
    }

    final class RequestOp: Encodable {
        var request_put: PutRequest?
        var request_delete_range: DeleteRangeRequest?
        var request_txn: TxnRequest?
        init(put: PutRequest) { request_put = put }
        init(delete: DeleteRangeRequest) { request_delete_range = delete }
        init(txn: TxnRequest) { request_txn = txn }
    }

    struct TxnRequest: Encodable {
        var compare: [Compare]
        var success: [RequestOp]
        var failure: [RequestOp]
    }

    struct CompactionRequest: Encodable {
        var revision: String
        var physical = true
    }

    struct WatchCreate: Encodable {
        struct Body: Encodable {
            var key: String
            var range_end: String?
            var start_revision: String
        }
        var create_request: Body
    }

    struct LeaseGrantRequest: Encodable { var TTL: String }
    struct LeaseIDRequest: Encodable { var ID: String }
    struct Empty: Encodable {}

    // MARK: Answers

    struct Header: Decodable { var revision: String? }

    struct KeyValue: Decodable {
        var key: String?
        var value: String?
        var create_revision: String?
        var mod_revision: String?
        var version: String?
        var lease: String?
    }

    struct RangeResponse: Decodable {
        var header: Header?
        var kvs: [KeyValue]?
        var more: Bool?
        var count: String?
    }

    final class ResponseOp: Decodable {
        var response_txn: TxnResponse?
    }

    struct TxnResponse: Decodable {
        var header: Header?
        var succeeded: Bool?
        var responses: [ResponseOp]?
    }

    struct Event: Decodable {
        var type: String?  // absent for PUT, "DELETE"
        var kv: KeyValue?
    }

    struct WatchResponse: Decodable {
        var header: Header?
        var created: Bool?
        var canceled: Bool?
        var compact_revision: String?
        var cancel_reason: String?
        var events: [Event]?
    }

    /// One line of a streamed answer: `{"result": ...}` or `{"error": ...}`.
    struct StreamLine<T: Decodable>: Decodable {
        var result: T?
        var error: ErrorBody?
    }

    struct LeaseGrantResponse: Decodable {
        var header: Header?
        var ID: String?
        var TTL: String?
        var error: String?
    }

    struct LeaseKeepAliveResponse: Decodable {
        var ID: String?
        var TTL: String?
    }

    struct ErrorBody: Decodable {
        var error: String?
        var message: String?
        var code: Int?
        var http_code: Int?
    }
}
