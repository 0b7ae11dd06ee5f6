import Foundation
import XCTest
@testable import Cluster

/// Inputs validated before a run: timeouts, faults, output paths, absurd topology values, and `train`'s option set.
/// The command-line cases fail before any process starts, so each must be quick and leave nothing behind.
final class ValidationTests: XCTestCase {
    func tempDir() throws -> URL {
        let d = FileManager.default.temporaryDirectory.appendingPathComponent("attnres-validation-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: d, withIntermediateDirectories: true)
        return d
    }

    func testTimeoutsMustBeFinitePositiveAndAtMostADay() throws {
        for bad in [Double.nan, .infinity, -.infinity, 0, -1, 86_401] {
            XCTAssertThrowsError(try RunOptionChecks.timeout(bad, flag: "--join-timeout"), "\(bad)") {
                XCTAssertTrue("\($0)".hasPrefix("--join-timeout \(bad): "), "\($0)")
            }
        }
        for good in [0.001, 5, 86_400] { XCTAssertNoThrow(try RunOptionChecks.timeout(good, flag: "--join-timeout")) }
    }

    /// The library refuses them too: a NaN deadline would make every comparison false, a wait without end.
    func testCoordinatorRefusesBadTimeouts() {
        XCTAssertThrowsError(try Coordinator(topology: Topology(), joinTimeout: .nan, workerExecutable: CLIProcess.binary)) {
            XCTAssertEqual($0 as? RunOptionError, RunOptionError(flag: "joinTimeout", value: "nan", problem: "a timeout must be a number of seconds, not NaN"))
        }
        XCTAssertThrowsError(try Coordinator(topology: Topology(), silenceTimeout: -3, workerExecutable: CLIProcess.binary)) {
            XCTAssertEqual(($0 as? RunOptionError)?.flag, "silenceTimeout")
        }
    }

    func testFaultsMustNameARankAndAStepOfTheRun() throws {
        var t = Topology()
        t.steps = 3
        for bad in ["kill:99@0", "kill:4@0", "freeze:0@3", "stall:1@7", "never-join:4", "kill:-1@0", "kill:0@-1"] {
            let f = try XCTUnwrap(Fault(argument: bad), bad)
            XCTAssertThrowsError(try f.validate(against: t), bad) { XCTAssertTrue("\($0)".hasPrefix("--fault \(bad): "), "\($0)") }
        }
        for good in ["kill:3@2", "freeze:0@0", "stall:2@1", "never-join:3"] {
            XCTAssertNoThrow(try XCTUnwrap(Fault(argument: good)).validate(against: t), good)
        }
    }

    func testOutputPathsAreCheckedBeforehand() throws {
        let d = try tempDir()
        defer { try? FileManager.default.removeItem(at: d) }
        let file = d.appendingPathComponent("existing.json").path
        try Data("{}".utf8).write(to: URL(fileURLWithPath: file))
        func problem(_ path: String, _ kind: RunOptionChecks.OutputKind) -> String? {
            do { try RunOptionChecks.output(path, flag: "--x", kind: kind); return nil } catch { return "\(error)" }
        }
        XCTAssertNil(problem(file, .file), "an existing writable file is overwritten")
        XCTAssertNil(problem(d.appendingPathComponent("new.json").path, .file))
        XCTAssertNil(problem(d.path, .directory))
        XCTAssertNil(problem(d.appendingPathComponent("new-dir").path, .directory))
        XCTAssertEqual(problem(d.path, .file), "--x \(d.path): is a directory; give a file path")
        XCTAssertEqual(problem(file, .directory), "--x \(file): is a file, not a directory")
        XCTAssertEqual(problem(d.appendingPathComponent("missing/x.json").path, .file),
                       "--x \(d.path)/missing/x.json: its directory \(d.path)/missing does not exist")
        XCTAssertEqual(problem(file + "/x.json", .file), "--x \(file)/x.json: \(file) is not a directory")
    }

    /// Fails before any worker starts: non-zero, the message on stderr, quick, nothing left behind.
    func assertRefused(_ args: [String], mentioning words: [String], file: StaticString = #filePath, line: UInt = #line) throws {
        let r = try CLIProcess.run(args, timeout: 60, file: file, line: line)
        XCTAssertNotEqual(r.status, 0, "attnres \(args) should fail", file: file, line: line)
        for w in words { XCTAssertTrue(r.stderr.contains(w), "stderr of \(args) lacks '\(w)':\n\(r.stderr)", file: file, line: line) }
        XCTAssertFalse(r.stderr.contains("Fatal error"), r.stderr, file: file, line: line)
        XCTAssertLessThan(r.seconds, 30, file: file, line: line)
        CLIProcess.assertNoOrphans(file: file, line: line)
    }

    func testBadOptionsFailBeforeAnyProcessStarts() throws {
        try assertRefused(["run", "--join-timeout", "nan"], mentioning: ["--join-timeout nan", "not NaN"])
        try assertRefused(["run", "--silence-timeout", "nan"], mentioning: ["--silence-timeout nan", "not NaN"])
        try assertRefused(["run", "--silence-timeout", "-1"], mentioning: ["--silence-timeout -1.0", "more than 0 s"])
        try assertRefused(["run", "--join-timeout", "1e9"], mentioning: ["--join-timeout", "more than one day"])
        try assertRefused(["run", "--fault", "kill:99@0"], mentioning: ["--fault kill:99@0: rank 99 does not exist; this run has ranks 0…3"])
        try assertRefused(["run", "--steps", "2", "--fault", "freeze:1@2"], mentioning: ["--fault freeze:1@2: step 2 does not exist"])
        try assertRefused(["run", "--virtual", "4611686018427387904"], mentioning: ["pipeline.virtual (set by --virtual)", "overflows"])
        try assertRefused(["run", "--hidden", "99999999"], mentioning: ["model.hidden (set by --hidden)"])
        try assertRefused(["run", "--ranks", "-1"], mentioning: ["pipeline.ranks (set by --ranks)", "got -1"])
        try assertRefused(["predict", "--ranks", "-1"], mentioning: ["pipeline.ranks (set by --ranks)", "got -1"])
        try assertRefused(["run", "--join-timeout", "-5"], mentioning: ["--join-timeout -5.0"])
    }

    func testOutputPathsAreCheckedBeforeAnyProcessStarts() throws {
        let d = try tempDir()
        defer { try? FileManager.default.removeItem(at: d) }
        let file = d.appendingPathComponent("file").path
        try Data().write(to: URL(fileURLWithPath: file))
        let missing = d.appendingPathComponent("missing").path
        try assertRefused(["run", "--json", "\(missing)/r.json"], mentioning: ["--json \(missing)/r.json: its directory \(missing) does not exist"])
        try assertRefused(["run", "--trace", d.path], mentioning: ["--trace \(d.path): is a directory"])
        try assertRefused(["run", "--trace-svg", "\(missing)/t.svg"], mentioning: ["--trace-svg"])
        try assertRefused(["run", "--mode", "compute", "--save", file], mentioning: ["--save \(file): is a file, not a directory"])
        try assertRefused(["compare", "--json", d.path], mentioning: ["--json \(d.path): is a directory"])
        try assertRefused(["predict", "--json", "\(missing)/p.json"], mentioning: ["--json"])
        try assertRefused(["train", "--steps", "1", "--export", file], mentioning: ["--export \(file): is a file"])
        try assertRefused(["train", "--steps", "1", "--stats", d.path], mentioning: ["--stats \(d.path): is a directory"])
        try assertRefused(["train", "--steps", "1", "--json", "\(missing)/l.json"], mentioning: ["--json"])
        try assertRefused(["merge", d.path, "\(missing)/m.safetensors"], mentioning: ["does not exist"])
    }

    /// Input files that cannot be used say what is wrong with which file, on every command that reads one.
    func testUnreadableInputsSayWhatIsWrong() throws {
        let d = try tempDir()
        defer { try? FileManager.default.removeItem(at: d) }
        let latin1 = d.appendingPathComponent("latin1.yaml").path
        try Data([0x6e, 0x61, 0x6d, 0x65, 0x3a, 0x20, 0xe9, 0x0a]).write(to: URL(fileURLWithPath: latin1))
        try assertRefused(["run", d.path], mentioning: ["\(d.path): (file): is a directory, not a file"])
        try assertRefused(["predict", latin1], mentioning: ["\(latin1): (file): is not UTF-8 text (invalid byte at offset 6)"])
        try assertRefused(["train", latin1], mentioning: ["\(latin1): (file): is not UTF-8 text"])
        try assertRefused(["train", "--steps", "1", "--data", d.path], mentioning: ["\(d.path): is a directory, not a file"])
        try assertRefused(["stats-plot", d.appendingPathComponent("o.svg").path, d.appendingPathComponent("none.csv").path],
                          mentioning: ["none.csv: no such file"])
        try assertRefused(["merge", d.path, d.appendingPathComponent("m.safetensors").path],
                          mentioning: ["checkpoint \(d.path)/manifest.json: missing"])
        try assertRefused(["merge", latin1, d.appendingPathComponent("m.safetensors").path], mentioning: ["is a file, not a checkpoint directory"])
    }

    /// `train` takes run's topology flags; the pipeline ones change nothing and say so.
    func testTrainTakesTheTopologyOptionSet() throws {
        let d = try tempDir()
        defer { try? FileManager.default.removeItem(at: d) }
        let model = ["train", "--layers", "4", "--blocks", "2", "--hidden", "16", "--heads", "2", "--seq", "8", "--vocab", "32",
                     "--microbatches", "2", "--microbatch-size", "1", "--steps", "2", "--seed", "5", "--lr", "0.01"]
        let plain = try CLIProcess.run(model + ["--json", d.appendingPathComponent("a.json").path])
        XCTAssertEqual(plain.status, 0, plain.stderr)
        XCTAssertFalse(plain.stderr.contains("ignoring"), plain.stderr)
        let placed = try CLIProcess.run(model + ["--ranks", "2", "--virtual", "2", "--schedule", "interleaved-1f1b", "--cache", "none",
                                                 "--mode", "shape", "--json", d.appendingPathComponent("b.json").path])
        XCTAssertEqual(placed.status, 0, placed.stderr)
        XCTAssertTrue(placed.stderr.contains("train: ignoring --ranks, --virtual, --cache, --schedule, --mode"), placed.stderr)
        struct L: Decodable { var losses: [Double] }
        let a = try JSONDecoder().decode(L.self, from: Data(contentsOf: d.appendingPathComponent("a.json")))
        let b = try JSONDecoder().decode(L.self, from: Data(contentsOf: d.appendingPathComponent("b.json")))
        XCTAssertEqual(a.losses.count, 2)
        XCTAssertEqual(a.losses, b.losses)
        XCTAssertTrue(plain.stdout.contains("layers=4 hidden=16 heads=2 seq=8 vocab=32 microbatches=2x1 steps=2 seed=5 lr=0.01"), plain.stdout)
        let help = try CLIProcess.run(["train", "--help"])
        XCTAssertTrue(help.stdout.contains("accepted and ignored"), help.stdout)
        try assertRefused(["train", "--steps", "-1"], mentioning: ["steps"])
        try assertRefused(["train", "--seed", "-3"], mentioning: ["--seed must be ≥ 0, got -3"])
    }
}
