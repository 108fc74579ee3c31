// Several servers that can each take a call (etcd members, managers of which one leads):
// a call goes first to the one that answered last, moves on to the next when the error
// says another may do better, and after a whole round waits a little and goes round again
// until its window has passed.
import CairnCore

public final class EndpointRotation: @unchecked Sendable {
    public let endpoints: [String]
    /// Index of the endpoint to try first: the last one that answered. Guarded by its lock.
    private let preferred = Locked(0)

    public init(_ endpoints: [String]) { self.endpoints = endpoints }

    /// Runs `body` against endpoints in turn. An error for which `moveOn` is true passes the
    /// call to the next endpoint; any other error ends it. With `window` zero it makes one
    /// round; otherwise it keeps going round, `pause` apart, until `window` has passed, and
    /// then throws the last error that moved it on.
    public func call<T>(window: Duration, pause: Duration, noAnswer: CairnError,
                        moveOn: (CairnError) -> Bool, _ body: (String) async throws -> T) async throws -> T {
        let clock = ContinuousClock()
        let deadline = clock.now + window
        var lastError = noAnswer
        while true {
            let start = preferred.snapshot
            for offset in 0..<endpoints.count {
                let index = (start + offset) % endpoints.count
                do {
                    let answer = try await body(endpoints[index])
                    preferred.withLock { $0 = index }
                    return answer
                } catch let e as CairnError where moveOn(e) {
                    lastError = e
                }
            }
            guard clock.now < deadline else { throw lastError }
            try await Task.sleep(for: pause)
        }
    }
}
