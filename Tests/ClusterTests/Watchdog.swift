import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// Upper bounds for waits that must end, so a bug shows up as a failing test naming what hung instead of a CI
/// run that stops at its time limit. These are not synchronisation: every wait still ends on the event itself
/// (a process exit, a thread finishing); the bound only turns "never" into a failure.
enum Watchdog {
    /// Runs `body` on its own thread and waits for it up to `seconds`. On time-out, fails the test naming `what`,
    /// calls `onTimeout` (kill the process, say) and returns nil; the stuck thread is abandoned.
    static func run<T>(_ what: String, seconds: Double, onTimeout: () -> Void = {}, file: StaticString = #filePath, line: UInt = #line,
                       _ body: @escaping () -> T) -> T? {
        let done = DispatchSemaphore(value: 0)
        let box = Box<T>()
        Thread { box.value = body(); done.signal() }.start()
        guard done.wait(timeout: .now() + seconds) == .success else {
            onTimeout()
            XCTFail("\(what) did not finish within \(Int(seconds)) s", file: file, line: line)
            return nil
        }
        return box.value
    }

    /// Waits for `p` to exit, up to `seconds`; on time-out kills it with SIGKILL and fails the test.
    /// Returns false when it timed out (the caller must not read `terminationStatus` then).
    @discardableResult
    static func waitForExit(_ p: Process, _ what: String, seconds: Double = 300, file: StaticString = #filePath, line: UInt = #line) -> Bool {
        run(what, seconds: seconds, onTimeout: { kill(p.processIdentifier, SIGKILL) }, file: file, line: line) { p.waitUntilExit() } != nil
    }

    private final class Box<T>: @unchecked Sendable { var value: T? }
}
