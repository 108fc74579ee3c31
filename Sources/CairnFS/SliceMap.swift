// Operations on a file's map of slices (sorted by fileOffset, non-overlapping).
enum SliceMap {
    /// The map with `new` written over whatever it overlaps; a neighbour that continues
    /// it in both the file and the same data volume is merged, so sequential writes keep
    /// the map short.
    static func write(_ map: [Slice], _ new: Slice) -> [Slice] {
        precondition(new.length > 0, "empty slices are never written")
        var out = cut(map, from: new.fileOffset, to: new.fileEnd)
        let i = out.firstIndex { $0.fileOffset > new.fileOffset } ?? out.count
        out.insert(new, at: i)
        if i + 1 < out.count, continues(out[i], out[i + 1]) {
            out[i].length += out[i + 1].length
            out.remove(at: i + 1)
        }
        if i > 0, continues(out[i - 1], out[i]) {
            out[i - 1].length += out[i].length
            out.remove(at: i)
        }
        check(out)
        return out
    }

    /// The map without any data in [from, to).
    static func cut(_ map: [Slice], from: UInt64, to: UInt64) -> [Slice] {
        var out: [Slice] = []
        out.reserveCapacity(map.count + 1)
        for s in map {
            if s.fileEnd <= from || s.fileOffset >= to { out.append(s); continue }
            if s.fileOffset < from {
                out.append(Slice(fileOffset: s.fileOffset, length: from - s.fileOffset, volume: s.volume, volumeOffset: s.volumeOffset))
            }
            if s.fileEnd > to {
                let skip = to - s.fileOffset
                out.append(Slice(fileOffset: to, length: s.fileEnd - to, volume: s.volume, volumeOffset: s.volumeOffset + skip))
            }
        }
        return out
    }

    /// The map cut at a new file size.
    static func truncate(_ map: [Slice], size: UInt64) -> [Slice] { cut(map, from: size, to: UInt64.max) }

    static func continues(_ a: Slice, _ b: Slice) -> Bool {
        a.fileEnd == b.fileOffset && a.volume == b.volume && a.volumeOffset + a.length == b.volumeOffset
    }

    static func check(_ map: [Slice]) {
        for (a, b) in zip(map, map.dropFirst()) {
            precondition(a.fileEnd <= b.fileOffset, "a file map must be sorted and non-overlapping")
        }
    }
}
