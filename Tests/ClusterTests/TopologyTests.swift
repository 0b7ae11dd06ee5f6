import Foundation
import XCTest
@testable import Cluster
@testable import Pipeline
import Model

let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

final class TopologyTests: XCTestCase {
    func path(_ name: String) -> String { packageRoot.appendingPathComponent("topologies/\(name)").path }

    func testShippedTopologiesAreValid() throws {
        let files = try FileManager.default.contentsOfDirectory(atPath: packageRoot.appendingPathComponent("topologies").path).filter { $0.hasSuffix(".yaml") }
        XCTAssertTrue(Set(["local-4x2.yaml", "local-8x1-1f1b.yaml", "gpipe-4.yaml", "paper-scale.yaml"]).isSubset(of: Set(files)))
        for f in files {
            let t = try Overrides().resolve(path: path(f))
            XCTAssertEqual(t.name + ".yaml", f)
        }
        let paper = try Overrides().resolve(path: path("paper-scale.yaml"))
        XCTAssertEqual([paper.layers, paper.blocks, paper.seq, paper.hidden], [54, 9, 4096, 2304])
    }

    func testEmbeddedDefaultIsTheShippedLocal4x2() throws {
        var embedded = try Overrides().resolve(path: nil)
        let file = try Overrides().resolve(path: path("local-4x2.yaml"))
        embedded.source = file.source
        XCTAssertEqual(embedded, file)
    }

    func assertRejects(_ yaml: String, key: String, mentions: String, line: Int? = nil, overrides: Overrides = Overrides(),
                       file: StaticString = #filePath, lineNo: UInt = #line) {
        do {
            let (t, _) = try Topology.parse(yaml: yaml, source: "bad.yaml")
            let (applied, set) = overrides.apply(to: t)
            try applied.validate(overridden: set)
            XCTFail("accepted:\n\(yaml)", file: file, line: lineNo)
        } catch let e as TopologyError {
            XCTAssertEqual(e.file, "bad.yaml", file: file, line: lineNo)
            XCTAssertTrue(e.key.hasPrefix(key), "key \(e.key), want \(key)", file: file, line: lineNo)
            XCTAssertTrue(e.description.contains(mentions), "\(e)", file: file, line: lineNo)
            if let line { XCTAssertEqual(e.line, line, "\(e)", file: file, line: lineNo) }
        } catch {
            XCTFail("unexpected \(error)", file: file, line: lineNo)
        }
    }

    let good = """
    name: t
    model: {layers: 8, hidden: 16, heads: 2, seq: 4, vocab: 256}
    residual: {kind: block, blocks: 4}
    pipeline: {ranks: 2, virtual: 2, schedule: interleaved-1f1b, microbatches: 4, microbatch_size: 1}
    """

    func testErrorsNameFileKeyAndLine() throws {
        XCTAssertNoThrow(try Topology.parse(yaml: good, source: "good.yaml").0.validate())
        assertRejects(good + "\nbogus: 1", key: "bogus", mentions: "unknown key", line: 5)
        assertRejects(good.replacingOccurrences(of: "seq: 4", with: "seq: 4, sequence: 9"), key: "model.sequence", mentions: "unknown key", line: 2)
        assertRejects(good.replacingOccurrences(of: "layers: 8", with: "layers: 3"), key: "model.layers", mentions: "need L ≥ ranks·virtual")
        assertRejects(good.replacingOccurrences(of: "blocks: 4", with: "blocks: 9"), key: "residual.blocks", mentions: "9 blocks > 8 layers")
        assertRejects(good.replacingOccurrences(of: "microbatches: 4", with: "microbatches: 3"), key: "pipeline.microbatches", mentions: "multiple of pipeline.ranks")
        assertRejects(good.replacingOccurrences(of: "kind: block", with: "kind: blok"), key: "residual.kind", mentions: "'blok' is not one of", line: 3)
        assertRejects(good.replacingOccurrences(of: "kind: block", with: "kind: full"), key: "residual.blocks", mentions: "only residual kind 'block'")
        assertRejects(good.replacingOccurrences(of: "hidden: 16", with: "hidden: sixteen"), key: "model.hidden", mentions: "must be an integer")
        assertRejects(good.replacingOccurrences(of: "ranks: 2", with: "ranks: 1"), key: "pipeline.ranks", mentions: "at least 2 ranks")
        assertRejects(good.replacingOccurrences(of: "heads: 2", with: "heads: 3"), key: "model.heads", mentions: "not divisible")
        assertRejects(good.replacingOccurrences(of: "schedule: interleaved-1f1b", with: "schedule: 1f1b"), key: "pipeline.schedule", mentions: "one virtual stage")
        assertRejects("- a\n- b", key: "(top level)", mentions: "must be a mapping")
        assertRejects(good + "\ntransport: {kind: tcp, ranks: [{host: 127.0.0.1, port: 1}]}", key: "transport.ranks", mentions: "1 addresses for 2 ranks")
    }

