import Foundation
import XCTest

/// Runs python3 for interoperability tests. Installs missing packages with pip once; when python3 or pip is
/// unreachable the test is skipped with a message that says so (never a hard dependency, never a silent pass).
enum PythonEnvironment {
    struct Output { var status: Int32; var stdout: String; var stderr: String }

    /// Runs `arguments` under coreutils' `timeout`, so a pip install stuck on the network ends (status 124)
    /// instead of hanging the suite.
    static func run(_ arguments: [String], input: String? = nil, timeoutSeconds: Int = 600) throws -> Output {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["timeout", "--kill-after=10", "\(timeoutSeconds)"] + arguments
        let out = Pipe(), err = Pipe(), inp = Pipe()
        p.standardOutput = out; p.standardError = err; p.standardInput = inp
        try p.run()
        if let input { inp.fileHandleForWriting.write(Data(input.utf8)) }
        try inp.fileHandleForWriting.close()
        // stderr is read on its own thread: a child filling one pipe while we block on the other would deadlock.
        final class Box: @unchecked Sendable { var data = Data() }
        let e = Box()
        let errDone = DispatchSemaphore(value: 0)
        Thread { e.data = err.fileHandleForReading.readDataToEndOfFile(); errDone.signal() }.start()
        let o = out.fileHandleForReading.readDataToEndOfFile()
        errDone.wait()
        p.waitUntilExit()
        return Output(status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self),
                      stderr: String(decoding: e.data, as: UTF8.self))
    }

    /// Ensures `import` of each module works, installing `packages` with pip if needed; else throws XCTSkip.
    static func require(modules: [String], packages: [String]) throws {
        let check = "import " + modules.joined(separator: ", ")
        guard let first = try? run(["python3", "-c", check]), first.status != 127 else {  // 127: env found no python3
            throw XCTSkip("python3 is not installed: cannot cross-check with Python's \(packages.joined(separator: ", "))")
        }
        if first.status == 0 { return }
        let install = try run(["python3", "-m", "pip", "install", "-q", "--timeout", "30", "--retries", "2"] + packages, timeoutSeconds: 300)
        guard install.status == 0, (try? run(["python3", "-c", check]))?.status == 0 else {
            throw XCTSkip("pip could not install \(packages.joined(separator: " ")) (PyPI unreachable?): "
                          + install.stderr.suffix(300))
        }
    }

    /// Runs a Python script; fails the test with its stderr when it exits non-zero.
    static func script(_ source: String, args: [String] = [], file: StaticString = #filePath, line: UInt = #line) throws -> String {
        let r = try run(["python3", "-c", source] + args)
        if r.status != 0 { XCTFail("python failed (\(r.status)):\n\(r.stderr)", file: file, line: line) }
        return r.stdout
    }
}
