import XCTest
@testable import Pipeline

/// A replay that draws durations from a spread: reproducible per seed, the typical replay when every ratio is 1,
/// and longer on average than the typical replay when durations vary (a wait for a late neighbour is not won back).
final class DurationSpreadTests: XCTestCase {
    private func costs(_ layout: Layout, spread: DurationSpread?) -> StepCosts {
        var c = StepCosts(forward: Array(repeating: 2e-3, count: layout.chunks), backward: Array(repeating: 4e-3, count: layout.chunks),
                          sendOverhead: 1e-4, hopBytes: Array(repeating: 1000, count: layout.hops), defaultLink: LinkCost(latency: 5e-4, bandwidth: 1e7))
        c.spread = spread
        return c
    }

    func testSpreadOfOnesIsTheTypicalReplay() throws {
        let program = try ScheduleProgram(kind: .interleaved1F1B, layout: Layout(ranks: 3, virtualStages: 2, layers: 6), microbatches: 6)
        let typical = try StepTimeSimulation(program, costs: costs(program.layout, spread: nil))
        let ones = try StepTimeSimulation(program, costs: costs(program.layout, spread: DurationSpread(compute: [1, 1], send: [1], seed: 7)))
        XCTAssertEqual(ones.stepSeconds, typical.stepSeconds)
        XCTAssertEqual(ones.spans, typical.spans)
    }

    func testDrawsAreReproducibleAndVariationLengthensTheStep() throws {
        let program = try ScheduleProgram(kind: .oneFOneB, layout: Layout(ranks: 4, virtualStages: 1, layers: 4), microbatches: 8)
        let typical = try StepTimeSimulation(program, costs: costs(program.layout, spread: nil)).stepSeconds
        // Ratios with mean 1: each rank's total compute is unchanged on average, only its timing varies.
        let spread = DurationSpread(compute: [0.5, 1.5], send: [0.5, 1.5])
        var steps: [Double] = []
        for seed in UInt64(1)...41 {
            var s = spread
            s.seed = seed
            let a = try StepTimeSimulation(program, costs: costs(program.layout, spread: s)).stepSeconds
            XCTAssertEqual(a, try StepTimeSimulation(program, costs: costs(program.layout, spread: s)).stepSeconds, "seed \(seed)")
            steps.append(a)
        }
        XCTAssertGreaterThan(Set(steps).count, 10, "different seeds draw differently")
        XCTAssertGreaterThan(CalibrationMath.median(steps), typical)
    }

    /// A transfer ratio stretches each message's flight and nothing else: with latency only (no per-byte time, so
    /// no link occupancy), a ratio of 3 is the replay whose links have three times the latency.
    func testTransferRatioStretchesTheFlight() throws {
        let program = try ScheduleProgram(kind: .oneFOneB, layout: Layout(ranks: 3, virtualStages: 1, layers: 3), microbatches: 4)
        var slow = costs(program.layout, spread: nil)
        slow.defaultLink = LinkCost(latency: 1.5e-3, bandwidth: .infinity)
        var drawn = costs(program.layout, spread: DurationSpread(compute: [], send: [], transfer: [3]))
        drawn.defaultLink = LinkCost(latency: 5e-4, bandwidth: .infinity)
        let a = try StepTimeSimulation(program, costs: drawn), b = try StepTimeSimulation(program, costs: slow)
        XCTAssertEqual(a.stepSeconds, b.stepSeconds, accuracy: 1e-12)
        XCTAssertGreaterThan(a.stepSeconds, try StepTimeSimulation(program, costs: costs(program.layout, spread: nil)).stepSeconds)
        XCTAssertFalse(DurationSpread(compute: [], send: [], transfer: [3]).isEmpty)
        XCTAssertTrue(DurationSpread(compute: [], send: []).isEmpty)
    }
}
