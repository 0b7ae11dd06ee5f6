import Foundation
import XCTest

/// The progress bar of long commands, seen the way a user sees it: under a pseudo-terminal (util-linux `script`),
/// a bar with the variant or point, the step, bytes moved, the rate and an ETA, rewritten in place; and without a
/// terminal, nothing at all on standard error.
final class ProgressTests: XCTestCase {
    let small = ["--layers", "8", "--hidden", "16", "--heads", "2", "--seq", "8", "--steps", "3"]

    /// Runs `attnres args` with its standard output and error on a fresh pty; returns what the terminal showed.
    func underPty(_ args: [String], file: StaticString = #filePath, line: UInt = #line) throws -> String {
        let command = ([CLIProcess.binary] + args).map { "'\($0)'" }.joined(separator: " ")
        let r = try CLIProcess.runTool("script", ["-qec", command, "/dev/null"], file: file, line: line)
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr, file: file, line: line)
        return r.stdout
    }

    func assertBar(_ screen: String, mentions: [String], file: StaticString = #filePath, line: UInt = #line) {
        let redraws = screen.components(separatedBy: "\r\u{1B}[K").dropFirst()
        XCTAssertGreaterThan(redraws.count, 3, "the line is redrawn as work goes on:\n\(screen)", file: file, line: line)
        for needle in ["[", "%", "moved", "/s", "ETA", "step "] + mentions {
            XCTAssertTrue(redraws.contains { $0.contains(needle) }, "no progress line shows '\(needle)':\n\(screen)", file: file, line: line)
        }
        XCTAssertTrue(redraws.contains { $0.contains("[####################] 100%") || $0.contains("####") }, "the bar fills:\n\(screen)",
                      file: file, line: line)
    }

    func testCompareShowsABarOnATerminalAndNothingElsewhere() throws {
        let screen = try underPty(["compare"] + small)
        assertBar(screen, mentions: ["variant 1/7", "variant 7/7"])
        XCTAssertTrue(screen.contains("measured=predicted"), "the report follows the bar:\n\(screen)")
        let plain = try CLIProcess.run(["compare"] + small)
        XCTAssertEqual(plain.status, 0, plain.stderr)
        XCTAssertEqual(plain.stderr, "")
        XCTAssertFalse(plain.stdout.contains("\u{1B}["), "no terminal codes in captured output")
        CLIProcess.assertNoOrphans()
    }

    func testMeasuredSweepAndRunShowABar() throws {
        assertBar(try underPty(["sweep", "--layers", "8,16", "--measure", "--ranks", "2", "--hidden", "16", "--seq", "8", "--steps", "2"]),
                  mentions: ["point 1/", "block(8)/cross-stage"])
        assertBar(try underPty(["run", "--steps", "6", "--layers", "8", "--hidden", "16", "--seq", "8"]), mentions: ["step 6/6"])
        CLIProcess.assertNoOrphans()
    }
}
