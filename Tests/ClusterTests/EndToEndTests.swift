import Foundation
import XCTest
@testable import Cluster
@testable import Pipeline

/// Real worker processes over real ZeroMQ sockets, through the CLI.
final class EndToEndTests: XCTestCase {
    func topology(_ name: String) -> String { packageRoot.appendingPathComponent("topologies/\(name)").path }

    /// Runs `attnres ARGS --json F` and returns the decoded report.
    func runJSON(_ args: [String], file: StaticString = #filePath, line: UInt = #line) throws -> ReportJSON {
        let json = FileManager.default.temporaryDirectory.appendingPathComponent("attnres-\(UUID().uuidString).json")
        defer { try? FileManager.default.removeItem(at: json) }
        let r = try CLIProcess.run(args + ["--json", json.path], file: file, line: line)
        XCTAssertEqual(r.status, 0, "attnres \(args.joined(separator: " "))\n\(r.stdout)\n\(r.stderr)", file: file, line: line)
        CLIProcess.assertNoOrphans(file: file, line: line)
        let d = JSONDecoder()
        d.keyDecodingStrategy = .convertFromSnakeCase
        return try d.decode(ReportJSON.self, from: Data(contentsOf: json))
    }

    func assertMeasuredEqualsPredicted(_ report: ReportJSON, expectRuns: Int, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(report.runs.count, expectRuns, file: file, line: line)
        let ranks = report.runs.first?.ranks ?? 0
        XCTAssertEqual(report.workers?.count, ranks, file: file, line: line)
        XCTAssertEqual(Set(report.workers?.map(\.pid) ?? []).count, ranks, "one OS process per rank", file: file, line: line)
        XCTAssertFalse(report.workers?.contains { $0.pid == getpid() } ?? true, file: file, line: line)
        for run in report.runs {
            guard let m = run.measured else { XCTFail("no measurement", file: file, line: line); continue }
            XCTAssertTrue(m.matchesPredicted, "\(run.residual)/\(run.cache): \(m.mismatches)", file: file, line: line)
            XCTAssertEqual(m.payloadBytesPerStep, run.predicted.payloadBytesPerStep, file: file, line: line)
            XCTAssertGreaterThan(m.payloadBytesPerStep, 0, file: file, line: line)
            XCTAssertEqual(m.links.map(\.payloadBytes), run.predicted.links.map(\.payloadBytes), file: file, line: line)
            XCTAssertEqual(m.tensorsPerHop, run.predicted.tensorsPerHop, file: file, line: line)
            XCTAssertEqual(m.peakCachedBytesPerRank, run.predicted.peakCachedBytesPerRank, file: file, line: line)
        }
    }

