import XCTest
@testable import Pipeline

final class ScheduleTests: XCTestCase {
    /// Every (ranks, virtual, microbatches) we can afford: the schedules must be complete, ordered and deadlock-free.
    func testAllSchedulesCompleteWithoutDeadlock() throws {
        var checked = 0
        for p in 2...8 {
            for v in 1...4 {
                for m in 1...17 {
                    for kind in ScheduleKind.allCases {
                        let layout = Layout(ranks: p, virtualStages: v, layers: p * v)
                        guard (try? Schedule.validate(kind, layout: layout, microbatches: m)) != nil else { continue }
                        let schedule = try Schedule(kind: kind, layout: layout, microbatches: m)
                        try assertComplete(schedule)
                        let sim = try ScheduleSimulation(schedule)
                        XCTAssertEqual(sim.deliveries.count, 2 * layout.hops * m, "\(kind) p\(p) v\(v) m\(m)")
                        checked += 1
                    }
                }
            }
        }
        XCTAssertGreaterThan(checked, 300)
    }

    private func assertComplete(_ s: Schedule, file: StaticString = #filePath, line: UInt = #line) throws {
        for (r, actions) in s.actions.enumerated() {
            var seen: Set<Action> = []
            for a in actions {
                XCTAssertTrue(seen.insert(a).inserted, "duplicate \(a) on rank \(r)", file: file, line: line)
                XCTAssertEqual(s.layout.rank(ofChunk: a.chunk), r, file: file, line: line)
                if case .backward(let c, let m) = a {
                    XCTAssertTrue(seen.contains(.forward(chunk: c, microbatch: m)), "\(a) before its forward", file: file, line: line)
                }
            }
            let compute = actions.filter(\.isCompute)
            XCTAssertEqual(compute.count, 2 * s.layout.virtualStages * s.microbatches, file: file, line: line)
        }
    }

    func testDeadlockIsDetectedAndReported() throws {
        let layout = Layout(ranks: 2, virtualStages: 1, layers: 2)
        // Rank 0 waits for a gradient before it ever sends its forward: a cycle.
        let bad = Schedule(kind: .oneFOneB, layout: layout, microbatches: 1, computeOrder: [
            [.backward(chunk: 0, microbatch: 0), .forward(chunk: 0, microbatch: 0)],
            [.forward(chunk: 1, microbatch: 0), .backward(chunk: 1, microbatch: 0)],
        ])
        XCTAssertThrowsError(try ScheduleSimulation(bad)) { error in
            XCTAssertTrue("\(error)".contains("deadlock"), "\(error)")
            XCTAssertTrue("\(error)".contains("rank 0 waits at 0RB0"), "\(error)")
        }
    }

    func testGPipeAndOneFOneBBubbleIsTextbook() throws {
        for p in 2...6 {
            for m in [1, 2, 4, 8, 12] {
                for kind in [ScheduleKind.gpipe, .oneFOneB] {
                    let s = try Schedule(kind: kind, layout: Layout(ranks: p, virtualStages: 1, layers: p), microbatches: m)
                    let sim = try ScheduleSimulation(s)
                    // Unit-time F and B: (p−1)/(m+p−1) of the step is idle on every rank (Narayanan 2021 §2.2).
                    XCTAssertEqual(sim.bubbleFraction, Double(p - 1) / Double(m + p - 1), accuracy: 1e-12, "\(kind) p\(p) m\(m)")
                    XCTAssertEqual(sim.makespan, 2 * (m + p - 1))
                }
            }
        }
    }

    func testInterleavedBubbleShrinksByVirtualStages() throws {
        for p in [2, 4] {
            for v in [2, 3] {
                let m = 2 * p
                let s = try Schedule(kind: .interleaved1F1B, layout: Layout(ranks: p, virtualStages: v, layers: p * v), microbatches: m)
                let sim = try ScheduleSimulation(s)
                let oneF = try ScheduleSimulation(Schedule(kind: .oneFOneB, layout: Layout(ranks: p, virtualStages: 1, layers: p), microbatches: m))
                XCTAssertLessThan(sim.bubbleFraction, oneF.bubbleFraction, "p\(p) v\(v)")
            }
        }
    }

