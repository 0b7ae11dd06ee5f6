import Foundation
import XCTest
@testable import Cluster
@testable import Model
@testable import Numerics

final class CheckpointTests: XCTestCase {
    let model = ["--mode", "compute", "--layers", "7", "--blocks", "3", "--hidden", "16", "--heads", "2", "--seq", "8",
                 "--vocab", "64", "--ranks", "2", "--virtual", "2", "--microbatches", "4", "--microbatch-size", "2", "--seed", "3"]

    func tempDir() throws -> URL {
        let d = FileManager.default.temporaryDirectory.appendingPathComponent("attnres-ckpt-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: d, withIntermediateDirectories: true)
        return d
    }

    func runLosses(_ args: [String], json: URL, file: StaticString = #filePath, line: UInt = #line) throws -> [Float] {
        let r = try CLIProcess.run(args + ["--json", json.path], file: file, line: line)
        XCTAssertEqual(r.status, 0, "\(args)\n\(r.stderr)", file: file, line: line)
        struct L: Decodable { var losses: [Float] }
        return try JSONDecoder().decode(L.self, from: Data(contentsOf: json)).losses
    }

    /// 5 steps + resume + 5 steps gives exactly the losses of 10 uninterrupted steps.
    func testResumeContinuesExactly() throws {
        let d = try tempDir()
        defer { try? FileManager.default.removeItem(at: d) }
        for cache in ["none", "cross-stage"] {
            let full = try runLosses(["run", "--cache", cache, "--steps", "10"] + model, json: d.appendingPathComponent("a.json"))
            let ck = d.appendingPathComponent("ck-\(cache)").path
            let first = try runLosses(["run", "--cache", cache, "--steps", "5", "--save", ck] + model, json: d.appendingPathComponent("b.json"))
            let second = try runLosses(["run", "--cache", cache, "--steps", "5", "--resume", ck] + model, json: d.appendingPathComponent("c.json"))
            XCTAssertEqual((first + second).map(\.bitPattern), full.map(\.bitPattern), cache)
            let manifest = try Checkpoint.readManifest(ck)
            XCTAssertEqual(manifest.stepsCompleted, 5)
            XCTAssertEqual(manifest.ranks.map(\.chunks), [[0, 2], [1, 3]])
        }
        CLIProcess.assertNoOrphans()
    }

    /// The merged checkpoint equals the single-process model after the same steps.
    func testMergeEqualsSingleProcessParameters() throws {
        let d = try tempDir()
        defer { try? FileManager.default.removeItem(at: d) }
        let export = d.appendingPathComponent("export")
        let train = try CLIProcess.run(["train", "--layers", "7", "--blocks", "3", "--hidden", "16", "--heads", "2", "--seq", "8", "--vocab", "64",
                                        "--microbatches", "4", "--microbatch-size", "2", "--seed", "3", "--steps", "4", "--export", export.path])
        XCTAssertEqual(train.status, 0, train.stderr)
        let reference = try SafeTensors(contentsOf: export.appendingPathComponent("params.safetensors"))
        for cache in ["none", "cross-stage"] {
            let ck = d.appendingPathComponent("ck-\(cache)").path
            _ = try runLosses(["run", "--cache", cache, "--steps", "4", "--save", ck] + model, json: d.appendingPathComponent("r.json"))
            let out = d.appendingPathComponent("merged-\(cache).safetensors")
            let merge = try CLIProcess.run(["merge", ck, out.path])
            XCTAssertEqual(merge.status, 0, merge.stderr)
            let merged = try SafeTensors(contentsOf: out)
            XCTAssertEqual(merged.names, reference.names, "canonical names and order")
            var worst: Float = 0
            for n in reference.names {
                let a = try merged.entries[n]!.floats(), b = try reference.entries[n]!.floats()
                XCTAssertEqual(a.shape, b.shape, n)
                if cache == "none" { XCTAssertEqual(a.data.map(\.bitPattern), b.data.map(\.bitPattern), "\(n) should be bitwise equal without a cache") }
                let scale = max(b.data.map(abs).max() ?? 1, 1e-3)
                worst = max(worst, a.maxAbsDifference(b) / scale)
            }
            XCTAssertLessThanOrEqual(worst, 1e-5, "\(cache): worst relative parameter difference \(worst)")
        }
    }

    func testResumeRejectsADifferentModel() throws {
        let d = try tempDir()
        defer { try? FileManager.default.removeItem(at: d) }
        let ck = d.appendingPathComponent("ck").path
        _ = try runLosses(["run", "--steps", "1", "--save", ck] + model, json: d.appendingPathComponent("r.json"))
        let r = try CLIProcess.run(["run", "--steps", "1", "--resume", ck] + model + ["--hidden", "32"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("cannot resume"), r.stderr)
        let shape = try CLIProcess.run(["run", "--steps", "1", "--save", ck, "--mode", "shape"])
        XCTAssertNotEqual(shape.status, 0)
        XCTAssertTrue(shape.stderr.contains("use mode compute"), shape.stderr)
        CLIProcess.assertNoOrphans()
    }
}
