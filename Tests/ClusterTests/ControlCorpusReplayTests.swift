import Foundation
import XCTest
import Cluster
import Wire

/// The regression corpus Tests/Corpus (see its README) as the tests of this module read it.
enum RegressionCorpus {
    /// Tests/Corpus/TARGET, one input per file, by file name.
    static func inputs(_ target: String) throws -> [(name: String, bytes: [UInt8])] {
        let dir = packageRoot.appendingPathComponent("Tests/Corpus/\(target)")
        return try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted().filter { !$0.hasPrefix(".") }.map {
            ($0, Array(try Data(contentsOf: dir.appendingPathComponent($0))))
        }
    }
}

/// The control-message and topology regression corpora replayed through their decoders, in-process: every
/// control frame keeps `ControlFrameContract` in both directions, every topology file parses and validates or
/// is a `TopologyError` naming the file. LiveCorpusReplayTests send the same inputs to real processes.
final class ControlCorpusReplayTests: XCTestCase {
    func testEveryControlCorpusInputDecodesOrIsRejected() throws {
        let inputs = try RegressionCorpus.inputs("control-message")
        XCTAssertGreaterThanOrEqual(inputs.count, 10, "the control-message regression corpus is missing")
        var rejected = 0
        for (name, bytes) in inputs {
            XCTAssertEqual(ControlFrameContract.violations(bytes), [], name)
            if (try? ControlFrame.decode(ToWorker.self, from: Message(bytes: bytes))) == nil { rejected += 1 }
        }
        XCTAssertGreaterThan(rejected, inputs.count / 2, "most of the corpus is hostile frames a worker must reject")
    }

    func testEveryTopologyCorpusInputParsesOrNamesTheFile() throws {
        let inputs = try RegressionCorpus.inputs("topology-yaml")
        XCTAssertGreaterThanOrEqual(inputs.count, 5, "the topology-yaml regression corpus is missing")
        for (name, bytes) in inputs {
            do {
                let (t, _) = try Topology.parse(yaml: String(decoding: bytes, as: UTF8.self), source: name)
                try t.validate()
            } catch let e as TopologyError {
                XCTAssertEqual(e.file, name)
            } catch { XCTFail("\(name): \(error) is not a TopologyError") }
        }
    }
}
