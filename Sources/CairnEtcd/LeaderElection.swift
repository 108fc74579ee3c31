// Electing one leader among several `cairn manager` processes, on an etcd lease.
//
// A candidate grants itself a lease of `ttl` seconds and, in one transaction, creates the
// leader key (value: its API address) bound to that lease if the key does not exist. The
// one whose transaction succeeds leads; the key's mod revision is its term, and
// EtcdMetaStore fences every metadata write on that revision, so a leader that lost the
// key (lease expired during a pause, network cut) cannot change anything even before it
// notices. The leader refreshes its lease every ttl/3; when the lease is gone, the key
// moved, or etcd could not confirm the lease for 2/3 of a ttl, it steps down (before the
// lease can have expired in etcd, so two managers never both believe they lead for long;
// the fence makes even that harmless). Candidates
// that lost watch the key and try again as soon as it is deleted (or every 2 ttl, in case
// a watch misses). A leader that stops cleanly revokes its lease, so a successor takes
// over at once instead of after the ttl.
import CairnCore
import CairnMeta
import Foundation
import Logging

public final class EtcdLeaderElection: @unchecked Sendable {
    public struct Term: Sendable, Equatable {
        public let lease: Int64
        /// Mod revision of the leader key when this candidate created it: the fence.
        public let revision: Int64
    }

    let client: EtcdClient
    /// The raw etcd key (outside any store namespace).
    public let key: String
    let candidate: String
    let ttlSeconds: Int64
    let logger: Logger
    private let raw: EtcdMetaStore

    public init(client: EtcdClient, key: String, candidate: String, ttlSeconds: Int64, logger: Logger) throws {
        guard ttlSeconds >= 2, ttlSeconds <= 3600 else {
            throw CairnError.invalidArgument("leader lease ttl \(ttlSeconds)s is outside 2...3600 s")
        }
        // Its own client whose calls give up within half a ttl, so `hold` notices an
        // unreachable etcd before the lease could have expired there.
        let quick = try EtcdClient(endpoints: client.endpoints, group: client.group)
        quick.callTimeout = .milliseconds(ttlSeconds * 500)
        quick.retryWindow = .milliseconds(ttlSeconds * 500)
        self.client = quick; self.key = key; self.candidate = candidate
        self.ttlSeconds = ttlSeconds; self.logger = logger
        raw = try EtcdMetaStore(client: quick, namespace: "")
    }

    /// The address in the leader key, if some candidate leads.
    public func leader() async -> String? {
        guard let kv = try? await raw.get(key) else { return nil }
        return String(decoding: kv.value, as: UTF8.self)
    }

    /// Returns once this candidate leads; retries through etcd outages until cancelled.
    public func campaign() async throws -> Term {
        while true {
            try Task.checkCancellation()
            do {
                if let term = try await tryOnce() { return term }
                try await waitForVacancy()
            } catch let e as CancellationError {
                throw e
            } catch {
                logger.warning("leader election: etcd call failed; trying again", metadata: ["error": "\(error)"])
                try await Task.sleep(for: .seconds(1))
            }
        }
    }

    private func tryOnce() async throws -> Term? {
        let granted = try await client.call("/v3/lease/grant", EtcdJSON.LeaseGrantRequest(TTL: String(ttlSeconds)),
                                            as: EtcdJSON.LeaseGrantResponse.self)
        let lease = EtcdJSON.int(granted.ID)
        guard lease != 0 else { throw CairnError.unavailable("etcd granted no lease: \(granted.error ?? "no reason given")") }
        let put = EtcdJSON.PutRequest(key: EtcdJSON.b64(key), value: EtcdJSON.b64(candidate), lease: String(lease))
        let txn = EtcdJSON.TxnRequest(compare: [EtcdJSON.Compare(target: "MOD", key: EtcdJSON.b64(key), mod_revision: "0")],
                                      success: [EtcdJSON.RequestOp(put: put)], failure: [])
        let answer = try await client.call("/v3/kv/txn", txn, as: EtcdJSON.TxnResponse.self)
        if answer.succeeded == true {
            let term = Term(lease: lease, revision: EtcdJSON.int(answer.header?.revision))
            logger.info("leader election: this manager leads", metadata: ["term": "\(term.revision)"])
            return term
        }
        await revoke(lease)
        return nil
    }

    /// Waits until the leader key is deleted (or 2 ttl pass).
    private func waitForVacancy() async throws {
        guard let current = try await raw.get(key) else { return }
        let deadline = ContinuousClock.now + .seconds(2 * ttlSeconds)
        var after = current.modRevision
        while ContinuousClock.now < deadline {
            try Task.checkCancellation()
            let events = try await raw.watch(prefix: key, afterRevision: after, timeout: .seconds(ttlSeconds))
            if events.contains(where: { $0.key == key && $0.kind == .delete }) { return }
            if let last = events.last { after = last.modRevision }
        }
    }

    /// Keeps the term alive; returns when it is lost (or throws CancellationError when cancelled).
    public func hold(_ term: Term) async throws {
        var confirmed = ContinuousClock.now
        let period = Duration.milliseconds(ttlSeconds * 1000 / 3)
        while true {
            try await Task.sleep(for: period)
            do {
                let line = try await client.call("/v3/lease/keepalive", EtcdJSON.LeaseIDRequest(ID: String(term.lease)),
                                                 as: EtcdJSON.StreamLine<EtcdJSON.LeaseKeepAliveResponse>.self)
                guard EtcdJSON.int(line.result?.TTL) > 0 else {
                    logger.warning("leader election: the lease expired; stepping down", metadata: ["term": "\(term.revision)"])
                    return
                }
                guard let kv = try await raw.get(key), kv.modRevision == term.revision else {
                    logger.warning("leader election: the leader key moved; stepping down", metadata: ["term": "\(term.revision)"])
                    return
                }
                confirmed = ContinuousClock.now
            } catch let e as CancellationError {
                throw e
            } catch {
                if ContinuousClock.now - confirmed > .milliseconds(ttlSeconds * 1000 * 2 / 3) {
                    logger.warning("leader election: etcd unreachable for a whole lease; stepping down",
                                   metadata: ["error": "\(error)"])
                    return
                }
            }
        }
    }

    /// Gives the term up at once (a clean stop): the key goes with the lease.
    public func resign(_ term: Term) async { await revoke(term.lease) }

    private func revoke(_ lease: Int64) async {
        _ = try? await client.call("/v3/lease/revoke", EtcdJSON.LeaseIDRequest(ID: String(lease)),
                                   as: EtcdJSON.RangeResponse.self)
    }
}
