import Foundation
import XCTest

/// The closing line of `make test` (scripts/test-summary.awk) over captured `swift test` logs.
final class TestSummaryTests: XCTestCase {
    func summary(_ log: String) throws -> (status: Int32, line: String) {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("attnres-summary-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let input = dir.appendingPathComponent("log.txt")
        try log.write(to: input, atomically: false, encoding: .utf8)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["awk", "-f", packageRoot.appendingPathComponent("scripts/test-summary.awk").path, input.path]
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        Watchdog.waitForExit(p, "awk", seconds: 60)
        return (p.terminationStatus, String(decoding: data, as: UTF8.self).trimmingCharacters(in: .newlines))
    }

    func sample(_ name: String) throws -> String {
        try String(contentsOf: packageRoot.appendingPathComponent("scripts/test-summary-samples/\(name)"), encoding: .utf8)
    }

    /// Five tests, one skipped: per-class and per-bundle lines must not be added up or taken instead of the total.
    func testOneSkippedCountsRight() throws {
        let log = try sample("one-skipped.txt")
        XCTAssertEqual(log.components(separatedBy: "Executed").count - 1, 4, "the sample has class, bundle and total lines")
        XCTAssertEqual(try summary(log).line, "4 passed, 0 failed, 1 skipped")
    }

    /// One test with two failed assertions is one failed test (XCTest's total says "2 failures").
    func testFailuresCountTestsNotAssertions() throws {
        let log = try sample("one-skipped-one-failed-twice.txt")
        XCTAssertTrue(log.contains("with 1 test skipped and 2 failures"))
        XCTAssertEqual(try summary(log).line, "3 passed, 1 failed, 1 skipped")
    }

    /// A log cut before the closing total (a crash, the time limit) says so instead of counting a class line.
    func testUnfinishedLogIsNotCounted() throws {
        let log = try sample("one-skipped.txt")
        let cut = log.components(separatedBy: "Test Suite 'All tests' passed")[0]
        XCTAssertTrue(cut.contains("Executed 5 tests"), "the bundle line is still there")
        let r = try summary(cut)
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.line.contains("did not finish"), r.line)
    }
}
