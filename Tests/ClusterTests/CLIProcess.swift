import Foundation
import XCTest
import CSys
#if canImport(Glibc)
import Glibc
#endif

/// Runs the real `attnres` binary as a child process and checks that nothing it started outlives it.
enum CLIProcess {
    struct Result { let status: Int32; let stdout: String; let stderr: String; let seconds: Double }

    /// The `attnres` executable built next to the test bundle (or $ATTNRES_BIN).
    static var binary: String {
        if let env = ProcessInfo.processInfo.environment["ATTNRES_BIN"] { return env }
        return URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
            .appendingPathComponent("attnres").path
    }

    /// Makes this test process the reaper of orphans, so a worker that outlives its coordinator becomes our
    /// child and `liveChildren()` sees it.
    static let becomeSubreaper: Void = { _ = attnres_set_child_subreaper() }()

    /// Runs `attnres args` to completion (killed, and the test failed, if it takes more than `timeout` s).
    /// `environment`: variables to set (or override) for the child, on top of this process's own.
    static func run(_ args: [String], timeout: Double = 300, environment: [String: String] = [:], file: StaticString = #filePath,
                    line: UInt = #line) throws -> Result {
        try run(args, executable: binary, timeout: timeout, environment: environment, file: file, line: line)
    }

    /// Runs `executable args` to completion, as `run(_:)` does.
    static func run(_ args: [String], executable: String, timeout: Double = 300, environment: [String: String] = [:],
                    file: StaticString = #filePath, line: UInt = #line) throws -> Result {
        _ = becomeSubreaper
        let binary = executable
        guard FileManager.default.isExecutableFile(atPath: binary) else {
            XCTFail("attnres binary not found at \(binary): build it (swift build) or set ATTNRES_BIN", file: file, line: line)
            throw CocoaError(.fileNoSuchFile)
        }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("attnres-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("out"), err = dir.appendingPathComponent("err")
        _ = FileManager.default.createFile(atPath: out.path, contents: nil)
        _ = FileManager.default.createFile(atPath: err.path, contents: nil)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: binary)
        p.arguments = args
        if !environment.isEmpty { p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
        p.standardOutput = try FileHandle(forWritingTo: out)
        p.standardError = try FileHandle(forWritingTo: err)
        let start = Date()
        try p.run()
        guard Watchdog.waitForExit(p, "attnres \(args.joined(separator: " "))", seconds: timeout, file: file, line: line) else {
            throw CocoaError(.executableLoad)
        }
        let seconds = Date().timeIntervalSince(start)
        return Result(status: p.terminationStatus, stdout: try String(contentsOf: out, encoding: .utf8),
                      stderr: try String(contentsOf: err, encoding: .utf8), seconds: seconds)
    }

    /// Runs a system tool found on PATH (rsvg-convert, xmllint, script), as `run` does the attnres binary.
    static func runTool(_ tool: String, _ args: [String], timeout: Double = 120, file: StaticString = #filePath, line: UInt = #line) throws -> Result {
        try run([tool] + args, executable: "/usr/bin/env", timeout: timeout, file: file, line: line)
    }

    /// Pids of live (non-zombie) processes whose parent is this test process; exited orphans are reaped.
    static func liveChildren() -> [Int32] {
        var status: Int32 = 0
        while waitpid(-1, &status, WNOHANG) > 0 {}
        let me = getpid()
        var out: [Int32] = []
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let pid = Int32(entry), let stat = try? String(contentsOfFile: "/proc/\(entry)/stat", encoding: .utf8) else { continue }
            // Fields after the command name, which is in parentheses: state ppid …
            guard let close = stat.lastIndex(of: ")") else { continue }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            guard fields.count > 2, let ppid = Int32(fields[1]), ppid == me, fields[0] != "Z" else { continue }
            out.append(pid)
        }
        return out
    }

    static func assertNoOrphans(file: StaticString = #filePath, line: UInt = #line) {
        let left = liveChildren()
        XCTAssertEqual(left, [], "processes left behind: \(left)", file: file, line: line)
        for pid in left { kill(pid, SIGKILL) }
    }
}
