import Foundation
import XCTest
@testable import Cluster

/// `--fault slow:R×F`: one slow rank makes its neighbours wait. Every check is an ordering with wide margins
/// between two runs on the same machine (a straggler run against one without the fault), never a timing goal, so
/// a loaded machine slows both alike.
final class StragglerTests: XCTestCase {
    /// Compute-heavy enough that a step's compute, not the transport, sets the pace: 4 ranks, 1F1B.
    let model = ["--mode", "compute", "--layers", "8", "--blocks", "4", "--hidden", "64", "--heads", "4", "--seq", "32",
                 "--vocab", "128", "--ranks", "4", "--virtual", "1", "--schedule", "1f1b", "--microbatches", "8",
                 "--microbatch-size", "2", "--seed", "3", "--steps", "2"]
    let factor = 4.0

    var scratch: URL!

    override func setUpWithError() throws {
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent("attnres-straggler-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
    }

    override func tearDown() {
        try? FileManager.default.removeItem(at: scratch)
        CLIProcess.assertNoOrphans()
    }

    struct Measured: Decodable {
        var waitSecondsPerRank: [Double]
        var waitSecondsPerRankPerStep: [[Double]]
        var computeSecondsPerRank: [Double]
    }

    /// A traced run: its measurements, its trace events and its printed report.
    func run(_ name: String, _ extra: [String]) throws -> (measured: Measured, events: [[String: Any]], trace: String, stdout: String) {
        let json = scratch.appendingPathComponent("\(name).json"), trace = scratch.appendingPathComponent("\(name).trace.json")
        let r = try CLIProcess.run(["run"] + model + extra + ["--json", json.path, "--trace", trace.path], timeout: 600)
        XCTAssertEqual(r.status, 0, r.stderr)
        struct Doc: Decodable { struct Run: Decodable { var measured: Measured }; var runs: [Run] }
        let d = JSONDecoder()
        d.keyDecodingStrategy = .convertFromSnakeCase
        let m = try d.decode(Doc.self, from: Data(contentsOf: json)).runs[0].measured
        let doc = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: trace)) as? [String: Any])
        return (m, try XCTUnwrap(doc["traceEvents"] as? [[String: Any]]), trace.path, r.stdout)
    }

    /// Seconds of the trace's spans of category `cat` on rank `rank`.
    func spanSeconds(_ events: [[String: Any]], rank: Int, cat: Set<String>) -> (count: Int, seconds: Double) {
        let spans = events.filter { ($0["ph"] as? String) == "X" && ($0["pid"] as? Int) == rank && cat.contains($0["cat"] as? String ?? "") }
        return (spans.count, spans.reduce(0) { $0 + (($1["dur"] as? Double) ?? 0) } / 1e6)
    }

    func testASlowRankMakesItsNeighboursWaitAndTheSimulationAgrees() throws {
        let base = try run("base", [])
        let slow = try run("slow", ["--fault", "slow:1×\(Int(factor))"])

        for r in [base, slow] {
            // Per-step waiting adds up to the total, one entry per step per rank.
            XCTAssertEqual(r.measured.waitSecondsPerRankPerStep.map(\.count), [2, 2, 2, 2])
            for (total, steps) in zip(r.measured.waitSecondsPerRank, r.measured.waitSecondsPerRankPerStep) {
                XCTAssertEqual(steps.reduce(0, +), total, accuracy: 1e-9 + 1e-9 * total)
            }
            XCTAssertTrue(r.stdout.contains("time per rank (seconds; waiting = blocked at receives)"), r.stdout)
        }
        let b = base.measured, s = slow.measured
        // The straggler computes about F times as long (the busy-wait multiplies its own measured durations).
        XCTAssertGreaterThan(s.computeSecondsPerRank[1], 2 * b.computeSecondsPerRank[1], "rank 1 compute \(b.computeSecondsPerRank[1]) → \(s.computeSecondsPerRank[1])")
        // Its neighbours wait for it: their waiting grows by half at least, and the straggler waits least of all.
        let neighbours = { (m: Measured) in m.waitSecondsPerRank[0] + m.waitSecondsPerRank[2] }
        XCTAssertGreaterThan(neighbours(s), 1.5 * neighbours(b), "waiting of ranks 0 and 2: \(b.waitSecondsPerRank) → \(s.waitSecondsPerRank)")
        XCTAssertEqual(s.waitSecondsPerRank.indices.min { s.waitSecondsPerRank[$0] < s.waitSecondsPerRank[$1] }, 1,
                       "the straggler should wait least: \(s.waitSecondsPerRank)")

        // The trace shows it: wait spans on the waiting ranks, adding up to their reported waiting (µs rounding per
        // span), and the straggler's compute spans about F times as long.
        for rank in 0..<4 {
            let w = spanSeconds(slow.events, rank: rank, cat: ["wait"])
            if rank != 1 { XCTAssertGreaterThan(w.count, 0, "rank \(rank) has wait spans") }
            XCTAssertEqual(w.seconds, s.waitSecondsPerRank[rank], accuracy: 1e-5 * Double(w.count) + 0.01 * s.waitSecondsPerRank[rank],
                           "rank \(rank): wait spans vs wait_seconds")
        }
        let computeCats: Set<String> = ["forward", "backward", "optimizer"]
        XCTAssertGreaterThan(spanSeconds(slow.events, rank: 1, cat: computeCats).seconds, 2 * spanSeconds(base.events, rank: 1, cat: computeCats).seconds)

        // The step-time simulation, calibrated on the run without the fault and told about the straggler, predicts
        // the same shape: the straggler waits least, its neighbours more than without it.
        func simulate(_ extra: [String], _ name: String) throws -> [String: Any] {
            let out = scratch.appendingPathComponent("\(name).sim.json")
            let r = try CLIProcess.run(["simulate", "--calibrate", base.trace, "--measured", slow.trace, "--json", out.path] + extra, timeout: 300)
            XCTAssertEqual(r.status, 0, r.stderr)
            let doc = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: out)) as? [String: Any])
            let runs = try XCTUnwrap(doc["runs"] as? [[String: Any]])
            return try XCTUnwrap(runs.first?["simulated"] as? [String: Any])
        }
        let simulatedBase = try simulate([], "base"), simulatedSlow = try simulate(["--fault", "slow:1x\(Int(factor))"], "slow")
        let wb = try XCTUnwrap(simulatedBase["wait_seconds_per_rank"] as? [Double]), ws = try XCTUnwrap(simulatedSlow["wait_seconds_per_rank"] as? [Double])
        XCTAssertEqual(ws.indices.min { ws[$0] < ws[$1] }, 1, "simulated waiting \(ws)")
        XCTAssertGreaterThan(ws[0] + ws[2], 1.5 * (wb[0] + wb[2]), "simulated waiting of ranks 0 and 2: \(wb) → \(ws)")
        let busyBase = try XCTUnwrap(simulatedBase["busy_seconds_per_rank"] as? [Double]), busySlow = try XCTUnwrap(simulatedSlow["busy_seconds_per_rank"] as? [Double])
        XCTAssertEqual(busySlow[1], factor * busyBase[1], accuracy: 1e-9 * busyBase[1])
        XCTAssertEqual(busySlow[0], busyBase[0], accuracy: 1e-12, "only the straggler's compute is scaled")
    }

    /// The factor and the rank are checked before any process starts, by `run` and `simulate` alike.
    func testSlowFaultIsValidated() throws {
        for (fault, words) in [("slow:1x1", "must be a finite number > 1"), ("slow:1×0.5", "must be a finite number > 1"),
                               ("slow:1xinf", "must be a finite number > 1"), ("slow:1x1000", "≤ 100"),
                               ("slow:7x2", "rank 7 does not exist"), ("slow:1", "expected kill:RANK@STEP"), ("slow:x2", "expected kill:RANK@STEP")] {
            let r = try CLIProcess.run(["run", "--fault", fault] + model, timeout: 120)
            XCTAssertNotEqual(r.status, 0, fault)
            XCTAssertTrue(r.stderr.contains(words), "\(fault): \(r.stderr)")
        }
        let sim = try CLIProcess.run(["simulate", "--hardware", StepTimeTests.root.appendingPathComponent("topologies/hardware/h100-sxm-ndr400.yaml").path, "--fault", "kill:1@0", "--only"], timeout: 120)
        XCTAssertNotEqual(sim.status, 0)
        XCTAssertTrue(sim.stderr.contains("a simulation models only stragglers"), sim.stderr)
        let far = try CLIProcess.run(["simulate", "--hardware", StepTimeTests.root.appendingPathComponent("topologies/hardware/h100-sxm-ndr400.yaml").path, "--fault", "slow:99x2", "--only"], timeout: 120)
        XCTAssertNotEqual(far.status, 0)
        XCTAssertTrue(far.stderr.contains("rank 99 does not exist"), far.stderr)
    }
}