    func testOneFOneBOrderMatchesPipeDreamFlush() throws {
        let s = try Schedule(kind: .oneFOneB, layout: Layout(ranks: 4, virtualStages: 1, layers: 4), microbatches: 6)
        XCTAssertEqual(s.actions[0].filter(\.isCompute).map(\.description),
                       ["0F0", "0F1", "0F2", "0F3", "0B0", "0F4", "0B1", "0F5", "0B2", "0B3", "0B4", "0B5"])
        XCTAssertEqual(s.actions[3].filter(\.isCompute).map(\.description),
                       ["3F0", "3B0", "3F1", "3B1", "3F2", "3B2", "3F3", "3B3", "3F4", "3B4", "3F5", "3B5"])
    }

    func testInterleavedOrderMatchesMegatron() throws {
        // P = 2, V = 2, m = 4: rank 0 warms up with (2−0−1)·2 + (2−1)·2 = 4 forwards over chunks 0,0,2,2.
        let s = try Schedule(kind: .interleaved1F1B, layout: Layout(ranks: 2, virtualStages: 2, layers: 4), microbatches: 4)
        XCTAssertEqual(s.actions[0].filter(\.isCompute).prefix(6).map(\.description), ["0F0", "0F1", "2F0", "2F1", "0F2", "2B0"])
    }

    func testGridPrintsAndParsesBack() throws {
        for (kind, v) in [(ScheduleKind.gpipe, 1), (.oneFOneB, 1), (.interleaved1F1B, 2), (.interleaved1F1B, 3)] {
            let layout = Layout(ranks: 3, virtualStages: v, layers: 3 * v)
            let s = try Schedule(kind: kind, layout: layout, microbatches: 6)
            let grid = try s.grid()
            let rebuilt = Schedule(kind: kind, layout: layout, microbatches: 6, computeOrder: try ScheduleGrid.parse(grid))
            XCTAssertEqual(rebuilt.actions, s.actions, "\(kind)\n\(grid)")
        }
    }

    func testValidationNamesTheProblem() {
        let l = Layout(ranks: 4, virtualStages: 2, layers: 8)
        XCTAssertThrowsError(try Schedule(kind: .interleaved1F1B, layout: l, microbatches: 6)) {
            XCTAssertEqual($0 as? ScheduleError, .microbatchesRefused(.interleaved1F1B, microbatches: 6, ranks: 4, group: nil))
            // Which m would work, which Megatron group takes m = 6, and that torch's rule accepts it.
            XCTAssertEqual("\($0)", "schedule interleaved-1f1b (Megatron-LM) refuses pipeline.microbatches = 6 with microbatch group N = 4 "
                           + "(pipeline.microbatch_group, default = pipeline.ranks): it needs 4 = P ≤ N ≤ m and m % N = 0 or ≥ P; "
                           + "m = 4 or 8 would work; so would pipeline.microbatch_group 6; schedule interleaved-1f1b-torch accepts m = 6")
        }
        XCTAssertThrowsError(try Schedule(kind: .interleaved1F1BTorch, layout: l, microbatches: 9)) {
            XCTAssertEqual("\($0)", "schedule interleaved-1f1b-torch (torch.distributed.pipelining) refuses pipeline.microbatches = 9: "
                           + "it needs m divisible by rounds = max(1, m // P) = 2; m = 8 or 10 would work; "
                           + "schedule interleaved-1f1b with pipeline.microbatch_group 5 accepts m = 9")
        }
        XCTAssertThrowsError(try Schedule(kind: .oneFOneB, layout: Layout(ranks: 4, virtualStages: 1, layers: 4), microbatches: 8,
                                          microbatchGroup: 4)) {
            XCTAssertEqual($0 as? ScheduleError, .microbatchGroupNeedsMegatron(.oneFOneB))
        }
        XCTAssertThrowsError(try Schedule(kind: .oneFOneB, layout: l, microbatches: 8))
        XCTAssertThrowsError(try Schedule(kind: .interleaved1F1B, layout: Layout(ranks: 4, virtualStages: 1, layers: 4), microbatches: 8))
    }
}
