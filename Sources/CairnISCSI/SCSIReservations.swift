// Reservations of one logical unit, shared by every session to it: SPC-2 RESERVE/RELEASE(6)
// and SPC-4 persistent reservations (registrations by I_T nexus, one reservation of a
// type). Kept in memory: they do not survive a gateway restart (APTPL is not offered).
//
// Locking: every method takes the lock for its whole body; nothing awaits under it.
import CairnCore
import Foundation

/// An I_T nexus: the initiator port (name plus ISID) as seen by this target.
public struct ITNexus: Hashable, Sendable, CustomStringConvertible {
    public var initiator: String
    public var isid: UInt64
    public init(initiator: String, isid: UInt64) { self.initiator = initiator; self.isid = isid }
    public var description: String { "\(initiator),i,0x\(String(isid, radix: 16))" }
}

/// How a command touches the medium, for reservation conflicts.
enum SCSIAccess {
    case none, read, write
}

public enum PRType: UInt8, Sendable {
    case writeExclusive = 1, exclusiveAccess = 3, writeExclusiveRegistrantsOnly = 5
    case exclusiveAccessRegistrantsOnly = 6, writeExclusiveAllRegistrants = 7, exclusiveAccessAllRegistrants = 8

    var allRegistrants: Bool { self == .writeExclusiveAllRegistrants || self == .exclusiveAccessAllRegistrants }
    var registrantsHaveAccess: Bool { rawValue >= 5 }
    var exclusiveAccess: Bool { self == .exclusiveAccess || self == .exclusiveAccessRegistrantsOnly || self == .exclusiveAccessAllRegistrants }
}

public final class SCSIReservations: @unchecked Sendable {
    struct Reservation { var holder: ITNexus; var type: PRType }
    struct State {
        var reserve6: ITNexus?
        var keys: [ITNexus: UInt64] = [:]
        var reservation: Reservation?
        var generation: UInt32 = 0
    }
    private let state = Locked(State())
    /// Registrations per logical unit: far more than any test or cluster uses.
    static let registrationsMax = 1024

    public init() {}

    /// nil if the command may run; otherwise it ends with RESERVATION CONFLICT.
    /// `reserve6Exempt`: the few commands a RESERVE(6) of another nexus lets through (SPC-2).
    func conflicts(_ nexus: ITNexus, _ access: SCSIAccess, reserve6Exempt: Bool) -> Bool {
        state.withLock { s in
            if let owner = s.reserve6, owner != nexus, !reserve6Exempt { return true }
            guard access != .none, let r = s.reservation else { return false }
            if isHolder(s, r, nexus) { return false }
            if r.type.registrantsHaveAccess, s.keys[nexus] != nil { return false }
            return access == .write || r.type.exclusiveAccess
        }
    }

    private func isHolder(_ s: State, _ r: Reservation, _ nexus: ITNexus) -> Bool {
        r.type.allRegistrants ? s.keys[nexus] != nil : r.holder == nexus
    }

    // MARK: - RESERVE/RELEASE(6)

    func reserve6(_ nexus: ITNexus) -> Bool {
        state.withLock { s in
            if let owner = s.reserve6, owner != nexus { return false }
            if let r = s.reservation, !isHolder(s, r, nexus) { return false }
            s.reserve6 = nexus
            return true
        }
    }

    func release6(_ nexus: ITNexus) {
        state.withLock { s in if s.reserve6 == nexus { s.reserve6 = nil } }
    }

    /// The nexus ended (logout, connection loss): its RESERVE(6) goes; registrations stay.
    public func nexusLost(_ nexus: ITNexus) { release6(nexus) }

    /// LUN reset or target reset: RESERVE(6) reservations are released (SPC-2).
    public func reset() { state.withLock { $0.reserve6 = nil } }

    // MARK: - PERSISTENT RESERVE IN

    func readKeys() -> [UInt8] {
        state.withLock { s in
            var out = be32(s.generation) + be32(UInt32(s.keys.count * 8))
            for key in s.keys.values.sorted() { out += be64(key) }
            return out
        }
    }

    func readReservation() -> [UInt8] {
        state.withLock { s in
            guard let r = s.reservation else { return be32(s.generation) + be32(0) }
            let key = r.type.allRegistrants ? 0 : (s.keys[r.holder] ?? 0)
            return be32(s.generation) + be32(16) + be64(key) + [0, 0, 0, 0, 0, r.type.rawValue, 0, 0]
        }
    }

