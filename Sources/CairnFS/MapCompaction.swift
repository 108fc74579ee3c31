// Keeping file maps small. A file's map is one metadata value (at most
// `MetaLimits.valueBytesMax`, 1 MiB: about 8,000 slices), and every random write adds a
// slice. So a flush that leaves a map with more than `mapSlicesCompactAt` slices
// rewrites the file's data: each run of the file without holes becomes fresh
// contiguous slices of at most `compactPieceBytesMax`, read through the current map and
// appended to this mount's volume, and one transaction comparing the inode's revision
// swaps them in. A file that changed meanwhile (another mount wrote) keeps its map; the
// next flush tries again, and the copies are garbage for the collector. A buffer is
// also flushed when it holds `pendingExtentsMax` separate extents, so one flush adds at
// most that many slices.
//
// Limit: holes are kept, so a sparse file of more than about 8,000 separate data
// islands still cannot be stored (EIO); splitting a map over several keys is not done.
import CairnCore
import CairnMeta
import Foundation

extension FileSystem {
    /// A map with more slices than this is compacted after a flush.
    public static let mapSlicesCompactAt = 2048
    /// Separate extents a file's write buffer holds before it is flushed.
    public static let pendingExtentsMax = 1024
    /// Largest slice a compaction writes (and holds in memory).
    static let compactPieceBytesMax: UInt64 = 16 << 20

    /// Rewrites the runs of a fragmented file as fresh slices (see above). Called
    /// inside the file's flush before its layer leaves, so this mount's later flushes of
    /// the file wait for it.
    func compactMap(_ ino: InodeNumber) async throws {
        guard let (node, revision) = try await store.getJSON(keys.inode(ino), as: Inode.self),
              node.slices.count > Self.mapSlicesCompactAt else { return }
        let pieces = Self.compactionPieces(node.slices)
        let storing = beginStore()
        defer { endStore(storing) }
        var fresh: [Slice] = []
        for p in pieces {
            let bytes = Self.joined(try await readSlices(node.slices, from: p.lowerBound, to: p.upperBound))
            let at = try await data.append(bytes)
            fresh.append(Slice(fileOffset: p.lowerBound, length: UInt64(p.count), volume: at.volume, volumeOffset: at.offset))
        }
        let t = FSTransaction(store: store)
        t.depend(on: keys.inode(ino), modRevision: revision)
        try await requireOwnVolume(t, recheck: false)
        var compacted = node
        for s in fresh { compacted.slices = SliceMap.write(compacted.slices, s) }
        try t.put(keys.inode(ino), compacted)
        _ = try await t.commit()  // lost: the file changed; the next flush tries again
    }

    /// The file's runs without holes, cut at `compactPieceBytesMax`; a piece that is one
    /// slice already is left out.
    static func compactionPieces(_ slices: [Slice]) -> [Range<UInt64>] {
        var runs: [(range: Range<UInt64>, slices: Int)] = []
        for s in slices {
            if let last = runs.last, last.range.upperBound == s.fileOffset {
                runs[runs.count - 1] = (last.range.lowerBound..<s.fileEnd, last.slices + 1)
            } else {
                runs.append((s.fileOffset..<s.fileEnd, 1))
            }
        }
        var out: [Range<UInt64>] = []
        for run in runs where run.slices > 1 {
            var at = run.range.lowerBound
            while at < run.range.upperBound {
                let end = min(run.range.upperBound, at + compactPieceBytesMax)
                out.append(at..<end)
                at = end
            }
        }
        return out
    }
}
