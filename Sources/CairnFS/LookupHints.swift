// Which inode each directory entry named when this mount last read it, used only to
// choose which keys to read: a lookup asks the store for the entry and its hinted inode
// in one call (`MetaStore.getMany`) instead of one call for the entry and then one for
// the inode. Both values come fresh from the store, so a stale hint (another mount
// renamed or replaced the name) costs one more call, never a wrong answer: nothing
// here is a cache of metadata, and close-to-open between mounts is unchanged.
import CairnCore

final class LookupHints: Sendable {
    /// Entries remembered at most; a full table is emptied (hints are only an optimisation).
    static let entriesMax = 65_536
    private let hints = Locked<[String: InodeNumber]>([:])

    func inode(of entryKey: String) -> InodeNumber? { hints.withLock { $0[entryKey] } }

    func note(_ entryKey: String, _ ino: InodeNumber) {
        hints.withLock { h in
            if h.count >= Self.entriesMax && h[entryKey] == nil { h.removeAll() }
            h[entryKey] = ino
        }
    }

    func forget(_ entryKey: String) { _ = hints.withLock { $0.removeValue(forKey: entryKey) } }
}
