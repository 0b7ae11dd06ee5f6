import Foundation
import XCTest
@testable import Cluster
@testable import Pipeline

/// Compute mode: the real model split across worker processes equals the single-process reference.
final class ComputeModeTests: XCTestCase {
    /// A small model whose blocks (S = 3, last block 4 layers) do not line up with the 4, 6 or 8 chunks of
    /// 2 ranks × 2, 3 or 4 virtual stages, so hops carry partial sums and several blocks, and with V ≥ 3 two later
    /// chunks of a rank read the same cached block (their deposits share one slot).
    let model = ["--layers", "10", "--hidden", "16", "--heads", "2", "--seq", "8", "--vocab", "64",
                 "--microbatches", "4", "--microbatch-size", "2", "--steps", "10", "--seed", "5"]

    struct Losses: Decodable { var losses: [Float] }

    func losses(_ args: [String], file: StaticString = #filePath, line: UInt = #line) throws -> [Float] {
        let json = FileManager.default.temporaryDirectory.appendingPathComponent("attnres-\(UUID().uuidString).json")
        defer { try? FileManager.default.removeItem(at: json) }
        let r = try CLIProcess.run(args + ["--json", json.path], file: file, line: line)
        XCTAssertEqual(r.status, 0, "attnres \(args.joined(separator: " "))\n\(r.stdout)\n\(r.stderr)", file: file, line: line)
        return try JSONDecoder().decode(Losses.self, from: Data(contentsOf: json)).losses
    }

    func testPipelineTrainingEqualsSingleProcess() throws {
        var bitwise: [String] = [], close: [String] = []
        for residual in ["standard", "full", "block"] {
            let blocks = residual == "block" ? ["--blocks", "3"] : []
            let reference = try losses(["train", "--residual", residual] + blocks + model)
            XCTAssertEqual(reference.count, 10)
            XCTAssertLessThan(reference.last!, reference.first!, "\(residual) should learn")
            for (schedule, ranks, virtual) in [("gpipe", 2, 1), ("1f1b", 3, 1), ("interleaved-1f1b", 2, 2),
                                                     ("interleaved-1f1b", 2, 3), ("interleaved-1f1b", 2, 4)] {
                for cache in virtual >= 3 ? ["none", "cross-stage", "received-only"] : ["none", "cross-stage"] {
                    let name = "\(residual)/\(schedule) \(ranks)×\(virtual)/\(cache)"
                    let run = try losses(["run", "--mode", "compute", "--residual", residual, "--cache", cache,
                                          "--schedule", schedule, "--ranks", "\(ranks)", "--virtual", "\(virtual)"] + blocks + model)
                    XCTAssertEqual(run.count, reference.count, name)
                    for (a, b) in zip(run, reference) {
                        XCTAssertLessThanOrEqual(abs(a - b) / abs(b), 1e-6, "\(name): \(run) vs \(reference)")
                    }
                    if run.map(\.bitPattern) == reference.map(\.bitPattern) { bitwise.append(name) } else { close.append(name) }
                    // Without a cache every chunk sees exactly the single-process tensors in the same order.
                    if cache == "none" || residual == "standard" || virtual == 1 {
                        XCTAssertEqual(run.map(\.bitPattern), reference.map(\.bitPattern), "\(name) should be bitwise equal")
                    }
                }
            }
        }
        print("bitwise equal: \(bitwise.joined(separator: ", "))\nwithin 1e-6 only: \(close.joined(separator: ", "))")
    }

    func testComputeAndShapeMoveIdenticalBytes() throws {
        let d = JSONDecoder()
        d.keyDecodingStrategy = .convertFromSnakeCase
        for residual in ["full", "block"] {
            var reports: [ReportJSON] = []
            for mode in ["shape", "compute"] {
                let json = FileManager.default.temporaryDirectory.appendingPathComponent("attnres-\(UUID().uuidString).json")
                defer { try? FileManager.default.removeItem(at: json) }
                let r = try CLIProcess.run(["run", "--mode", mode, "--residual", residual, "--blocks", "3", "--cache", "cross-stage",
                                            "--ranks", "2", "--virtual", "2"] + model + ["--steps", "2", "--json", json.path])
                XCTAssertEqual(r.status, 0, r.stderr)
                reports.append(try d.decode(ReportJSON.self, from: Data(contentsOf: json)))
            }
            let shape = reports[0].runs[0], compute = reports[1].runs[0]
            XCTAssertEqual(shape.measured!.links.map(\.payloadBytes), compute.measured!.links.map(\.payloadBytes), residual)
            XCTAssertEqual(compute.measured!.links.map(\.payloadBytes), compute.predicted.links.map(\.payloadBytes), residual)
            XCTAssertEqual(shape.measured!.peakCachedBytesPerRank, compute.measured!.peakCachedBytesPerRank, residual)
            XCTAssertTrue(compute.measured!.matchesPredicted, "\(compute.measured!.mismatches)")
            XCTAssertTrue(compute.predicted.links.contains { $0.kind == "partial" } || residual == "full", "the config should exercise partials")
        }
        CLIProcess.assertNoOrphans()
    }

    /// A diverging run stops with the loss's step and microbatch and the rank's grid, and leaves no process.
    func testNaNLossStopsTheRunNamingStepAndMicrobatch() throws {
        let r = try CLIProcess.run(["run", "--mode", "compute", "--ranks", "2", "--virtual", "2", "--layers", "8", "--lr", "1e30",
                                    "--steps", "4"])
        XCTAssertNotEqual(r.status, 0, r.stdout)
        XCTAssertTrue(r.stderr.contains("loss is NaN at step 2 (microbatch 0)"), r.stderr)
        XCTAssertTrue(r.stderr.contains("<-- ERROR HERE"), r.stderr)
        CLIProcess.assertNoOrphans()
    }
}
