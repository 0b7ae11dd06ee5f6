import XCTest
import Model
@testable import Pipeline

/// The streamed schedule (`ScheduleProgram`) against the stored one (`Schedule`): the same actions in the same
/// order on every rank, and the same replay.
final class ScheduleProgramTests: XCTestCase {
    /// Every configuration the schedule kinds accept for P ≤ 6, V ≤ 4, m ≤ 12 and every Megatron group size.
    private func configs() -> [(ScheduleKind, Layout, Int, Int?)] {
        var out: [(ScheduleKind, Layout, Int, Int?)] = []
        for p in 1...6 {
            for v in 1...4 {
                let layout = Layout(ranks: p, virtualStages: v, layers: p * v + 1)
                for m in 1...12 {
                    for kind in ScheduleKind.allCases {
                        let groups: [Int?] = kind == .interleaved1F1B ? [nil] + (p...max(p, m)).map { Optional($0) } : [nil]
                        for g in groups where (try? Schedule.validate(kind, layout: layout, microbatches: m, microbatchGroup: g)) != nil {
                            out.append((kind, layout, m, g))
                        }
                    }
                }
            }
        }
        return out
    }

    func testProgramYieldsExactlyTheSchedulesActions() throws {
        let all = configs()
        XCTAssertGreaterThan(all.count, 500)
        for (kind, layout, m, g) in all {
            let schedule = try Schedule(kind: kind, layout: layout, microbatches: m, microbatchGroup: g)
            let program = try ScheduleProgram(kind: kind, layout: layout, microbatches: m, microbatchGroup: g)
            let name = "\(kind) P\(layout.ranks) V\(layout.virtualStages) m\(m) N\(g.map(String.init) ?? "-")"
            for r in 0..<layout.ranks {
                XCTAssertEqual(Array(program.program(rank: r)), schedule.actions[r], "\(name) rank \(r)")
                XCTAssertEqual(program.computeOrder(rank: r).count, schedule.actions[r].filter(\.isCompute).count, name)
            }
            XCTAssertEqual(program.actionCount, schedule.actions.reduce(0) { $0 + $1.count }, name)
        }
    }

    /// A refused configuration is refused the same way.
    func testProgramRefusesWhatScheduleRefuses() {
        let layout = Layout(ranks: 4, virtualStages: 2, layers: 8)
        XCTAssertThrowsError(try ScheduleProgram(kind: .interleaved1F1B, layout: layout, microbatches: 6)) {
            XCTAssertEqual($0 as? ScheduleError, .microbatchesRefused(.interleaved1F1B, microbatches: 6, ranks: 4, group: nil))
        }
        XCTAssertThrowsError(try ScheduleProgram(kind: .oneFOneB, layout: layout, microbatches: 8))
    }

    /// Replaying the streamed program gives the stored schedule's replay: every span, message, wait, exposed
    /// communication and the critical path, under uneven compute and slow, queueing links.
    func testStreamedReplayEqualsStoredReplay() throws {
        var checked = 0
        for (kind, layout, m, g) in configs() where m % 3 == 0 || m == 1 {
            let costs = StepCosts(forward: (0..<layout.chunks).map { 1e-3 * Double(1 + $0 % 3) },
                                  backward: (0..<layout.chunks).map { 2e-3 * Double(1 + ($0 * 7) % 4) },
                                  optimizer: (0..<layout.ranks).map { 1e-4 * Double($0) }, sendOverhead: 5e-5,
                                  hopBytes: (0..<layout.hops).map { 1000 * (1 + $0 % 5) },
                                  defaultLink: LinkCost(latency: 1e-4, bandwidth: 2e6),
                                  overrides: [.init(src: 0, dst: 1 % layout.ranks): LinkCost(latency: 3e-4, bandwidth: 5e5)])
            let stored = try StepTimeSimulation(try Schedule(kind: kind, layout: layout, microbatches: m, microbatchGroup: g), costs: costs)
            let streamed = try StepTimeSimulation(try ScheduleProgram(kind: kind, layout: layout, microbatches: m, microbatchGroup: g), costs: costs)
            let name = "\(kind) P\(layout.ranks) V\(layout.virtualStages) m\(m)"
            XCTAssertEqual(streamed.stepSeconds, stored.stepSeconds, name)
            XCTAssertEqual(streamed.spans, stored.spans, name)
            XCTAssertEqual(streamed.messages, stored.messages, name)
            XCTAssertEqual(streamed.waits, stored.waits, name)
            XCTAssertEqual(streamed.exposedComm, stored.exposedComm, name)
            XCTAssertEqual(streamed.criticalPath, stored.criticalPath, name)
            XCTAssertEqual(streamed.events, stored.events, name)
            checked += 1
        }
        XCTAssertGreaterThan(checked, 100)
    }

    /// A schedule that cannot finish is reported with where each rank is stuck, from either form.
    func testDeadlockNamesTheStuckReceive() throws {
        let layout = Layout(ranks: 2, virtualStages: 1, layers: 2)
        // Rank 0 runs its backward first: it waits for a gradient rank 1 cannot send before rank 0's forward.
        let bad = Schedule(kind: .oneFOneB, layout: layout, microbatches: 1, computeOrder: [
            [.backward(chunk: 0, microbatch: 0), .forward(chunk: 0, microbatch: 0)],
            [.forward(chunk: 1, microbatch: 0), .backward(chunk: 1, microbatch: 0)],
        ])
        let costs = StepCosts(forward: [1, 1], backward: [1, 1], hopBytes: [0])
        XCTAssertThrowsError(try StepTimeSimulation(bad, costs: costs)) { error in
            XCTAssertEqual("\(error)", "schedule deadlocks: rank 0 waits at 0RB0, rank 1 waits at 1RF0")
        }
    }
}
