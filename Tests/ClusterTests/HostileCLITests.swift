import Foundation
import XCTest
@testable import Cluster
@testable import Model

/// Hostile command-line values and input files: each is a clear error naming the flag, file, line or key, with a
/// non-zero exit, before anything is allocated or started: never a trap, an abort, a hang, or results lost at
/// the end of a run.
final class HostileCLITests: XCTestCase {
    func tempDir() throws -> URL {
        let d = FileManager.default.temporaryDirectory.appendingPathComponent("attnres-hostile-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: d, withIntermediateDirectories: true)
        return d
    }

    /// Fails quickly with a non-zero status, every word on stderr, no trap, nothing left running.
    func assertRefused(_ args: [String], mentioning words: [String], file: StaticString = #filePath, line: UInt = #line) throws {
        let r = try CLIProcess.run(args, timeout: 60, file: file, line: line)
        XCTAssertNotEqual(r.status, 0, "attnres \(args) should fail", file: file, line: line)
        XCTAssertLessThan(r.status, 64 + 64, "attnres \(args) ended by a signal or trap:\n\(r.stderr)", file: file, line: line)
        for w in words { XCTAssertTrue(r.stderr.contains(w), "stderr of \(args) lacks '\(w)':\n\(r.stderr)", file: file, line: line) }
        XCTAssertFalse(r.stderr.contains("Fatal error"), r.stderr, file: file, line: line)
        XCTAssertLessThan(r.seconds, 30, file: file, line: line)
        CLIProcess.assertNoOrphans(file: file, line: line)
    }

    // MARK: train and bench model: run's compute memory rule

    func testTrainAppliesTheComputeMemoryRuleBeforeAllocating() throws {
        try assertRefused(["train", "--steps", "1", "--vocab", "9223372036854775807"], mentioning: ["model.vocab (set by --vocab)", "overflows"])
        try assertRefused(["train", "--steps", "1", "--vocab", "3000000000"], mentioning: ["model.vocab (set by --vocab)", "of memory"])
        try assertRefused(["train", "--steps", "1", "--seq", "300000"], mentioning: ["model.seq (set by --seq)", "synthetic corpus has 262144"])
        try assertRefused(["train", "--steps", "1", "--layers", "100000000"], mentioning: ["model.layers (set by --layers)", "of memory"])
        try assertRefused(["run", "--mode", "compute", "--seq", "300000"], mentioning: ["model.seq (set by --seq)", "synthetic corpus"])
    }

    func testTrainDataShorterThanASequenceNamesTheFile() throws {
        let d = try tempDir()
        defer { try? FileManager.default.removeItem(at: d) }
        let data = d.appendingPathComponent("short.txt").path
        try Data("abc".utf8).write(to: URL(fileURLWithPath: data))
        try assertRefused(["train", "--steps", "1", "--data", data], mentioning: ["--data \(data): the data has 3 bytes"])
    }

    /// The rule itself: with a small machine, train's model alone is refused naming the key that dominates.
    func testValidateModelBlamesTheDominatingKey() throws {
        var t = Topology()
        t.layers = 8; t.blocks = 4
        XCTAssertNoThrow(try t.validateModel(memoryBytes: 1 << 30))
        func key(_ change: (inout Topology) -> Void) -> String? {
            var u = t
            change(&u)
            do { try u.validateModel(overridden: [:], memoryBytes: 1 << 30); return nil } catch let e as TopologyError { return e.key } catch { return "\(error)" }
        }
        XCTAssertEqual(key { $0.vocab = 50_000_000 }, "model.vocab", "the embedding and head dominate")
        XCTAssertEqual(key { $0.layers = 10_000_000 }, "model.layers")
        XCTAssertEqual(key { $0.hidden = 40_000; $0.heads = 4 }, "model.hidden")
        XCTAssertEqual(key { $0.seq = SyntheticCorpus.defaultLength - 1 }, "model.seq")
        XCTAssertNil(key { $0.seq = 64 })
        // The pipeline keys do not matter to one process: one rank is fine here, unlike for `run`.
        XCTAssertNil(key { $0.ranks = 1; $0.virtualStages = 1 })
        // Without a synthetic corpus (train --data) the sequence is the data file's business.
        var long = t
        long.seq = SyntheticCorpus.defaultLength
        XCTAssertNoThrow(try long.validateModel(memoryBytes: Int.max, corpusBytes: nil))
    }

    func testComputeRunBlamesAnOversizedVocabOnVocab() throws {
        var t = Topology()
        t.mode = .compute
        t.vocab = 3_000_000_000
        XCTAssertThrowsError(try t.validate(memoryBytes: 64 << 30)) {
            XCTAssertEqual(($0 as? TopologyError)?.key, "model.vocab", "\($0)")
        }
    }

    // MARK: bench

    func testBenchOptionsAreRangeCheckedNamingTheFlag() throws {
        try assertRefused(["bench", "wire", "--trials", "0"], mentioning: ["--trials 0: must be in 1…"])
        try assertRefused(["bench", "wire", "--sizes", "0"], mentioning: ["--sizes 0: a tensor size must be in 4 B…"])
        try assertRefused(["bench", "wire", "--sizes", "99999999999999999"], mentioning: ["--sizes 99999999999999999"])
        try assertRefused(["bench", "wire", "--sizes", "4097"], mentioning: ["--sizes 4097", "multiple of 4"])
        try assertRefused(["bench", "wire", "--bytes-per-trial", "0"], mentioning: ["--bytes-per-trial 0"])
        try assertRefused(["bench", "model", "--repetitions", "0"], mentioning: ["--repetitions 0: must be in 1…"])
        try assertRefused(["bench", "model", "--hidden", "100000000", "--no-torch", "--no-kernels", "--repetitions", "1"],
                          mentioning: ["model.hidden (set by --hidden)"])
        try assertRefused(["bench", "model", "--heads", "3", "--no-torch", "--no-kernels"], mentioning: ["model.heads (set by --heads)", "not divisible"])
        try assertRefused(["bench", "model", "--seq", "0", "--no-torch", "--no-kernels"], mentioning: ["model.seq (set by --seq)", "must be ≥ 1"])
        try assertRefused(["bench", "pipeline", "--timed-steps", "9223372036854775807"], mentioning: ["--timed-steps 9223372036854775807: must be in 1…"])
        try assertRefused(["bench", "pipeline", "--timed-steps", "0"], mentioning: ["--timed-steps 0: must be in 1…"])
    }

    func testWireBenchmarkChecksItsOptionsItself() {
        func problem(sizes: [Int] = [4096], trials: Int = 1, bytes: Int = 1 << 16, transports: [TransportKind] = [.ipc]) -> String? {
            do { try WireBenchmark.check(transports: transports, sizes: sizes, trials: trials, bytesPerTrial: bytes); return nil } catch { return "\(error)" }
        }
        XCTAssertNil(problem())
        XCTAssertEqual(problem(sizes: []), "--sizes (none): give at least one tensor size")
        XCTAssertEqual(problem(sizes: [-4]), "--sizes -4: a tensor size must be in 4 B…1073741824 B (1 GiB)")
        XCTAssertEqual(problem(sizes: [(1 << 30) + 4])?.hasPrefix("--sizes 1073741828:"), true)
        XCTAssertEqual(problem(trials: 10_001), "--trials 10001: must be in 1…10000")
        XCTAssertEqual(problem(bytes: -1)?.hasPrefix("--bytes-per-trial -1:"), true)
        XCTAssertEqual(problem(transports: []), "--transport (none): give ipc and/or tcp")
        XCTAssertThrowsError(try WireBenchmark.run(transports: [.ipc], sizes: [0], trials: 1, bytesPerTrial: 1))
    }

    /// The ipc benchmark's socket directory is a run directory (owner recorded, so a killed benchmark's is swept)
    /// and is gone once the pair is.
    func testWireBenchmarkSocketDirectoryIsAnOwnedRunDirectory() throws {
        var pair: WireBenchmark.Pair? = try WireBenchmark.Pair(.ipc)
        let dir = try XCTUnwrap(pair?.directory)
        XCTAssertTrue(URL(fileURLWithPath: dir).lastPathComponent.hasPrefix(RunDirectory.prefix), dir)
        let owner = try String(contentsOfFile: "\(dir)/\(RunDirectory.ownerFile)", encoding: .utf8)
        XCTAssertTrue(owner.hasPrefix("\(getpid()) "), owner)
        XCTAssertEqual(RunDirectory.recordedOwner(dir), RunDirectory.owner(of: getpid()), "so a sweep keeps it while we live")
        pair = nil
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir), "removed with its pair")
    }

    // MARK: output paths

    func testOutputChecksWriteForReal() throws {
        let d = try tempDir()
        defer { try? FileManager.default.removeItem(at: d) }
        func problem(_ path: String, _ kind: RunOptionChecks.OutputKind) -> String? {
            do { try RunOptionChecks.output(path, flag: "--x", kind: kind); return nil } catch { return "\(error)" }
        }
        XCTAssertEqual(problem("/proc/attnres-x.json", .file), "--x /proc/attnres-x.json: cannot be created (No such file or directory)")
        XCTAssertEqual(problem("/proc/attnres-ckpt", .directory)?.hasPrefix("--x /proc/attnres-ckpt: cannot be created ("), true)
        XCTAssertNotNil(problem("/sys/attnres-x.json", .file))
        XCTAssertNotNil(problem("/sys", .directory), "an existing directory that takes no file")
        // A successful check leaves nothing behind: no file, no directory, no probe.
        let file = d.appendingPathComponent("r.json").path, dir = d.appendingPathComponent("ckpt").path
        XCTAssertNil(problem(file, .file))
        XCTAssertNil(problem(dir, .directory))
        XCTAssertNil(problem(d.path, .directory))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: d.path), [])
    }

    func testOutputPathsThatTakeNoFileFailBeforeTheRun() throws {
        try assertRefused(["run", "--json", "/proc/attnres-x.json"], mentioning: ["--json /proc/attnres-x.json: cannot be created"])
        try assertRefused(["run", "--trace", "/proc/attnres-t.json"], mentioning: ["--trace /proc/attnres-t.json"])
        try assertRefused(["run", "--trace-svg", "/sys/attnres-t.svg"], mentioning: ["--trace-svg /sys/attnres-t.svg"])
        try assertRefused(["run", "--mode", "compute", "--save", "/proc/attnres-ckpt"], mentioning: ["--save /proc/attnres-ckpt: cannot be created"])
        try assertRefused(["train", "--steps", "1", "--json", "/proc/attnres-x.json"], mentioning: ["--json /proc/attnres-x.json"])
        try assertRefused(["train", "--steps", "1", "--stats", "/proc/attnres-s.csv"], mentioning: ["--stats /proc/attnres-s.csv"])
    }

    func testResultWritesNameTheFlagPathAndReason() throws {
        let d = try tempDir()
        defer { try? FileManager.default.removeItem(at: d) }
        let path = d.appendingPathComponent("gone/r.json").path
        XCTAssertThrowsError(try RunOptionChecks.writing(path, flag: "--json") { try Data("{}".utf8).write(to: URL(fileURLWithPath: path)) }) {
            XCTAssertEqual($0 as? OutputWriteError, OutputWriteError(flag: "--json", path: path, reason: "No such file or directory"))
            XCTAssertEqual("\($0)", "--json \(path): cannot write the result: No such file or directory")
        }
        XCTAssertThrowsError(try RunOptionChecks.writing(d.path, flag: "--stats") { try "x".write(toFile: d.path, atomically: false, encoding: .utf8) }) {
            XCTAssertEqual(($0 as? OutputWriteError)?.flag, "--stats")
            XCTAssertFalse("\($0)".contains("NSCocoaErrorDomain"), "\($0)")
        }
        XCTAssertEqual(try RunOptionChecks.writing(path, flag: "--json") { 7 }, 7)
    }

    // MARK: stats-plot

    func testStatsPlotRefusesUnplottableInput() throws {
        let d = try tempDir()
        defer { try? FileManager.default.removeItem(at: d) }
        let svg = d.appendingPathComponent("o.svg").path
        func csv(_ name: String, _ rows: String) throws -> String {
            let path = d.appendingPathComponent(name).path
            try (LayerStatsTable.header + "\n" + rows).write(toFile: path, atomically: false, encoding: .utf8)
            return path
        }
        let inf = try csv("inf.csv", "block,1,1,inf,inf,inf\n")
        try assertRefused(["stats-plot", svg, inf], mentioning: ["\(inf):2: column input_rms: 'inf' is not finite"])
        let big = try csv("big.csv", "block,1,1,1,1e39,1\n")
        try assertRefused(["stats-plot", svg, big], mentioning: ["\(big):2: column output_rms: '1e39' is not finite"])
        let max = try csv("max.csv", "block,1,1,1,1,1\nblock,9223372036854775807,9223372036854775807,1,1,1\n")
        try assertRefused(["stats-plot", svg, max], mentioning: ["\(max):3: column layer: '9223372036854775807' must be in 1…"])
        let header = try csv("header.csv", "")
        try assertRefused(["stats-plot", svg, header], mentioning: ["\(header): no data rows"])
        let nan = try csv("nan.csv", "block,1,1,1,1,nan\n")
        try assertRefused(["stats-plot", svg, nan], mentioning: ["\(nan):2: column grad_rms: 'nan' is NaN"])
        let good = try csv("good.csv", "block,5,1,1,1,1\nblock,5,2,0.5,0.5,0.5\n")
        try assertRefused(["stats-plot", svg, good, "--steps", "7"], mentioning: ["--steps 7: step 7 is in none of \(good); they have steps 5"])
        try assertRefused(["stats-plot", svg, good, "--steps", "5,x"], mentioning: ["--steps 5,x: 'x' is not a step number"])
        try assertRefused(["stats-plot", svg], mentioning: ["Missing expected argument '<inputs> ...'"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: svg), "no chart from refused input")
        let r = try CLIProcess.run(["stats-plot", svg, good, "--steps", "5"], timeout: 60)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(try String(contentsOfFile: svg, encoding: .utf8).contains("block step 5"))
    }

    // MARK: topology values

    func testCoordinatorEndpointFormIsCheckedWithFileLineAndKey() throws {
        func problem(_ endpoint: String) -> TopologyError? {
            do { _ = try Topology.parse(yaml: "name: x\ncoordinator: '\(endpoint)'\n", source: "c.yaml"); return nil } catch { return error as? TopologyError }
        }
        for good in ["tcp://127.0.0.1:5555", "tcp://*:*", "tcp://10.0.0.1:1", "tcp://[::1]:65535", "ipc:///tmp/attnres-c"] {
            XCTAssertNil(problem(good), good)
        }
        for bad in ["garbage", "tcp://127.0.0.1:99999", "tcp://127.0.0.1:0", "tcp://127.0.0.1", "tcp://:5555", "tcp://h:-1", "ipc://",
                    "ipc://" + String(repeating: "x", count: 200), "udp://127.0.0.1:5"] {
            let e = try XCTUnwrap(problem(bad), bad)
            XCTAssertEqual(e.file, "c.yaml")
            XCTAssertEqual(e.key, "coordinator")
            XCTAssertEqual(e.line, 2, bad)
        }
        XCTAssertEqual(problem("tcp://127.0.0.1:99999")?.description,
                       "c.yaml:2: coordinator: 'tcp://127.0.0.1:99999': the port must be in 1…65535 or *, got '99999'")
        let port = "name: x\ntransport: {kind: tcp, ranks: [{host: 127.0.0.1, port: 70000}]}\n"
        XCTAssertThrowsError(try Topology.parse(yaml: port, source: "p.yaml")) {
            XCTAssertEqual(($0 as? TopologyError)?.key, "transport.ranks[0].port")
            XCTAssertTrue("\($0)".contains("in 0…65535, got 70000"), "\($0)")
        }
    }

    func testYAMLErrorsDoNotEchoAWholeLongLine() throws {
        let long = String(repeating: "x", count: 250_000)
        for yaml in ["name: \(long): [\n", "mode: \(long)\n", "\(long): 1\n", "seed: \(long)\n"] {
            XCTAssertThrowsError(try Topology.parse(yaml: yaml, source: "long.yaml")) {
                let text = "\($0)"
                XCTAssertTrue(text.hasPrefix("long.yaml"), text.prefix(300).description)
                XCTAssertLessThan(text.count, 2_000, text.prefix(300).description)
                XCTAssertTrue(text.contains("(250"), "says how long the value was: \(text.prefix(300))")
            }
        }
    }
}
