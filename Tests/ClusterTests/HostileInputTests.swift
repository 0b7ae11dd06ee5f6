import Foundation
import XCTest
@testable import Cluster
@testable import Pipeline
#if canImport(Glibc)
import Glibc
#endif

/// Inputs a hostile file or peer can hand the library directly: each is a clear error, quickly, never a trap, a
/// hang or an endless read.
final class HostileInputTests: XCTestCase {
    func tempDir() throws -> URL {
        let d = FileManager.default.temporaryDirectory.appendingPathComponent("attnres-hostile-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: d, withIntermediateDirectories: true)
        return d
    }

    /// 434 bytes of nested aliases used as mapping keys ("billion laughs"): refused before the YAML library expands
    /// them (before, minutes of CPU in its duplicate-key check).
    func testAliasBombIsRefusedBeforeParsing() throws {
        var bomb = "name: &a0 [x,x,x,x,x,x,x,x,x,x]\n"
        for i in 1...8 { bomb += "? &a\(i) [" + Array(repeating: "*a\(i - 1)", count: 10).joined(separator: ",") + "]\n: 1\n" }
        bomb += "? *a8\n: 2\n"
        let started = Date()
        XCTAssertThrowsError(try Topology.parse(yaml: bomb, source: "bomb.yaml")) { error in
            XCTAssertEqual("\(error)", "bomb.yaml:1: (yaml): YAML anchors (&name) are not accepted in topology files; quote the value if it is text")
        }
        XCTAssertLessThan(Date().timeIntervalSince(started), 1)
        XCTAssertThrowsError(try Topology.parse(yaml: "name: x\nsteps: *s\n", source: "alias.yaml")) { error in
            XCTAssertTrue("\(error)".hasPrefix("alias.yaml:2: (yaml): YAML aliases (*name)"), "\(error)")
        }
    }

    /// What the scan must let through: `*` and `&` inside quotes, comments and endpoints, and the shipped files.
    func testLegitimateStarsAndAmpersandsPass() throws {
        let yaml = """
        name: "run *1 & more"   # a comment with *star and &amp
        coordinator: tcp://127.0.0.1:*
        steps: 1
        """
        let (t, _) = try Topology.parse(yaml: yaml, source: "ok.yaml")
        XCTAssertEqual(t.name, "run *1 & more")
        XCTAssertEqual(t.coordinator, "tcp://127.0.0.1:*")
        XCTAssertNoThrow(try Topology.parse(yaml: "name: 'it''s *fine'\n", source: "q.yaml"))
        for file in try FileManager.default.contentsOfDirectory(atPath: "topologies") where file.hasSuffix(".yaml") {
            XCTAssertNoThrow(try Topology.load(path: "topologies/\(file)"), file)
        }
    }

    /// A FIFO, a device and a file over the limit are refused before any byte is read.
    func testInputFilesThatCannotEndAreRefused() throws {
        let d = try tempDir()
        defer { try? FileManager.default.removeItem(at: d) }
        let fifo = d.appendingPathComponent("fifo").path
        XCTAssertEqual(mkfifo(fifo, 0o600), 0)
        XCTAssertThrowsError(try InputFile.bytes(fifo)) { XCTAssertTrue("\($0)".contains("is not a regular file"), "\($0)") }
        XCTAssertThrowsError(try Topology.load(path: fifo)) { XCTAssertTrue("\($0)".contains("\(fifo): (file): is not a regular file"), "\($0)") }
        XCTAssertThrowsError(try InputFile.bytes("/dev/zero")) { XCTAssertTrue("\($0)".contains("is not a regular file"), "\($0)") }
        let link = d.appendingPathComponent("zero").path
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: "/dev/zero")
        XCTAssertThrowsError(try InputFile.bytes(link)) { XCTAssertTrue("\($0)".contains("is not a regular file"), "\($0)") }
        let big = d.appendingPathComponent("big").path
        XCTAssertTrue(FileManager.default.createFile(atPath: big, contents: Data(count: 4096)))
        XCTAssertThrowsError(try InputFile.bytes(big, limit: 1000)) {
            XCTAssertEqual("\($0)", "\(big): is 4096 bytes, more than the 1000 this input may have")
        }
        XCTAssertEqual(try InputFile.bytes(big, limit: 4096).count, 4096)
    }

    /// A joined worker's report whose byte counts cannot be summed is a report error, not an overflow trap.
    func testReportCountsThatOverflowAreAnError() throws {
        var t = Topology()
        t.ranks = 2; t.virtualStages = 1; t.schedule = .oneFOneB; t.steps = 1
        let huge = LinkCount(src: 0, dst: 1, direction: .forward, kind: .block, payloadBytes: Int.max, tensors: 1)
        func report(_ r: Int, sent: [LinkCount], received: [LinkCount]) -> WorkerReport {
            WorkerReport(rank: r, received: received, sent: sent, headerBytesSent: 0, messagesSent: 0, peakCachedBytes: 0,
                         tensorsPerHop: [:], computeSeconds: 0, waitSeconds: 0)
        }
        let reports = [report(0, sent: [huge, huge], received: []), report(1, sent: [], received: [huge])]
        XCTAssertThrowsError(try VariantResult(topology: t, reports: reports, seconds: 1)) { error in
            XCTAssertTrue("\(error)".contains("rank 0's report: sent bytes on 0→1 forward block overflow a 64-bit count"), "\(error)")
        }
        let spread = [report(0, sent: [huge], received: []),
                      report(1, sent: [LinkCount(src: 1, dst: 0, direction: .backward, kind: .block, payloadBytes: Int.max, tensors: 1)],
                             received: [huge])]
        XCTAssertThrowsError(try VariantResult(topology: t, reports: spread, seconds: 1)) { error in
            XCTAssertTrue("\(error)".contains("overflow a 64-bit count"), "\(error)")
        }
    }
}