    func testOverridesAreValidatedAndNamed() {
        var o = Overrides()
        o.layers = 2
        assertRejects(good, key: "model.layers (set by --layers)", mentions: "need L ≥ ranks·virtual", overrides: o)
        o = Overrides()
        o.microbatches = 0
        assertRejects(good, key: "pipeline.microbatches (set by --microbatches)", mentions: "must be ≥ 1", overrides: o)
    }

    /// Missing, a directory, not UTF-8: each says what is wrong with which file.
    func testUnreadableFilesSayWhatIsWrong() throws {
        XCTAssertThrowsError(try Topology.load(path: "/nonexistent/x.yaml")) {
            XCTAssertEqual("\($0)", "/nonexistent/x.yaml: (file): no such file")
        }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("attnres-topo-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        XCTAssertThrowsError(try Topology.load(path: dir.path)) {
            XCTAssertEqual("\($0)", "\(dir.path): (file): is a directory, not a file")
        }
        let latin1 = dir.appendingPathComponent("latin1.yaml")
        try Data("name: caf".utf8 + [0xe9] + Array("\n".utf8)).write(to: latin1)
        XCTAssertThrowsError(try Topology.load(path: latin1.path)) {
            XCTAssertEqual("\($0)", "\(latin1.path): (file): is not UTF-8 text (invalid byte at offset 9)")
        }
    }

    func validate(_ o: Overrides, memoryBytes: Int = TopologyFootprint.physicalMemory, holdsTensors: Bool = true) throws {
        let (t, set) = o.apply(to: try Topology.parse(yaml: good, source: "good.yaml").0)
        try t.validate(overridden: set, memoryBytes: memoryBytes, holdsTensors: holdsTensors)
    }

