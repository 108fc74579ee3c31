import Foundation

/// A value guarded by a mutex. The only way to reach the value is inside `withLock`, so
/// no access can forget the lock. Never hold it across an `await`.
public final class Locked<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value
    public init(_ value: Value) { self.value = value }
    @discardableResult
    public func withLock<R>(_ body: (inout Value) throws -> R) rethrows -> R {
        lock.lock()
        defer { lock.unlock() }
        return try body(&value)
    }
    public var snapshot: Value { withLock { $0 } }
}
