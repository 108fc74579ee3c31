// Liveness and readiness of a daemon, as named checks.
//
// /healthz (liveness) fails only when the process cannot do its job even if left alone
// (its data-path listener is gone): a restart may help. /readyz (readiness) also fails
// while a dependency is away (the manager has not answered recently): traffic should go
// elsewhere, but a restart would not help.
import CairnCore

/// A check answers nil when fine, otherwise why not (one line).
public typealias HealthCheck = @Sendable () async -> String?

public final class Health: @unchecked Sendable {
    private let liveness = Locked<[(String, HealthCheck)]>([])
    private let readiness = Locked<[(String, HealthCheck)]>([])

    public init() {}

    /// Must hold for the daemon to be alive; also part of readiness.
    public func addLivenessCheck(_ name: String, _ check: @escaping HealthCheck) {
        liveness.withLock { $0.append((name, check)) }
    }

    /// Must hold for the daemon to take traffic.
    public func addReadinessCheck(_ name: String, _ check: @escaping HealthCheck) {
        readiness.withLock { $0.append((name, check)) }
    }

    /// The failed checks as "name: reason" lines (empty when all hold).
    public func failures(includeReadiness: Bool) async -> [String] {
        var checks = liveness.snapshot
        if includeReadiness { checks += readiness.snapshot }
        var failed: [String] = []
        for (name, check) in checks {
            if let reason = await check() { failed.append("\(name): \(reason)") }
        }
        return failed
    }
}

/// When a dependency last answered. A daemon calls `succeeded()` after each successful
/// call (a heartbeat, a probe); `check` fails when the last success is older than
/// `staleAfter`, or there was none.
public final class ContactTracker: @unchecked Sendable {
    public let what: String
    public let staleAfter: Duration
    private let clock: @Sendable () -> ContinuousClock.Instant
    private let state = Locked<(last: ContinuousClock.Instant?, error: String?)>((nil, nil))

    public init(_ what: String, staleAfter: Duration,
                clock: @escaping @Sendable () -> ContinuousClock.Instant = { ContinuousClock.now }) {
        self.what = what; self.staleAfter = staleAfter; self.clock = clock
    }

    public func succeeded() {
        let now = clock()
        state.withLock { $0 = (now, nil) }
    }

    public func failed(_ error: Error) {
        state.withLock { $0.error = "\(error)" }
    }

    /// Calls `probe` every `interval` until the task is cancelled, recording each result:
    /// for daemons that have no heartbeat of their own to learn it from.
    public func watch(every interval: Duration, _ probe: @Sendable () async throws -> Void) async {
        while !Task.isCancelled {
            do {
                try await probe()
                succeeded()
            } catch {
                failed(error)
            }
            try? await Task.sleep(for: interval)
        }
    }

    /// Time since the last success; nil if none yet.
    public var age: Duration? {
        guard let last = state.snapshot.last else { return nil }
        return clock() - last
    }

    public var check: HealthCheck {
        { [self] in
            let s = state.snapshot
            let detail = s.error.map { " (last error: \($0))" } ?? ""
            guard let last = s.last else { return "\(what) has not answered yet\(detail)" }
            let age = clock() - last
            if age > staleAfter { return "\(what) last answered \(age.secondsDouble.formatted1) s ago\(detail)" }
            return nil
        }
    }
}

extension Duration {
    /// The duration in seconds, as a Double (for gauges and messages).
    public var secondsDouble: Double {
        let c = components
        return Double(c.seconds) + Double(c.attoseconds) / 1e18
    }
}

extension Double {
    var formatted1: String { String(Double(Int((self * 10).rounded())) / 10) }
}
