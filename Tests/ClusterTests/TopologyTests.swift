import Foundation
import XCTest
@testable import Cluster
@testable import Pipeline

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

    func testMissingFileIsAClearError() {
        XCTAssertThrowsError(try Topology.load(path: "/nonexistent/x.yaml")) {
            XCTAssertTrue("\($0)".hasPrefix("/nonexistent/x.yaml: (file): cannot read"), "\($0)")
        }
    }
}
