import Foundation
import XCTest
@testable import Cluster
@testable import Pipeline

/// The topology's `hardware:` key: a profile's path relative to the topology file, or its keys inline; errors that
/// name the key and line; its wire form; and `simulate --hardware` overriding it.
final class HardwareKeyTests: XCTestCase {
    private var dir: URL!
    private let profile = """
    name: test-device
    source: "made up for the test"
    compute: {peak_tflops: 100, achieved: 0.5, memory_gbytes_per_s: 1000, kernel_overhead_us: 3}
    link: {gbit_per_s: 100, latency_us: 30}
    links:
      - {src: 0, dst: 1, gbit_per_s: 12.5, latency_us: 0}

    """
    private let pipeline = """
    name: hw
    mode: shape
    model: {layers: 8, hidden: 64, heads: 4, seq: 32, vocab: 256}
    residual: {kind: block, blocks: 4}
    pipeline: {ranks: 2, virtual: 2, schedule: interleaved-1f1b, microbatches: 4, microbatch_size: 2}

    """

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("attnres-hwkey-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("devices"), withIntermediateDirectories: true)
        try profile.write(to: dir.appendingPathComponent("devices/p.yaml"), atomically: false, encoding: .utf8)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    private func write(_ name: String, _ text: String) throws -> String {
        let url = dir.appendingPathComponent(name)
        try text.write(to: url, atomically: false, encoding: .utf8)
        return url.path
    }

    /// A path is read relative to the topology file's folder, not the working directory.
    func testPathIsRelativeToTheTopologyFile() throws {
        let path = try write("t.yaml", pipeline + "hardware: devices/p.yaml\n")
        let (t, seen) = try Topology.load(path: path)
        XCTAssertTrue(seen.contains("hardware"))
        let expected = try HardwareProfile.load(path: dir.appendingPathComponent("devices/p.yaml").path)
        XCTAssertEqual(t.hardware, expected)
        XCTAssertEqual(t.hardware?.name, "test-device")
        XCTAssertEqual(t.hardware?.overrides[StepCosts.LinkID(src: 0, dst: 1)], LinkCost(latency: 0, bandwidth: 12.5e9 / 8))
        XCTAssertNil(try Topology.load(path: try write("plain.yaml", pipeline)).0.hardware)
    }

    /// Inline keys give the same profile as the file with those keys.
    func testInlineMappingEqualsTheFile() throws {
        let inline = profile.split(separator: "\n").map { "  " + $0 }.joined(separator: "\n")
        let (t, _) = try Topology.load(path: try write("t.yaml", pipeline + "hardware:\n" + inline + "\n"))
        XCTAssertEqual(t.hardware, try HardwareProfile.parse(yaml: profile, source: "p.yaml"))
    }

    /// Errors name the topology file, the key under hardware. and its line; a missing profile names the path as
    /// written and as resolved.
    func testErrorsNameKeyAndLine() throws {
        let line = pipeline.split(separator: "\n").count + 1  // the hardware: key's line (1-based)
        let cases: [(String, String)] = [
            ("hardware: {compute: {peak_tflops: 100, achieved: 1.5, memory_gbytes_per_s: 1, kernel_overhead_us: 0}, link: {gbit_per_s: 1, latency_us: 0}}",
             "t.yaml:\(line): hardware.compute.achieved: must be a fraction of the peak in (0, 1], got 1.5"),
            ("hardware: {compute: {peak_tflops: 100, achieved: 0.5, memory_gbytes_per_s: 1, kernel_overhead_us: 0}}",
             "t.yaml:\(line): hardware.link: missing"),
            ("hardware: {compute: {peak_tflops: 100, achieved: 0.5, memory_gbytes_per_s: 1}, link: {gbit_per_s: 1, latency_us: 0}}",
             "t.yaml:\(line): hardware.compute.kernel_overhead_us: missing"),
            ("hardware: {lnk: {}}", "t.yaml:\(line): hardware.lnk: unknown key"),
            ("hardware: [1, 2]", "t.yaml:\(line): hardware: must be a mapping"),
            // Finite as written, infinite once converted (TFLOP/s → FLOP/s, Gbit/s → bytes/s, GB/s → bytes/s).
            ("hardware: {compute: {peak_tflops: 1e300, achieved: 0.5, memory_gbytes_per_s: 1, kernel_overhead_us: 0}, link: {gbit_per_s: 1, latency_us: 0}}",
             "t.yaml:\(line): hardware.compute.peak_tflops: 1e+300 is out of range"),
            ("hardware: {compute: {peak_tflops: 1, achieved: 0.5, memory_gbytes_per_s: 1e305, kernel_overhead_us: 0}, link: {gbit_per_s: 1, latency_us: 0}}",
             "t.yaml:\(line): hardware.compute.memory_gbytes_per_s: 1e+305 is out of range"),
            ("hardware: {compute: {peak_tflops: 1, achieved: 0.5, memory_gbytes_per_s: 1, kernel_overhead_us: 0}, link: {gbit_per_s: 1e308, latency_us: 0}}",
             "t.yaml:\(line): hardware.link.gbit_per_s: 1e+308 is out of range"),
            ("hardware: {compute: {peak_tflops: 1, achieved: 0.5, memory_gbytes_per_s: 1, kernel_overhead_us: nan}, link: {gbit_per_s: 1, latency_us: 0}}",
             "t.yaml:\(line): hardware.compute.kernel_overhead_us: must be a number"),
            ("hardware: devices/none.yaml", "t.yaml:\(line): hardware: profile 'devices/none.yaml' (\(dir.path)/devices/none.yaml): no such file"),
        ]
        for (yaml, message) in cases {
            let path = try write("t.yaml", pipeline + yaml + "\n")
            XCTAssertThrowsError(try Topology.load(path: path), yaml) {
                XCTAssertTrue("\($0)".hasPrefix(path.replacingOccurrences(of: "t.yaml", with: "")) && "\($0)".contains(message), "\($0)\nwanted: \(message)")
            }
        }
        // An error inside a profile file names that file, not the topology.
        try "compute: {peak_tflops: 0, achieved: 0.5, memory_gbytes_per_s: 1, kernel_overhead_us: 0}\nlink: {gbit_per_s: 1, latency_us: 0}\n"
            .write(to: dir.appendingPathComponent("devices/bad.yaml"), atomically: false, encoding: .utf8)
        XCTAssertThrowsError(try Topology.load(path: try write("t.yaml", pipeline + "hardware: devices/bad.yaml\n"))) {
            XCTAssertTrue("\($0)".contains("devices/bad.yaml:1: compute.peak_tflops: must be > 0"), "\($0)")
        }
    }

    /// The `run` message carries the resolved profile and a worker decodes it back unchanged; without the key the
    /// message has no `hardware` field.
    func testWireFormRoundTrip() throws {
        let (t, _) = try Topology.load(path: try write("t.yaml", pipeline + "hardware: devices/p.yaml\n"))
        let data = try JSONEncoder().encode(t)
        let json = try JSONSerialization.jsonObject(with: data) as! [String: Any]
        let hw = try XCTUnwrap(json["hardware"] as? [String: Any])
        XCTAssertEqual((hw["compute"] as! [String: Any])["kernel_overhead_us"] as? Double, 3)
        XCTAssertEqual((hw["link"] as! [String: Any])["latency_us"] as? Double, 30)
        XCTAssertEqual(((hw["links"] as! [[String: Any]])[0])["gbit_per_s"] as? Double, 12.5)
        XCTAssertEqual(try JSONDecoder().decode(Topology.self, from: data), t)
        let (plain, _) = try Topology.load(path: try write("plain.yaml", pipeline))
        XCTAssertNil((try JSONSerialization.jsonObject(with: try JSONEncoder().encode(plain)) as! [String: Any])["hardware"])
        // Every shipped profile survives the round trip bit for bit.
        let shipped = StepTimeTests.root.appendingPathComponent("topologies/hardware")
        for f in try FileManager.default.contentsOfDirectory(atPath: shipped.path).filter({ $0.hasSuffix(".yaml") }) {
            let h = try HardwareProfile.load(path: shipped.appendingPathComponent(f).path)
            XCTAssertEqual(try JSONDecoder().decode(HardwareProfile.self, from: try JSONEncoder().encode(h)), h, f)
        }
    }

    /// `simulate` takes its costs from the key; `--hardware` overrides it; with neither (nor --calibrate) the
    /// error says all three ways.
    func testSimulateUsesTheKeyAndTheFlagOverridesIt() throws {
        func step(_ args: [String]) throws -> Double {
            let json = dir.appendingPathComponent("out-\(UUID().uuidString).json").path
            let r = try CLIProcess.run(["simulate"] + args + ["--only", "--json", json])
            XCTAssertEqual(r.status, 0, r.stderr)
            let doc = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: json))) as! [String: Any]
            return ((doc["runs"] as! [[String: Any]])[0]["simulated"] as! [String: Any])["step_seconds"] as! Double
        }
        let keyed = try write("t.yaml", pipeline + "hardware: devices/p.yaml\n"), plain = try write("plain.yaml", pipeline)
        let h100 = StepTimeTests.root.appendingPathComponent("topologies/hardware/h100-sxm-ndr400.yaml").path
        let fromKey = try step([keyed])
        XCTAssertEqual(fromKey, try step([plain, "--hardware", dir.appendingPathComponent("devices/p.yaml").path]))
        let overridden = try step([keyed, "--hardware", h100])
        XCTAssertEqual(overridden, try step([plain, "--hardware", h100]))
        XCTAssertNotEqual(overridden, fromKey)
        let none = try CLIProcess.run(["simulate", plain])
        XCTAssertNotEqual(none.status, 0)
        XCTAssertTrue(none.stderr.contains("--hardware") && none.stderr.contains("hardware: key") && none.stderr.contains("--calibrate"), none.stderr)
        // A per-link override the pipeline does not have is named under hardware.links.
        let far = try write("far.yaml", pipeline + "hardware:\n  compute: {peak_tflops: 1, achieved: 1, memory_gbytes_per_s: 1, kernel_overhead_us: 0}\n"
                            + "  link: {gbit_per_s: 1, latency_us: 0}\n  links: [{src: 0, dst: 5, gbit_per_s: 1, latency_us: 0}]\n")
        // Numbers each in range that price a step at inf seconds are an error naming the costs, not a table of -nan.
        let tiny = try write("tiny.yaml", pipeline + "hardware:\n  compute: {peak_tflops: 1e-300, achieved: 1e-20, memory_gbytes_per_s: 1, kernel_overhead_us: 0}\n"
                             + "  link: {gbit_per_s: 1, latency_us: 0}\n")
        let infinite = try CLIProcess.run(["simulate", tiny, "--only"])
        XCTAssertNotEqual(infinite.status, 0)
        XCTAssertTrue(infinite.stderr.contains("hardware of \(tiny)") && infinite.stderr.contains("at inf s"), infinite.stderr)
        let bad = try CLIProcess.run(["simulate", far])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("far.yaml") && bad.stderr.contains("hardware.links") && bad.stderr.contains("0→5"), bad.stderr)
    }
}
