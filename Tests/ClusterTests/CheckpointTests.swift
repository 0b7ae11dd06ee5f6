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

    /// A copy of checkpoint `source` in a fresh directory under `d`, for tampering.
    func copy(_ source: String, in d: URL, as name: String) throws -> String {
        let target = d.appendingPathComponent(name).path
        try FileManager.default.copyItem(atPath: source, toPath: target)
        return target
    }

    func editManifest(_ dir: String, _ edit: (inout [String: Any]) -> Void) throws {
        let url = URL(fileURLWithPath: dir).appendingPathComponent("manifest.json")
        var m = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
        edit(&m)
        try JSONSerialization.data(withJSONObject: m).write(to: url)
    }

    func assertResumeRefused(_ ck: String, mentioning words: [String], file: StaticString = #filePath, line: UInt = #line) throws {
        let r = try CLIProcess.run(["run", "--steps", "1", "--resume", ck] + model, timeout: 120, file: file, line: line)
        XCTAssertNotEqual(r.status, 0, "resumed from \(ck)", file: file, line: line)
        for w in words { XCTAssertTrue(r.stderr.contains(w), "stderr lacks '\(w)':\n\(r.stderr)", file: file, line: line) }
        CLIProcess.assertNoOrphans(file: file, line: line)
    }

    /// The manifest holds each rank file's size and SHA-256; resume and merge refuse, naming the file, a checkpoint
    /// whose files disagree with it, whose ranks disagree on steps, or which has no manifest.
    func testResumeRefusesACheckpointThatLies() throws {
        let d = try tempDir()
        defer { try? FileManager.default.removeItem(at: d) }
        let ck = d.appendingPathComponent("ck").path
        _ = try runLosses(["run", "--steps", "2", "--save", ck] + model, json: d.appendingPathComponent("r.json"))
        let manifest = try Checkpoint.readManifest(ck)
        XCTAssertEqual(manifest.format, "attnres-checkpoint-2")
        for r in manifest.ranks {
            let bytes = try InputFile.bytes("\(ck)/\(r.file)")
            XCTAssertEqual(r.bytes, bytes.count)
            XCTAssertEqual(r.sha256, SHA256.hex(bytes))
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: ck).sorted(),
                       ["manifest.json", "rank-0.safetensors", "rank-1.safetensors"], "no temp file left")

        let corrupt = try copy(ck, in: d, as: "corrupt")
        let rank1 = "\(corrupt)/rank-1.safetensors"
        var bytes = try InputFile.bytes(rank1)
        bytes[bytes.count / 2] ^= 0x01
        try Data(bytes).write(to: URL(fileURLWithPath: rank1))
        try assertResumeRefused(corrupt, mentioning: ["checkpoint \(rank1): SHA-256", "differs from the manifest"])
        let merged = try CLIProcess.run(["merge", corrupt, d.appendingPathComponent("m.safetensors").path])
        XCTAssertNotEqual(merged.status, 0)
        XCTAssertTrue(merged.stderr.contains("\(rank1): SHA-256"), merged.stderr)

        let deleted = try copy(ck, in: d, as: "deleted")
        try FileManager.default.removeItem(atPath: "\(deleted)/rank-0.safetensors")
        try assertResumeRefused(deleted, mentioning: ["checkpoint \(deleted)/rank-0.safetensors: rank 0's file: no such file"])

        // Rank 1 claims another step count; its size and hash are made to agree, so only the steps can tell.
        let steps = try copy(ck, in: d, as: "steps")
        var file = try SafeTensors(bytes: try InputFile.bytes("\(steps)/rank-1.safetensors"))
        file.metadata["steps_completed"] = "7"
        let edited = try file.serialized()
        try Data(edited).write(to: URL(fileURLWithPath: "\(steps)/rank-1.safetensors"))
        try editManifest(steps) { m in
            var ranks = m["ranks"] as! [[String: Any]]
            ranks[1]["bytes"] = edited.count
            ranks[1]["sha256"] = SHA256.hex(edited)
            m["ranks"] = ranks
        }
        try assertResumeRefused(steps, mentioning: ["checkpoint \(steps)/rank-1.safetensors: rank 1 has steps_completed 7, the checkpoint 2",
                                                    "the ranks disagree on steps"])

        let truncated = try copy(ck, in: d, as: "truncated")
        let rank0 = "\(truncated)/rank-0.safetensors"
        try Data(try InputFile.bytes(rank0).dropLast(10)).write(to: URL(fileURLWithPath: rank0))
        try assertResumeRefused(truncated, mentioning: ["checkpoint \(rank0): is", "bytes, the manifest says"])

        let noManifest = try copy(ck, in: d, as: "no-manifest")
        try FileManager.default.removeItem(atPath: "\(noManifest)/manifest.json")
        try assertResumeRefused(noManifest, mentioning: ["checkpoint \(noManifest)/manifest.json: missing"])

        let oldFormat = try copy(ck, in: d, as: "old-format")
        try editManifest(oldFormat) { $0["format"] = "attnres-checkpoint-1" }
        try assertResumeRefused(oldFormat, mentioning: ["manifest.json: format attnres-checkpoint-1, expected attnres-checkpoint-2"])

        try assertResumeRefused(d.appendingPathComponent("nowhere").path, mentioning: ["nowhere: no such directory"])
    }

    /// One rank cannot write its file (a directory is in the way): the run fails naming the rank, and the
    /// checkpoint left behind, old manifest and a mix of new and old rank files, is refused instead of resumed.
    func testAPartlyWrittenCheckpointIsRefused() throws {
        let d = try tempDir()
        defer { try? FileManager.default.removeItem(at: d) }
        let ck = d.appendingPathComponent("ck").path
        _ = try runLosses(["run", "--steps", "1", "--save", ck] + model, json: d.appendingPathComponent("a.json"))
        try FileManager.default.removeItem(atPath: "\(ck)/rank-1.safetensors")
        try FileManager.default.createDirectory(atPath: "\(ck)/rank-1.safetensors/blocker", withIntermediateDirectories: true)
        let second = try CLIProcess.run(["run", "--steps", "1", "--save", ck] + model)
        XCTAssertNotEqual(second.status, 0)
        XCTAssertTrue(second.stderr.contains("worker rank 1 failed"), second.stderr)
        XCTAssertTrue(second.stderr.contains("rank-1.safetensors"), second.stderr)
        try assertResumeRefused(ck, mentioning: ["checkpoint \(ck)/rank-"])
    }
}
