import Foundation
import XCTest
@testable import Cluster

final class TraceTests: XCTestCase {
    /// The Chrome trace of a real interleaved compute run: every compute span, every message as a send → arrival
    /// flow, waiting apart from transfer, byte counters per link, and the measured bubble beside the theory.
    func testTraceOfAnInterleavedComputeRun() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("attnres-trace-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let trace = dir.appendingPathComponent("t.json"), json = dir.appendingPathComponent("r.json"), svg = dir.appendingPathComponent("t.svg")
        let (ranks, virtual, m, steps) = (2, 2, 4, 2)
        let r = try CLIProcess.run(["run", "--mode", "compute", "--ranks", "\(ranks)", "--virtual", "\(virtual)", "--microbatches", "\(m)",
                                    "--steps", "\(steps)", "--layers", "8", "--blocks", "4", "--hidden", "16", "--heads", "2", "--seq", "8",
                                    "--trace", trace.path, "--trace-svg", svg.path, "--json", json.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("bubble per rank: measured"), r.stdout)
        let doc = try JSONSerialization.jsonObject(with: Data(contentsOf: trace)) as! [String: Any]
        let events = doc["traceEvents"] as! [[String: Any]]
        func count(_ ph: String, _ cat: String? = nil) -> Int {
            events.filter { $0["ph"] as? String == ph && (cat == nil || $0["cat"] as? String == cat) }.count
        }
        let chunks = ranks * virtual
        XCTAssertEqual(count("X", "forward"), chunks * m * steps)
        XCTAssertEqual(count("X", "backward"), chunks * m * steps)
        XCTAssertEqual(count("X", "optimizer"), ranks * steps)
        let messages = 2 * (chunks - 1) * m * steps
        XCTAssertEqual(count("X", "send"), messages)
        XCTAssertEqual(count("X", "transfer"), messages)
        XCTAssertEqual(count("s"), messages)
        XCTAssertEqual(count("f"), messages)
        XCTAssertEqual(Set(events.filter { $0["ph"] as? String == "s" }.map { $0["id"] as! Int }),
                       Set(events.filter { $0["ph"] as? String == "f" }.map { $0["id"] as! Int }))
        XCTAssertGreaterThan(count("C"), 0)
        XCTAssertGreaterThan(count("X", "wait"), 0, "an interleaved run waits somewhere")
        for e in events where e["ph"] as? String == "X" {
            XCTAssertGreaterThanOrEqual(e["dur"] as! Double, 1)
            XCTAssertGreaterThanOrEqual(e["ts"] as! Double, 0)
        }
        // Spans on one compute track never overlap (Perfetto needs that for legacy JSON).
        for rank in 0..<ranks {
            let spans = events.filter { $0["ph"] as? String == "X" && $0["pid"] as? Int == rank && $0["tid"] as? Int == 0 }
                .map { ($0["ts"] as! Double, $0["dur"] as! Double) }.sorted { $0.0 < $1.0 }
            for (a, b) in zip(spans, spans.dropFirst()) { XCTAssertLessThanOrEqual(a.0 + a.1, b.0 + 1, "rank \(rank) overlaps") }
        }
        let d = JSONDecoder()
        d.keyDecodingStrategy = .convertFromSnakeCase
        let report = try d.decode(ReportJSON.self, from: Data(contentsOf: json))
        let bubble = try XCTUnwrap(report.runs[0].measured?.bubble)
        XCTAssertEqual(bubble.measuredPerRank?.count, ranks)
        XCTAssertTrue(bubble.measuredPerRank!.allSatisfy { (0..<1).contains($0) })
        XCTAssertEqual(bubble.theoreticalPerRank.count, ranks)
        XCTAssertTrue(try String(contentsOf: svg, encoding: .utf8).contains("<svg"))
        CLIProcess.assertNoOrphans()
    }
}