    func assertInvalid(_ o: Overrides, key: String, mentions: [String], memoryBytes: Int = TopologyFootprint.physicalMemory,
                       holdsTensors: Bool = true, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try validate(o, memoryBytes: memoryBytes, holdsTensors: holdsTensors), file: file, line: line) { e in
            guard let e = e as? TopologyError else { return XCTFail("\(e)", file: file, line: line) }
            XCTAssertEqual(e.key, key, "\(e)", file: file, line: line)
            for m in mentions { XCTAssertTrue(e.problem.contains(m), "lacks '\(m)': \(e)", file: file, line: line) }
        }
    }

    /// Values whose products overflow are errors naming the key, not traps.
    func testOverflowingProductsAreErrors() {
        var o = Overrides()
        o.virtualStages = 4611686018427387904
        assertInvalid(o, key: "pipeline.virtual (set by --virtual)", mentions: ["ranks·virtual = 2·4611686018427387904", "overflows"])
        o = Overrides()
        o.seq = 4611686018427387904
        assertInvalid(o, key: "model.seq (set by --seq)", mentions: ["b·s·d·4 bytes", "overflows"], holdsTensors: false)
        o = Overrides()
        o.microbatches = 4611686018427387904
        assertInvalid(o, key: "pipeline.microbatches (set by --microbatches)", mentions: ["the schedule", "overflows"], holdsTensors: false)
        o = Overrides()
        o.layers = 4611686018427387904
        assertInvalid(o, key: "model.layers (set by --layers)", mentions: ["4611686018427387904 layers overflow"], holdsTensors: false)
    }

    /// The memory rule, against a given budget: one hop message held twice (shape mode), plus the model and a
    /// step's activations (compute mode); commands that hold no tensor only need the bookkeeping.
    func testTopologiesThatCannotFitInMemoryAreRejected() throws {
        let t = try Topology.parse(yaml: good, source: "good.yaml").0
        let shape = try TopologyFootprint(t)
        XCTAssertEqual(shape.tensorBytes, 1 * 4 * 16 * 4)
        XCTAssertEqual(shape.maxTensorsPerHop, 4 + 2)
        XCTAssertGreaterThanOrEqual(shape.requiredBytes, shape.bookkeepingBytes + 2 * 6 * 256)
        XCTAssertNoThrow(try validate(Overrides(), memoryBytes: shape.requiredBytes))
        assertInvalid(Overrides(), key: shape.key, mentions: ["needs at least", "shape mode streams tensors", "one hop message of up to 6"],
                      memoryBytes: shape.requiredBytes - 1)
        XCTAssertNoThrow(try validate(Overrides(), memoryBytes: shape.bookkeepingBytes, holdsTensors: false))
        assertInvalid(Overrides(), key: "pipeline.microbatches", mentions: ["the schedule, hop plan and per-layer tables alone"],
                      memoryBytes: shape.bookkeepingBytes - 1, holdsTensors: false)
        var compute = t
        compute.mode = .compute
        let c = try TopologyFootprint(compute)
        XCTAssertGreaterThan(c.requiredBytes, shape.requiredBytes + 16 * 8 * 8 * 16 * 16, "holds at least the layers' weights ×4")
        var o = Overrides()
        o.mode = .compute
        XCTAssertNoThrow(try validate(o, memoryBytes: c.requiredBytes))
        assertInvalid(o, key: c.key, mentions: ["compute mode holds the model, 16 B per parameter"], memoryBytes: c.requiredBytes - 1)
        // A 64 GiB machine cannot hold one 102 GB tensor (b·s·d·4 = 8·32·99 999 999·4), let alone a hop message twice.
        o = Overrides()
        o.hidden = 99_999_999
        o.microbatchSize = 8
        assertInvalid(o, key: "model.hidden (set by --hidden)", mentions: ["needs at least", "more than this machine's 64.00 GiB"],
                      memoryBytes: 64 << 30)
    }

    /// No value of any numeric key traps validation, in any mode and residual kind: it passes or is a TopologyError.
    func testNoValueTrapsValidation() throws {
        let base = try Topology.parse(yaml: good, source: "good.yaml").0
        let huge = [Int.max, Int.max - 1, Int.max / 2, 1 << 62, 4_611_686_018_427_387_904, 1 << 40, 1 << 31, 99_999_999]
        let setters: [(String, WritableKeyPath<Topology, Int>)] = [
            ("ranks", \.ranks), ("virtual", \.virtualStages), ("layers", \.layers), ("hidden", \.hidden), ("heads", \.heads),
            ("seq", \.seq), ("vocab", \.vocab), ("blocks", \.blocks), ("microbatches", \.microbatches),
            ("microbatch_size", \.microbatchSize), ("steps", \.steps), ("seed", \.seed)]
        var rejected = 0, cases = 0
        for mode in RunMode.allCases {
            for residual in ResidualKind.allCases {
                for (name, key) in setters {
                    for v in huge + [-1, 0] {
                        var t = base
                        t.mode = mode
                        t.residual = residual
                        t[keyPath: key] = v
                        if name == "blocks" { t.layers = max(t.layers, v) }  // past "blocks > layers", to the size checks
                        cases += 1
                        do { try t.validate() } catch is TopologyError { rejected += 1 } catch { XCTFail("\(name) = \(v): \(error)") }
                    }
                }
            }
        }
        XCTAssertGreaterThan(rejected, cases / 2, "most of these values are absurd")
    }

    /// hidden/heads divisibility is reported against the flag that changed, not always against model.heads.
    func testDivisibilityNamesTheChangedValue() {
        var o = Overrides()
        o.hidden = 17
        assertInvalid(o, key: "model.hidden (set by --hidden)", mentions: ["hidden 17 is not divisible by 2 heads"])
        o = Overrides()
        o.heads = 3
        assertInvalid(o, key: "model.heads (set by --heads)", mentions: ["hidden 16 is not divisible by 3 heads"])
    }
}