    func testDefaultRunPrintsPerLinkTableAndMatches() throws {
        let r = try CLIProcess.run(["run"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("local-4x2"))
        XCTAssertTrue(r.stdout.contains("3→0   forward    block"), r.stdout)
        XCTAssertTrue(r.stdout.contains("measured == predicted on every link"), r.stdout)
        CLIProcess.assertNoOrphans()
    }

    func testCompareOnLocal4x2() throws {
        let report = try runJSON(["compare", topology("local-4x2.yaml")])
        assertMeasuredEqualsPredicted(report, expectRuns: 7)
        let byName = Dictionary(uniqueKeysWithValues: report.runs.map { ("\($0.residual)/\($0.cache)", $0) })
        let standard = byName["standard/none"]!.measured!.payloadBytesPerStep
        let blockCached = byName["block/cross-stage"]!.measured!.payloadBytesPerStep
        let blockNaive = byName["block/none"]!.measured!.payloadBytesPerStep
        let full = byName["full/none"]!.measured!.payloadBytesPerStep
        XCTAssertLessThan(standard, blockCached)
        XCTAssertLessThan(blockCached, byName["block/received-only"]!.measured!.payloadBytesPerStep)
        XCTAssertLessThan(blockCached, blockNaive)
        XCTAssertLessThan(blockNaive, full)
    }

    func testShippedTopologiesOverIpcAndTcp() throws {
        assertMeasuredEqualsPredicted(try runJSON(["run", topology("gpipe-4.yaml")]), expectRuns: 1)
        assertMeasuredEqualsPredicted(try runJSON(["run", topology("local-8x1-1f1b.yaml")]), expectRuns: 1)
        assertMeasuredEqualsPredicted(try runJSON(["run", topology("local-4x2.yaml"), "--transport", "tcp", "--residual", "full", "--cache", "received-only"]), expectRuns: 1)
    }

    /// Random configurations end to end on real processes.
    func testRandomConfigsOnRealProcesses() throws {
        var rng = Rng(state: 4242)
        for _ in 0..<6 {
            let t = randomTopology(&rng, maxRanks: 5)
            var args = ["run", "--ranks", "\(t.ranks)", "--virtual", "\(t.virtualStages)", "--layers", "\(t.layers)",
                        "--residual", t.residual.rawValue, "--cache", t.cache.rawValue, "--schedule", t.schedule.rawValue,
                        "--microbatches", "\(t.microbatches)", "--microbatch-size", "\(t.microbatchSize)",
                        "--seq", "\(t.seq)", "--hidden", "\(t.hidden)", "--heads", "2", "--steps", "2"]
            if t.residual == .block { args += ["--blocks", "\(t.blocks)"] }
            assertMeasuredEqualsPredicted(try runJSON(args), expectRuns: 1)
        }
    }

    func testBadTopologyIsAClearErrorAndStartsNothing() throws {
        let r = try CLIProcess.run(["run", "--layers", "4"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("model.layers (set by --layers)"), r.stderr)
        let missing = try CLIProcess.run(["compare", "/nonexistent.yaml"])
        XCTAssertNotEqual(missing.status, 0)
        XCTAssertTrue(missing.stderr.contains("/nonexistent.yaml"), missing.stderr)
        CLIProcess.assertNoOrphans()
    }

    /// Multi-host flow on one machine: `attnres coordinator` waits; workers are started by hand and join.
    func testCoordinatorWithWorkersStartedByHand() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("attnres-mh-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let yaml = dir.appendingPathComponent("t.yaml")
        try Topology.embeddedDefaultYAML.replacingOccurrences(of: "transport: ipc", with: "transport: tcp\ncoordinator: ipc://\(dir.path)/ctl")
            .write(to: yaml, atomically: false, encoding: .utf8)
        func start(_ args: [String]) throws -> Process {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: CLIProcess.binary)
            p.arguments = args
            p.standardOutput = FileHandle.nullDevice
            p.standardError = FileHandle.nullDevice
            try p.run()
            return p
        }
        let workers = try (0..<4).map { try start(["worker", "--join", "ipc://\(dir.path)/ctl", "--rank", "\($0)"]) }
        let json = dir.appendingPathComponent("r.json")
        let coordinator = try start(["coordinator", yaml.path, "--json", json.path])
        guard Watchdog.waitForExit(coordinator, "attnres coordinator"),
              workers.allSatisfy({ Watchdog.waitForExit($0, "attnres worker --rank \(workers.firstIndex(of: $0)!)", seconds: 30) }) else {
            return CLIProcess.assertNoOrphans()
        }
        XCTAssertEqual(coordinator.terminationStatus, 0)
        XCTAssertEqual(workers.map(\.terminationStatus), [0, 0, 0, 0])
        let d = JSONDecoder()
        d.keyDecodingStrategy = .convertFromSnakeCase
        assertMeasuredEqualsPredicted(try d.decode(ReportJSON.self, from: Data(contentsOf: json)), expectRuns: 1)
        XCTAssertEqual(Set(try d.decode(ReportJSON.self, from: Data(contentsOf: json)).workers!.map(\.pid)), Set(workers.map(\.processIdentifier)))
    }
}
