import Foundation
import XCTest
@testable import Cluster
#if canImport(Glibc)
import Glibc
#endif

/// What a worker process inherits and whom it watches. Both were found by hunting a CI hang: a worker that kept
/// a descriptor of its starter open made `Process.waitUntilExit` (which waits for EOF on an inherited socket)
/// wait for the worker too, and a worker that read its parent with getppid() after the coordinator had already
/// died watched the wrong parent for ever.
final class ProcessHygieneTests: XCTestCase {
    /// Inode numbers of the descriptors `pid` has open (pipes and sockets only).
    func openPipesAndSockets(_ pid: pid_t) -> Set<String> {
        let dir = "/proc/\(pid)/fd"
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
        return Set(names.compactMap { try? FileManager.default.destinationOfSymbolicLink(atPath: "\(dir)/\($0)") }
            .filter { $0.hasPrefix("pipe:") || $0.hasPrefix("socket:") })
    }

    func testSpawnedWorkersInheritOnlyStandardDescriptors() throws {
        var fds: [Int32] = [0, 0]
        XCTAssertEqual(pipe(&fds), 0)  // not close-on-exec, like the socket Foundation's Process leaves open
        defer { close(fds[0]); close(fds[1]) }
        let ours = Set(openPipesAndSockets(getpid()).filter { $0.hasPrefix("pipe:") })
        let processes = WorkerProcesses()
        // never-join: the worker starts and idles without connecting anywhere.
        try processes.spawn(rank: 0, join: "ipc:///nonexistent/attnres-hygiene", faults: [.neverJoin(rank: 0)],
                            executable: CLIProcess.binary)
        defer { processes.stopAll(graceSeconds: 0) }
        let pid = processes.children[0].pid
        // posix_spawn returns after the exec, with the file actions applied: the table is final now.
        let inherited = openPipesAndSockets(pid).intersection(ours)
        let stdio = Set((0...2).compactMap { try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\($0)") })
        XCTAssertEqual(inherited.subtracting(stdio), [], "worker \(pid) inherited descriptors of its starter")
        let pipeInode = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\(fds[1])")
        XCTAssertFalse(openPipesAndSockets(pid).contains(pipeInode), "the test's pipe leaked into the worker")
    }

    /// A worker told to watch a coordinator that is already gone exits at once instead of idling for ever.
    func testWorkerWhoseCoordinatorDiedBeforeItStartedExits() throws {
        // A pid that has certainly exited: a child we started and reaped.
        let gone = Process()
        gone.executableURL = URL(fileURLWithPath: "/bin/true")
        try gone.run()
        Watchdog.waitForExit(gone, "/bin/true", seconds: 30)
        let r = try CLIProcess.run(["worker", "--join", "ipc:///nonexistent/attnres-hygiene", "--rank", "2",
                                    "--parent-pid", "\(gone.processIdentifier)", "--fault", "never-join:2"], timeout: 30)
        XCTAssertEqual(r.status, 2, "the never-join worker's 'orphaned' exit code\n\(r.stderr)")
        XCTAssertLessThan(r.seconds, 10)
        CLIProcess.assertNoOrphans()
    }
}