    /// READ FULL STATUS: one descriptor per registration, with its iSCSI TransportID.
    func readFullStatus() -> [UInt8] {
        state.withLock { s in
            var out: [UInt8] = []
            for (nexus, key) in s.keys.sorted(by: { $0.key.description < $1.key.description }) {
                let holder = s.reservation.map { isHolder(s, $0, nexus) } ?? false
                var name = Array("\(nexus.initiator),i,0x\(String(format: "%012llx", nexus.isid))".utf8) + [0]
                while name.count % 4 != 0 { name.append(0) }
                let transportID: [UInt8] = [0x40 | 0x05, 0] + be16(UInt16(name.count)) + name
                out += be64(key) + [0, 0, 0, 0, holder ? 0x01 : 0, holder ? s.reservation!.type.rawValue : 0]
                out += [0, 0, 0, 0] + be16(1) + be32(UInt32(transportID.count)) + transportID
            }
            return be32(s.generation) + be32(UInt32(out.count)) + out
        }
    }

    // MARK: - PERSISTENT RESERVE OUT

    enum OutResult: Equatable { case good, conflict, sense(SCSISense) }

    func register(_ nexus: ITNexus, key: UInt64, newKey: UInt64, ignoreExisting: Bool) -> OutResult {
        state.withLock { s in
            let current = s.keys[nexus]
            if !ignoreExisting && (current ?? 0) != key { return .conflict }
            if newKey == 0 {
                guard current != nil else { return .good }
                s.keys[nexus] = nil
                if let r = s.reservation {
                    if r.type.allRegistrants { if s.keys.isEmpty { s.reservation = nil } } else if r.holder == nexus { s.reservation = nil }
                }
            } else {
                guard current != nil || s.keys.count < Self.registrationsMax else {
                    return .sense(SCSISense(key: SCSISense.keyIllegalRequest, asc: 0x55, ascq: 0x04))
                }
                s.keys[nexus] = newKey
            }
            s.generation &+= 1
            return .good
        }
    }

    func reserve(_ nexus: ITNexus, key: UInt64, type: PRType) -> OutResult {
        state.withLock { s in
            guard let k = s.keys[nexus], k == key else { return .conflict }
            if let r = s.reservation {
                return isHolder(s, r, nexus) && r.type == type ? .good : .conflict
            }
            if let owner = s.reserve6, owner != nexus { return .conflict }
            s.reservation = Reservation(holder: nexus, type: type)
            return .good
        }
    }

    func release(_ nexus: ITNexus, key: UInt64, type: PRType) -> OutResult {
        state.withLock { s in
            guard let k = s.keys[nexus], k == key else { return .conflict }
            guard let r = s.reservation, isHolder(s, r, nexus) else { return .good }
            guard r.type == type else { return .sense(.invalidReleaseOfPersistentReservation) }
            s.reservation = nil
            return .good
        }
    }

    func clear(_ nexus: ITNexus, key: UInt64) -> OutResult {
        state.withLock { s in
            guard let k = s.keys[nexus], k == key else { return .conflict }
            s.keys = [:]
            s.reservation = nil
            s.generation &+= 1
            return .good
        }
    }

    func preempt(_ nexus: ITNexus, key: UInt64, victimKey: UInt64, type: PRType) -> OutResult {
        state.withLock { s in
            guard let k = s.keys[nexus], k == key else { return .conflict }
            if let r = s.reservation, r.type.allRegistrants, victimKey == 0 {
                // Everyone else goes; the preempter holds a new reservation.
                s.keys = s.keys.filter { $0.key == nexus }
                s.reservation = Reservation(holder: nexus, type: type)
                s.generation &+= 1
                return .good
            }
            guard victimKey != 0 else { return .sense(.invalidFieldInParameterList) }
            let victims = s.keys.filter { $0.value == victimKey && $0.key != nexus }.map(\.key)
            if let r = s.reservation, !r.type.allRegistrants, s.keys[r.holder] == victimKey {
                for v in victims { s.keys[v] = nil }
                s.reservation = Reservation(holder: nexus, type: type)
            } else {
                guard !victims.isEmpty else { return .conflict }
                for v in victims { s.keys[v] = nil }
            }
            s.generation &+= 1
            return .good
        }
    }
}

/// Reservation state per logical unit (volume name), shared by all sessions of a gateway.
public final class SCSIReservationRegistry: @unchecked Sendable {
    private let units = Locked<[String: SCSIReservations]>([:])
    public init() {}
    public func reservations(for name: String) -> SCSIReservations {
        units.withLock { u in
            if let r = u[name] { return r }
            let r = SCSIReservations()
            u[name] = r
            return r
        }
    }
}

func be16(_ v: UInt16) -> [UInt8] { [UInt8(v >> 8), UInt8(v & 0xff)] }
func be32(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8((v >> 16) & 0xff), UInt8((v >> 8) & 0xff), UInt8(v & 0xff)] }
func be64(_ v: UInt64) -> [UInt8] { be32(UInt32(v >> 32)) + be32(UInt32(v & 0xffff_ffff)) }
