import Foundation
import XCTest
@testable import Cluster

/// `attnres smoke`: passes on a healthy cluster, fails exactly the check a fault breaks, and writes JUnit XML that
/// validates against the junit-4 schema (Tests/junit/junit-4.xsd) with xmllint.
final class SmokeTests: XCTestCase {
    static let schema = packageRoot.appendingPathComponent("Tests/junit/junit-4.xsd").path
    /// Small enough for a debug build on a loaded 2-core machine; 4 ranks × 2 virtual stages still ring-wrap.
    let small = ["--layers", "8", "--blocks", "4", "--hidden", "16", "--heads", "2", "--seq", "8", "--vocab", "64",
                 "--microbatches", "4", "--microbatch-size", "1"]

    struct Case: Equatable { let name: String; let classname: String; let failure: String? }

    /// The test cases of a JUnit file: name, classname and failure message (nil = passed).
    static func cases(_ xml: String) -> [Case] {
        xml.components(separatedBy: "<testcase ").dropFirst().map { chunk in
            let body = chunk.components(separatedBy: "</testcase>")[0]
            func attr(_ s: String, _ name: String) -> String? {
                guard let r = s.range(of: "\(name)=\"") else { return nil }
                return String(s[r.upperBound...].prefix { $0 != "\"" })
            }
            let failure = body.range(of: "<failure ").map { attr(String(body[$0.lowerBound...]), "message") ?? "" }
            return Case(name: attr(body, "name") ?? "", classname: attr(body, "classname") ?? "", failure: failure)
        }
    }

    func validate(_ path: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let v = try CLIProcess.runTool("xmllint", ["--noout", "--schema", Self.schema, path])
        XCTAssertEqual(v.status, 0, "xmllint (Debian's libxml2-utils, installed by make deps): \(v.stderr)", file: file, line: line)
    }

    func testHealthySmokePassesWithValidJUnit() throws {
        let xml = FileManager.default.temporaryDirectory.appendingPathComponent("attnres-smoke-\(UUID().uuidString).xml").path
        defer { try? FileManager.default.removeItem(atPath: xml) }
        let r = try CLIProcess.run(["smoke", "--junit", xml] + small)
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        print("attnres smoke (debug build): \(String(format: "%.1f", r.seconds)) s")
        try validate(xml)
        let text = try String(contentsOfFile: xml, encoding: .utf8)
        let cases = Self.cases(text)
        XCTAssertEqual(cases.count, 7 * 2 + 2)
        XCTAssertEqual(cases.filter { $0.failure != nil }, [])
        XCTAssertEqual(Set(cases.map(\.classname)), ["attnres.smoke.shape", "attnres.smoke.compute", "attnres.smoke.processes"])
        XCTAssertTrue(text.contains("failures=\"0\""))
        XCTAssertTrue(text.contains("predicted"), "the numbers are in the report")
        XCTAssertTrue(r.stdout.contains("16 checks, 0 failed"), r.stdout)
        XCTAssertEqual(r.stderr, "", "no progress output when standard error is not a terminal")
        CLIProcess.assertNoOrphans()
    }

    /// A worker of the compute cluster killed at its second step: exit 1, only that check fails, naming the rank;
    /// the shape checks and the process check still pass (the coordinator stopped every worker).
    func testInjectedFaultFailsExactlyItsCheck() throws {
        let xml = FileManager.default.temporaryDirectory.appendingPathComponent("attnres-smoke-\(UUID().uuidString).xml").path
        defer { try? FileManager.default.removeItem(atPath: xml) }
        let r = try CLIProcess.run(["smoke", "--junit", xml, "--fault", "kill:1@1"] + small)
        XCTAssertEqual(r.status, 1, r.stdout + r.stderr)
        try validate(xml)
        let text = try String(contentsOfFile: xml, encoding: .utf8)
        let failed = Self.cases(text).filter { $0.failure != nil }
        XCTAssertEqual(failed.map(\.name), ["block(4)/cross-stage: pipeline loss == single process"], text)
        XCTAssertTrue(failed.first?.failure?.contains("rank 1") ?? false, "\(failed)")
        XCTAssertTrue(text.contains("failures=\"1\""))
        XCTAssertTrue(r.stdout.contains("16 checks, 1 failed"), r.stdout)
        // Bad input is not a failed check: exit 2, naming the fault, before any process starts.
        let bad = try CLIProcess.run(["smoke", "--fault", "kill:9@1"] + small)
        XCTAssertEqual(bad.status, 2, bad.stdout + bad.stderr)
        XCTAssertTrue(bad.stderr.contains("rank 9 does not exist"), bad.stderr)
        CLIProcess.assertNoOrphans()
    }

    /// The loss check fails past the tolerance with both numbers; XML escapes what XML cannot hold raw.
    func testChecksCarryTheirNumbersAndXMLIsEscaped() {
        XCTAssertTrue(SmokeTest.lossCheck("l", pipeline: [2, 1.5], reference: [2, 1.5], seconds: 0).passed)
        let bad = SmokeTest.lossCheck("l", pipeline: [2, 1.5], reference: [2, 1.49], seconds: 0)
        XCTAssertEqual(bad.failure, "step 2: pipeline loss 1.5 ≠ single process 1.49")
        XCTAssertFalse(SmokeTest.lossCheck("l", pipeline: [.nan], reference: [2], seconds: 0).passed, "NaN never passes")
        XCTAssertFalse(SmokeTest.lossCheck("l", pipeline: [2], reference: [2, 2], seconds: 0).passed)
        let xml = JUnitXML.render([SmokeCheck(group: "g", name: "a<b & \"c\"", failure: "x\u{1}y", details: "d", seconds: 1)],
                                  suite: "s", properties: [], seconds: 1)
        XCTAssertTrue(xml.contains("name=\"a&lt;b &amp; &quot;c&quot;\""), xml)
        XCTAssertTrue(xml.contains("message=\"x?y\""), xml)
    }
}
