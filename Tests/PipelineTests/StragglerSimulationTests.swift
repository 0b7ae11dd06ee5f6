import XCTest
@testable import Pipeline

/// `StepCosts.computeScaleByRank`: a straggler in the step-time replay.
final class StragglerSimulationTests: XCTestCase {
    /// GPipe with identical microbatches is a flow shop: each phase takes Σ stage times + (m − 1) × the slowest
    /// stage, so one rank F times slower costs (f + b)(P − 1 + F + (m − 1)F), and only its own compute grows.
    func testGPipeWithAStragglerIsAFlowShop() throws {
        for (p, m, slow, factor) in [(4, 8, 1, 4.0), (3, 5, 2, 1.5), (5, 3, 0, 2.0)] {
            let layout = Layout(ranks: p, virtualStages: 1, layers: p)
            let s = try Schedule(kind: .gpipe, layout: layout, microbatches: m)
            let f = 1.0, b = 2.0
            var costs = StepCosts(forward: Array(repeating: f, count: p), backward: Array(repeating: b, count: p), hopBytes: Array(repeating: 0, count: layout.hops))
            let even = try StepTimeSimulation(s, costs: costs)
            costs.computeScaleByRank = (0..<p).map { $0 == slow ? factor : 1 }
            let sim = try StepTimeSimulation(s, costs: costs)
            XCTAssertEqual(even.stepSeconds, (f + b) * Double(p - 1 + m), accuracy: 1e-9)
            XCTAssertEqual(sim.stepSeconds, (f + b) * (Double(p - 1) + factor + Double(m - 1) * factor), accuracy: 1e-9, "P \(p) m \(m) rank \(slow) × \(factor)")
            for r in 0..<p {
                XCTAssertEqual(sim.busySeconds[r], even.busySeconds[r] * (r == slow ? factor : 1), accuracy: 1e-9)
                if r != slow { XCTAssertGreaterThan(sim.waitSeconds[r], even.waitSeconds[r], "rank \(r) waits for the straggler") }
            }
        }
    }

    func testAScaleListOfTheWrongLengthIsRefused() throws {
        let layout = Layout(ranks: 2, virtualStages: 1, layers: 2)
        var costs = StepCosts.unit(layout)
        costs.computeScaleByRank = [2]
        XCTAssertThrowsError(try StepTimeSimulation(try Schedule(kind: .gpipe, layout: layout, microbatches: 2), costs: costs)) {
            XCTAssertTrue("\($0)".contains("1 compute scale factors for 2 ranks"), "\($0)")
        }
    }
}
