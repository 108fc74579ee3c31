// Choosing nodes for chunk replicas. Pure: no store, no clock.
//
// Rules, in order: only nodes that are up and not draining; never two replicas of a chunk
// on one node; when nodes carry zone labels, prefer zones the chunk does not use yet;
// then the node with the lowest fraction of capacity used; ties broken by node id so the
// choice is deterministic.
import CairnCore

public enum Placement {
    /// Picks up to `count` new nodes for a chunk whose replicas are on `existing`.
    public static func choose(count: Int, existing: [NodeID], nodes: [NodeRecord], exclude: Set<NodeID> = []) -> [NodeID] {
        var chosen: [NodeID] = []
        var usedZones = Set(existing.compactMap { id in nodes.first { $0.id == id }?.zone })
        var taken = Set(existing).union(exclude)
        for _ in 0..<count {
            let candidates = nodes.filter { $0.state == .up && !$0.draining && !taken.contains($0.id) }
            guard let best = candidates.min(by: { better($0, than: $1, usedZones: usedZones) }) else { break }
            chosen.append(best.id)
            taken.insert(best.id)
            if let z = best.zone { usedZones.insert(z) }
        }
        return chosen
    }

    static func better(_ a: NodeRecord, than b: NodeRecord, usedZones: Set<String>) -> Bool {
        let aNewZone = a.zone.map { !usedZones.contains($0) } ?? false
        let bNewZone = b.zone.map { !usedZones.contains($0) } ?? false
        if aNewZone != bNewZone { return aNewZone }
        let fa = fill(a), fb = fill(b)
        if abs(fa - fb) > 0.01 { return fa < fb }
        return a.id < b.id
    }

    static func fill(_ n: NodeRecord) -> Double {
        n.capacityBytes == 0 ? 1 : Double(n.usedBytes) / Double(n.capacityBytes)
    }
}
