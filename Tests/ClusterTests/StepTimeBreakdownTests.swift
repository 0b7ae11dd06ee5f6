import Foundation
import XCTest
@testable import Cluster
@testable import Pipeline

/// The per-rank breakdown `simulate --measured` prints: on a trace written from a replay, the measured columns are
/// the replay's own, rank by rank.
final class StepTimeBreakdownTests: XCTestCase {
    func testMeasuredColumnsOfAReplayedTraceAreTheReplays() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("attnres-breakdown-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        var t = Topology()
        t.mode = .compute
        t.ranks = 2; t.virtualStages = 2; t.layers = 8; t.blocks = 4; t.microbatches = 4
        try t.validate(overridden: [:], holdsTensors: false)
        var costs = StepTimeCosts(compute: ComputeCosts(ComputeCost(secondsPerFlop: 2e-10, secondsPerByte: 2e-9, secondsPerKernel: 3e-6)),
                                  link: LinkCost(latency: 2e-4, bandwidth: 1e8), sendOverhead: 3e-5, origin: "test")
        costs.sendSecondsPerByte = 2e-9; costs.receiveOverhead = 2e-5; costs.receiveSecondsPerByte = 1e-9; costs.actionOverhead = 1e-5
        let sim = try SimulatedVariant(t, costs: costs, keepSpans: true).simulation
        let file = dir.appendingPathComponent("sim.json").path
        try ChromeTrace.write(StepTimeReport.traceRecords(sim), ranks: t.ranks, to: file, topology: t)
        let b = try XCTUnwrap(StepTimeBreakdown(try MeasuredTrace(file: file), sim))
        let slack = 2e-6 * Double(t.microbatches * 6 * t.virtualStages)  // whole µs per span in the trace
        for r in 0..<t.ranks {
            let m = b.measured[r], s = b.simulated[r]
            XCTAssertGreaterThan(s.sends, 0); XCTAssertGreaterThan(s.other, 0)
            for (name, x, y) in [("span", m.span, s.span), ("compute", m.compute, s.compute), ("send", m.sends, s.sends),
                                 ("wait", m.waits, s.waits), ("other", m.other, s.other)] {
                XCTAssertEqual(x, y, accuracy: slack, "rank \(r) \(name)")
            }
        }
        XCTAssertTrue(b.table.contains("simulated: span"))
        XCTAssertNil(StepTimeBreakdown(try MeasuredTrace(file: file), try SimulatedVariant(t, costs: costs, keepSpans: false).simulation))
    }
}
