import CairnCore
import CairnManager
import XCTest

final class PlacementTests: XCTestCase {
    private func node(_ id: NodeID, zone: String? = nil, state: NodeState = .up, used: UInt64 = 0,
                      capacity: UInt64 = 1000, draining: Bool = false) -> NodeRecord {
        NodeRecord(id: id, address: "\(id):1", zone: zone, state: state, capacityBytes: capacity, usedBytes: used,
                   lastHeartbeat: 0, draining: draining)
    }

    func testChoosesDistinctNodes() {
        let nodes = (1...5).map { node("n\($0)") }
        let chosen = Placement.choose(count: 3, existing: [], nodes: nodes)
        XCTAssertEqual(chosen.count, 3)
        XCTAssertEqual(Set(chosen).count, 3)
    }

    func testSkipsDownDrainingExcludedAndExistingNodes() {
        let nodes = [node("a", state: .down), node("b", state: .draining, draining: true), node("c", draining: true),
                     node("d"), node("e"), node("f")]
        XCTAssertEqual(Placement.choose(count: 5, existing: ["e"], nodes: nodes, exclude: ["f"]), ["d"])
    }

    func testReturnsFewerWhenNotEnoughNodes() {
        XCTAssertEqual(Placement.choose(count: 3, existing: [], nodes: [node("a"), node("b")]), ["a", "b"])
        XCTAssertEqual(Placement.choose(count: 2, existing: [], nodes: []), [])
        XCTAssertEqual(Placement.choose(count: 0, existing: [], nodes: [node("a")]), [])
    }

    func testPrefersZonesNotUsedYet() {
        let nodes = [node("a", zone: "z1"), node("b", zone: "z1"), node("c", zone: "z2", used: 500),
                     node("d", zone: "z3", used: 900)]
        XCTAssertEqual(Placement.choose(count: 3, existing: [], nodes: nodes), ["a", "c", "d"])
        // The zones of existing replicas count as used.
        XCTAssertEqual(Placement.choose(count: 1, existing: ["a"], nodes: nodes), ["c"])
    }

    func testPrefersEmptierNodes() {
        let nodes = [node("a", used: 800), node("b", used: 100), node("c", used: 400), node("d", used: 10, capacity: 0)]
        XCTAssertEqual(Placement.choose(count: 4, existing: [], nodes: nodes), ["b", "c", "a", "d"],
                       "a node reporting no capacity counts as full")
    }

    func testTiesBreakByNodeIDWhateverTheInputOrder() {
        // Fills within one percent are a tie.
        let nodes = [node("n3", used: 105), node("n1", used: 100), node("n2", used: 109), node("n4", used: 300)]
        XCTAssertEqual(Placement.choose(count: 3, existing: [], nodes: nodes), ["n1", "n2", "n3"])
        XCTAssertEqual(Placement.choose(count: 3, existing: [], nodes: nodes.reversed()), ["n1", "n2", "n3"])
    }
}
