import Foundation
import XCTest
import Model
@testable import Cluster
@testable import Pipeline

final class StepTimeTests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    private func tempDir() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("attnres-steptime-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }

    private func topology(_ edit: (inout Topology) -> Void) throws -> Topology {
        var t = Topology()
        t.mode = .compute
        t.ranks = 2; t.virtualStages = 2; t.layers = 8; t.blocks = 4; t.microbatches = 4
        edit(&t)
        try t.validate(overridden: [:], holdsTensors: false)
        return t
    }

    /// Calibration round trip: a step simulated with known costs, written as a trace in `run --trace`'s format, is
    /// calibrated back; the fitted costs predict the per-chunk durations, the link's α-β, and the step time of
    /// other configurations (other m, schedule, V, residual) of the same width.
    func testCalibrationRoundTrip() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        // No per-action constant: calibration does not fit one (docs/step-time.md, "Calibration").
        var truth = StepTimeCosts(compute: ComputeCosts(forward: ComputeCost(secondsPerFlop: 2e-10, secondsPerByte: 2e-9, secondsPerKernel: 3e-6),
                                                        backward: ComputeCost(secondsPerFlop: 3e-10, secondsPerByte: 1e-9, secondsPerKernel: 5e-6),
                                                        optimizer: ComputeCost(secondsPerFlop: 0, secondsPerByte: 0, secondsPerKernel: 0)),
                                  link: LinkCost(latency: 2e-4, bandwidth: 1e8), origin: "truth")
        // Message costs on the ranks: fixed and per byte, for sends and receives, and a cost before every compute.
        truth.sendOverhead = 3e-5; truth.sendSecondsPerByte = 2e-9
        truth.receiveOverhead = 2e-5; truth.receiveSecondsPerByte = 1e-9; truth.actionOverhead = 1e-5
        let cal = try topology { _ in }
        let sim = try SimulatedVariant(cal, costs: truth, keepSpans: true)
        let file = dir.appendingPathComponent("sim.json").path
        try ChromeTrace.write(StepTimeReport.traceRecords(sim.simulation), ranks: cal.ranks, to: file, topology: cal)
        let measured = try MeasuredTrace(file: file)
        XCTAssertEqual(measured.topology, { var t = cal; t.source = measured.topology.source; return t }())
        // A traced step starts at its first forward, after the replay's first action overhead.
        XCTAssertEqual(measured.typicalStepSeconds, sim.simulation.pipelineSeconds - truth.actionOverhead, accuracy: 2e-6)
        let fitted = try Calibration(measured)
        let work = ChunkWork(model: cal.modelConfig, layout: cal.layout, microbatchSize: cal.microbatchSize)
        for k in 0..<cal.layout.chunks {
            XCTAssertEqual(fitted.compute.forward.seconds(work.forward[k]), truth.compute.forward.seconds(work.forward[k]), accuracy: 2e-6)
            XCTAssertEqual(fitted.compute.backward.seconds(work.backward[k]), truth.compute.backward.seconds(work.backward[k]), accuracy: 2e-6)
        }
        XCTAssertEqual(fitted.link.latency, 2e-4, accuracy: 5e-6)
        XCTAssertEqual(1 / fitted.link.bandwidth, 1e-8, accuracy: 2e-10)
        // The trace stores whole microseconds: each fixed cost to 1 µs, each per-byte cost to 1 µs per 16 KiB tensor.
        for (rank, a) in fitted.sendOverheadByRank.enumerated() { XCTAssertEqual(a, 3e-5, accuracy: 1e-6, "rank \(rank)") }
        XCTAssertEqual(fitted.sendSecondsPerByte, 2e-9, accuracy: 6e-11)
        XCTAssertEqual(fitted.receiveOverhead, 2e-5, accuracy: 1e-6)
        XCTAssertEqual(fitted.receiveSecondsPerByte, 1e-9, accuracy: 6e-11)
        XCTAssertEqual(fitted.actionOverhead, 1e-5, accuracy: 1e-6)
        let costs = StepTimeCosts(fitted)
        for other in [try topology { $0.microbatches = 8 }, try topology { $0.virtualStages = 1; $0.schedule = .oneFOneB },
                      try topology { $0.residual = .full; $0.cache = .none }, try topology { $0.virtualStages = 4; $0.microbatches = 6 },
                      try topology { $0.residual = .standard; $0.virtualStages = 1; $0.schedule = .gpipe }] {
            let want = try SimulatedVariant(other, costs: truth, keepSpans: false).simulation.stepSeconds
            let got = try SimulatedVariant(other, costs: costs, keepSpans: false).simulation.stepSeconds
            XCTAssertEqual(got / want, 1, accuracy: 0.02, "\(Report.describe(other))")
        }
    }

    /// The round trip of a trace whose spans carry their parts (`model_us`, `depth_us`, as a traced compute run
    /// writes them): each part's cost is recovered on its own (the layers with what depth attention's traffic costs
    /// them, the head and the embedding, depth attention, the executor per action and per state tensor), and other configurations whose parts grow in
    /// other proportions (full AttnRes: many more sources; V = 4: shorter chunks, more actions) are predicted.
    func testCalibrationRoundTripWithSpanParts() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        func flops(_ s: Double) -> ComputeCost { ComputeCost(secondsPerFlop: s, secondsPerByte: 0, secondsPerKernel: 0) }
        let truth = StepTimeCosts(compute: ComputeCosts(
            forward: flops(2e-10), backward: flops(3e-10), optimizer: flops(0),
            forwardDepth: ComputeCost(secondsPerFlop: 0, secondsPerByte: 4e-10, secondsPerKernel: 2e-6),
            backwardDepth: ComputeCost(secondsPerFlop: 0, secondsPerByte: 6e-10, secondsPerKernel: 3e-6),
            forwardExecutor: ExecutorCost(secondsPerAction: 3e-5, secondsPerTensor: 4e-6),
            backwardExecutor: ExecutorCost(secondsPerAction: 5e-5, secondsPerTensor: 6e-6),
            forwardEnds: .init(head: flops(5e-10), embedding: flops(9e-10), layersPerDepthByte: 2e-10),
            backwardEnds: .init(head: flops(7e-10), embedding: flops(1e-9), layersPerDepthByte: 1e-10)),
            link: LinkCost(latency: 2e-4, bandwidth: 1e8), origin: "truth")
        let cal = try topology { _ in }
        let sim = try SimulatedVariant(cal, costs: truth, keepSpans: true)
        let file = dir.appendingPathComponent("parts.json").path
        try ChromeTrace.write(StepTimeReport.traceRecords(sim.simulation, parts: sim.parts), ranks: cal.ranks, to: file, topology: cal)
        let measured = try MeasuredTrace(file: file)
        XCTAssertTrue(measured.compute.allSatisfy { $0.modelSeconds != nil && $0.depthSeconds != nil }, "every span carries its parts")
        let fitted = try Calibration(measured).compute
        XCTAssertNotNil(fitted.forwardDepth); XCTAssertNotNil(fitted.backwardExecutor); XCTAssertNotNil(fitted.forwardEnds)
        // The trace stores 0.1 µs: every part of every chunk to 0.5 µs.
        let work = ChunkWork(model: cal.modelConfig, layout: cal.layout, microbatchSize: cal.microbatchSize)
        for (got, want) in [(fitted.forwardParts(work), truth.compute.forwardParts(work)), (fitted.backwardParts(work), truth.compute.backwardParts(work))] {
            for k in 0..<cal.layout.chunks {
                XCTAssertEqual(got[k].rest, want[k].rest, accuracy: 5e-7, "chunk \(k)")
                XCTAssertEqual(got[k].depth, want[k].depth, accuracy: 5e-7, "chunk \(k)")
                XCTAssertEqual(got[k].executor, want[k].executor, accuracy: 5e-7, "chunk \(k)")
            }
        }
        let costs = StepTimeCosts(try Calibration(measured))
        for other in [try topology { $0.residual = .full; $0.cache = .none }, try topology { $0.residual = .full; $0.virtualStages = 4; $0.microbatches = 6 },
                      try topology { $0.virtualStages = 4; $0.microbatches = 8 }, try topology { $0.residual = .standard; $0.virtualStages = 1; $0.schedule = .gpipe },
                      try topology { $0.layers = 16; $0.blocks = 8 }] {
            let want = try SimulatedVariant(other, costs: truth, keepSpans: false).simulation.stepSeconds
            let got = try SimulatedVariant(other, costs: costs, keepSpans: false).simulation.stepSeconds
            XCTAssertEqual(got / want, 1, accuracy: 0.01, "\(Report.describe(other))")
        }
        // The same trace without its parts is fitted as sums (as before parts existed): it still replays itself.
        let stripped = dir.appendingPathComponent("sums.json").path
        try ChromeTrace.write(StepTimeReport.traceRecords(sim.simulation), ranks: cal.ranks, to: stripped, topology: cal)
        let sums = try Calibration(MeasuredTrace(file: stripped))
        XCTAssertNil(sums.compute.forwardDepth); XCTAssertNil(sums.compute.forwardExecutor); XCTAssertNil(sums.compute.forwardEnds)
        XCTAssertEqual(try SimulatedVariant(cal, costs: StepTimeCosts(sums), keepSpans: false).simulation.stepSeconds / sim.simulation.stepSeconds, 1, accuracy: 0.03)
    }

    /// Several runs of one configuration pooled (`simulate --calibrate A,B`): two replays whose compute differs by a
    /// factor of 2 calibrate to the mean of their durations, every step of both is typical (renumbered, none
    /// shared), and a run of another configuration is refused by name.
    func testMergedRunsCalibrateToTheirMean() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let cal = try topology { _ in }
        func run(_ name: String, _ rate: Double, _ t: Topology) throws -> MeasuredTrace {
            let costs = StepTimeCosts(compute: ComputeCosts(ComputeCost(secondsPerFlop: rate, secondsPerByte: 0, secondsPerKernel: 0)), link: .free, origin: "t")
            let sim = try SimulatedVariant(t, costs: costs, keepSpans: true)
            let file = dir.appendingPathComponent(name).path
            try ChromeTrace.write(StepTimeReport.traceRecords(sim.simulation), ranks: t.ranks, to: file, topology: t)
            return try MeasuredTrace(file: file)
        }
        let a = try run("a.json", 1e-10, cal), b = try run("b.json", 2e-10, cal)
        let merged = try MeasuredTrace(merging: [a, b])
        XCTAssertEqual(merged.compute.count, a.compute.count + b.compute.count)
        XCTAssertEqual(merged.typicalSteps.count, a.typicalSteps.count + b.typicalSteps.count)
        XCTAssertEqual(merged.typicalStepSeconds, (a.typicalStepSeconds + b.typicalStepSeconds) / 2, accuracy: 1e-9)
        let fa = try Calibration(a).compute.forward.secondsPerFlop, fb = try Calibration(b).compute.forward.secondsPerFlop
        XCTAssertEqual(try Calibration(merged).compute.forward.secondsPerFlop, (fa + fb) / 2, accuracy: 0.02 * fa)
        let other = try run("other.json", 1e-10, try topology { $0.microbatches = 6 })
        XCTAssertThrowsError(try MeasuredTrace(merging: [a, other])) {
            XCTAssertTrue("\($0)".contains("other.json") && "\($0)".contains("a.json") && "\($0)".contains("otherData.topology"), "\($0)")
        }
    }

    /// A span's model_us or depth_us that is not a number of µs within its span (within model_us, for depth_us)
    /// is an error naming the file, the span and the field.
    func testSpanPartsOutOfRangeAreNamed() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let cal = try topology { _ in }
        let sim = try SimulatedVariant(cal, costs: StepTimeCosts(compute: ComputeCosts(ComputeCost(secondsPerFlop: 1e-10, secondsPerByte: 0, secondsPerKernel: 0)),
                                                                 link: .free, origin: "t"), keepSpans: true)
        let file = dir.appendingPathComponent("ok.json").path
        try ChromeTrace.write(StepTimeReport.traceRecords(sim.simulation, parts: sim.parts), ranks: cal.ranks, to: file, topology: cal)
        var doc = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: file))) as! [String: Any]
        let events = doc["traceEvents"] as! [[String: Any]]
        let i = events.firstIndex { ($0["cat"] as? String) == "backward" }!
        for (key, value, words) in [("model_us", 1e9, "args.model_us"), ("depth_us", -1.0, "args.depth_us"), ("depth_us", "x", "args.depth_us")] as [(String, Any, String)] {
            var e = events
            var args = e[i]["args"] as! [String: Any]
            args[key] = value
            e[i]["args"] = args
            doc["traceEvents"] = e
            let bad = dir.appendingPathComponent("bad.json")
            try JSONSerialization.data(withJSONObject: doc).write(to: bad)
            XCTAssertThrowsError(try MeasuredTrace(file: bad.path)) {
                XCTAssertTrue("\($0)".contains("bad.json") && "\($0)".contains(words) && "\($0)".contains("of rank"), "\($0)")
            }
        }
    }

    func testMeasuredTraceErrorsNameTheFile() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let bad = dir.appendingPathComponent("bad.json")
        try Data("{\"traceEvents\": []}".utf8).write(to: bad)
        XCTAssertThrowsError(try MeasuredTrace(file: bad.path)) { XCTAssertTrue("\($0)".contains("bad.json") && "\($0)".contains("otherData.topology"), "\($0)") }
        XCTAssertThrowsError(try MeasuredTrace(file: dir.appendingPathComponent("missing.json").path)) { XCTAssertTrue("\($0)".contains("no such file"), "\($0)") }
    }

    /// Every shipped profile loads; a bad one names its file, key and line.
    func testHardwareProfiles() throws {
        let dir = StepTimeTests.root.appendingPathComponent("topologies/hardware")
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".yaml") }
        XCTAssertGreaterThanOrEqual(files.count, 3)
        for f in files {
            let h = try HardwareProfile.load(path: dir.appendingPathComponent(f).path)
            XCTAssertFalse(h.source.isEmpty, f)
            XCTAssertGreaterThan(h.peakFlops * h.achieved, 1e12, f)
        }
        let good = "compute: {peak_tflops: 100, achieved: 0.5, memory_gbytes_per_s: 1000, kernel_overhead_us: 1}\nlink: {gbit_per_s: 100, latency_us: 2}\n"
        let h = try HardwareProfile.parse(yaml: good + "links:\n  - {src: 0, dst: 1, gbit_per_s: 8, latency_us: 0}\n", source: "p.yaml")
        XCTAssertEqual(h.link.bandwidth, 100e9 / 8)
        XCTAssertEqual(h.overrides[StepCosts.LinkID(src: 0, dst: 1)], LinkCost(latency: 0, bandwidth: 1e9))
        XCTAssertEqual(h.compute.forward.secondsPerFlop, 1 / 50e12, accuracy: 1e-20)
        for (yaml, key) in [(good.replacingOccurrences(of: "achieved: 0.5", with: "achieved: 1.5"), "compute.achieved"),
                            (good.replacingOccurrences(of: "gbit_per_s: 100", with: "gbit_per_s: -1"), "link.gbit_per_s"),
                            (good.replacingOccurrences(of: ", latency_us: 2", with: ""), "link.latency_us"),
                            (good + "lnks: []\n", "lnks")] {
            XCTAssertThrowsError(try HardwareProfile.parse(yaml: yaml, source: "p.yaml")) {
                XCTAssertTrue("\($0)".hasPrefix("p.yaml") && "\($0)".contains(key), "\($0)")
            }
        }
        XCTAssertNoThrow(try h.checkLinks(Layout(ranks: 4, virtualStages: 1, layers: 4), file: "p.yaml"))
        let far = try HardwareProfile.parse(yaml: good + "links:\n  - {src: 0, dst: 2, gbit_per_s: 8, latency_us: 0}\n", source: "p.yaml")
        XCTAssertThrowsError(try far.checkLinks(Layout(ranks: 4, virtualStages: 1, layers: 4), file: "p.yaml")) {
            XCTAssertTrue("\($0)".contains("0→2"), "\($0)")
        }
    }

    /// `attnres simulate` from every shipped topology with a profile, the JSON's shape, the simulated trace in
    /// `run --trace`'s format, and a clear error without a cost source.
    func testSimulateCommand() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let hw = StepTimeTests.root.appendingPathComponent("topologies/hardware/h100-sxm-ndr400.yaml").path
        let topologies = StepTimeTests.root.appendingPathComponent("topologies")
        for f in try FileManager.default.contentsOfDirectory(atPath: topologies.path).filter({ $0.hasSuffix(".yaml") }).sorted() {
            let json = dir.appendingPathComponent("\(f).json"), trace = dir.appendingPathComponent("\(f).trace.json")
            let r = try CLIProcess.run(["simulate", topologies.appendingPathComponent(f).path, "--hardware", hw, "--json", json.path, "--trace", trace.path])
            XCTAssertEqual(r.status, 0, "\(f): \(r.stderr)")
            let doc = try JSONSerialization.jsonObject(with: Data(contentsOf: json)) as! [String: Any]
            let runs = doc["runs"] as! [[String: Any]]
            XCTAssertEqual(runs.count, 7, f)
            XCTAssertEqual(runs.map { $0["residual"] as! String }, ["standard", "full", "full", "full", "block", "block", "block"])
            for run in runs {
                let s = run["simulated"] as! [String: Any]
                XCTAssertGreaterThan(s["step_seconds"] as! Double, 0, f)
                XCTAssertNotNil(s["overhead_vs_standard"] as? Double, f)
                XCTAssertNotNil(run["blocks"] as? Int)
                XCTAssertNotNil(run["cache"] as? String)
                let bubble = s["bubble"] as! [Double]
                XCTAssertFalse(bubble.isEmpty)
                for e in s["exposed_comm_seconds"] as! [[String: Any]] {
                    XCTAssertNotNil(e["src"] as? Int); XCTAssertNotNil(e["dst"] as? Int)
                    XCTAssertTrue(["forward", "backward"].contains(e["direction"] as! String)); XCTAssertNotNil(e["seconds"] as? Double)
                }
            }
            let events = (try JSONSerialization.jsonObject(with: Data(contentsOf: trace)) as! [String: Any])["traceEvents"] as! [[String: Any]]
            XCTAssertGreaterThan(events.filter { $0["cat"] as? String == "forward" }.count, 0, f)
            XCTAssertEqual(events.filter { $0["cat"] as? String == "transfer" }.count, events.filter { $0["cat"] as? String == "send" }.count, f)
        }
        let none = try CLIProcess.run(["simulate"])
        XCTAssertNotEqual(none.status, 0)
        XCTAssertTrue(none.stderr.contains("--hardware") && none.stderr.contains("--calibrate"), none.stderr)
        let badHw = try CLIProcess.run(["simulate", "--hardware", dir.appendingPathComponent("nope.yaml").path])
        XCTAssertNotEqual(badHw.status, 0)
        XCTAssertTrue(badHw.stderr.contains("nope.yaml") && badHw.stderr.contains("no such file"), badHw.stderr)
    }

    /// The validation case on real processes: calibrate on one compute run's trace, predict another configuration
    /// and set it beside that run. The bound is loose on purpose (a factor of 3: this machine's step times vary by
    /// ±100 % with its load, docs/step-time.md); it catches a model that is wrong in kind (units, a missing cost),
    /// and the error is printed. scripts/validate-step-time.sh is the full table.
    func testCalibratedPredictionOfARealRun() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let common = ["--mode", "compute", "--ranks", "2", "--layers", "8", "--blocks", "4", "--hidden", "32", "--heads", "2", "--seq", "16", "--steps", "4"]
        let cal = dir.appendingPathComponent("cal.json").path, other = dir.appendingPathComponent("other.json").path
        let a = try CLIProcess.run(["run"] + common + ["--virtual", "2", "--microbatches", "4", "--trace", cal])
        XCTAssertEqual(a.status, 0, a.stderr)
        let b = try CLIProcess.run(["run"] + common + ["--virtual", "4", "--microbatches", "6", "--trace", other])
        XCTAssertEqual(b.status, 0, b.stderr)
        // Every forward and backward of a traced compute run carries its parts: 0 < depth ≤ model ≤ span (µs, 0.1 µs
        // rounding of each); the calibration fits them apart.
        let spans = (try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: cal))) as! [String: Any])["traceEvents"] as! [[String: Any]]
        let compute = spans.filter { ["forward", "backward"].contains($0["cat"] as? String ?? "") }
        XCTAssertFalse(compute.isEmpty)
        for e in compute {
            let args = e["args"] as! [String: Any], dur = (e["dur"] as! NSNumber).doubleValue
            guard let model = (args["model_us"] as? NSNumber)?.doubleValue, let depth = (args["depth_us"] as? NSNumber)?.doubleValue else {
                XCTFail("\(e["name"] ?? "?"): no model_us or depth_us"); continue
            }
            XCTAssertTrue(depth > 0 && depth <= model + 0.1 && model <= dur + 1, "\(e["name"] ?? "?"): depth \(depth), model \(model), span \(dur) µs")
        }
        let fitted = try Calibration(MeasuredTrace(file: cal)).compute
        XCTAssertNotNil(fitted.forwardDepth); XCTAssertNotNil(fitted.backwardExecutor); XCTAssertNotNil(fitted.forwardEnds)
        let json = dir.appendingPathComponent("sim.json").path
        let s = try CLIProcess.run(["simulate", "--calibrate", cal, "--measured", other, "--json", json])
        XCTAssertEqual(s.status, 0, s.stderr)
        XCTAssertTrue(s.stdout.contains("measured step") && s.stdout.contains("predicted"), s.stdout)
        let doc = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: json))) as! [String: Any]
        let measured = doc["measured_step_seconds"] as! Double
        let predicted = ((doc["runs"] as! [[String: Any]])[0]["simulated"] as! [String: Any])["step_seconds"] as! Double
        print(String(format: "validation case: measured %.2f ms, predicted %.2f ms, error %+.1f%%", measured * 1e3, predicted * 1e3, 100 * (predicted / measured - 1)))
        XCTAssertGreaterThan(predicted / measured, 1.0 / 3)
        XCTAssertLessThan(predicted / measured, 3)
    }

    /// The shaped-link validation case: two shape-mode workers in network namespaces, each rank's egress limited by
    /// tc tbf, the measured step time beside the simulation at the shaped bandwidth (scripts/validate-shaped.sh,
    /// its first two rows). Needs root and netns: skipped with the script's reason where they are unavailable.
    func testShapedLinksValidation() throws {
        let script = StepTimeTests.root.appendingPathComponent("scripts/validate-shaped.sh").path
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/bash")
        p.arguments = [script, CLIProcess.binary]
        p.environment = ProcessInfo.processInfo.environment.merging(["ROWS": "2"]) { _, b in b }
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        try p.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        let out = String(decoding: data, as: UTF8.self)
        print(out)
        XCTAssertEqual(p.terminationStatus, 0, out)
        if let line = out.split(separator: "\n").first(where: { $0.hasPrefix("skipped:") }) { throw XCTSkip(String(line)) }
        let errors = out.split(separator: "\n").filter { $0.hasPrefix("--") }.compactMap { Double($0.split(separator: " ").last!.dropLast()) }
        XCTAssertEqual(errors.count, 2, out)
        // Link-bound steps: the bound holds on a loaded machine (the shaped link, not the CPU, sets the pace).
        for e in errors { XCTAssertLessThan(abs(e), 20, out) }
        XCTAssertTrue(out.contains("shaped configurations"), out)
    }
}
