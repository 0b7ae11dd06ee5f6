import Foundation
import XCTest
@testable import Cluster
#if canImport(Glibc)
import Glibc
#endif

/// The ipc run directory: owned (pid and start time recorded), removed by its coordinator, and swept by the next
/// run only when its owner is gone.
final class RunDirectoryTests: XCTestCase {
    func tempRoot() throws -> String {
        let d = FileManager.default.temporaryDirectory.appendingPathComponent("attnres-rundir-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: d, withIntermediateDirectories: true)
        return d.path
    }

    /// A pid that was just alive and is now dead (reaped): a child that exits at once.
    func deadPid() throws -> pid_t {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/true")
        try p.run()
        Watchdog.waitForExit(p, "/bin/true", seconds: 30)
        return p.processIdentifier
    }

    func makeRunDirectory(_ root: String, owner: String?) throws -> String {
        var template = Array("\(root)/attnres-XXXXXX".utf8CString)
        let path = String(cString: try XCTUnwrap(mkdtemp(&template)))
        if let owner { try owner.write(toFile: "\(path)/owner.pid", atomically: false, encoding: .utf8) }
        return path
    }

    func testSweepRemovesOnlyDirectoriesWhoseOwnerIsGone() throws {
        let root = try tempRoot()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let me = try XCTUnwrap(RunDirectory.owner(of: getpid()))
        let live = try makeRunDirectory(root, owner: "\(me.pid) \(me.started)\n")
        let dead = try makeRunDirectory(root, owner: "\(try deadPid()) 12345\n")
        let recycled = try makeRunDirectory(root, owner: "\(me.pid) \(me.started + 1)\n")  // our pid, another start: not us
        let unowned = try makeRunDirectory(root, owner: nil)
        let other = "\(root)/attnres-cli-kept"
        try FileManager.default.createDirectory(atPath: other, withIntermediateDirectories: true)
        try "\(try deadPid()) 1\n".write(toFile: "\(other)/owner.pid", atomically: false, encoding: .utf8)
        let removed = RunDirectory.sweepStale(root: root)
        XCTAssertEqual(Set(removed), [dead, recycled])
        for kept in [live, unowned, other] { XCTAssertTrue(FileManager.default.fileExists(atPath: kept), kept) }
        for gone in [dead, recycled] { XCTAssertFalse(FileManager.default.fileExists(atPath: gone), gone) }
    }

    func testCreateRecordsTheOwnerAndTheCoordinatorRemovesIt() throws {
        let root = try tempRoot()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let path = try RunDirectory.create(root: root)
        XCTAssertEqual(RunDirectory.recordedOwner(path), RunDirectory.owner(of: getpid()))
        XCTAssertEqual(RunDirectory.sweepStale(root: root), [], "a live run's directory is kept")
        try FileManager.default.removeItem(atPath: path)

        let coordinator = try Coordinator(topology: Topology(), workerExecutable: CLIProcess.binary)
        let dir = coordinator.ipcDirectory
        XCTAssertEqual(RunDirectory.recordedOwner(dir)?.pid, getpid())
        coordinator.shutdown()
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir), "shutdown removes the run directory")
    }

    /// A SIGKILLed coordinator leaves its directory (nothing can remove it then); the next run sweeps it, and keeps
    /// a directory whose owner lives.
    func testNextRunSweepsTheDirectoryOfAKilledCoordinator() throws {
        _ = CLIProcess.becomeSubreaper
        let (p, err, root) = try Self.startInOwnRoot(["run", "--verbose", "--fault", "never-join:1", "--ranks", "2", "--virtual", "1",
                                                      "--layers", "4", "--blocks", "2", "--microbatches", "2", "--join-timeout", "60"])
        defer { try? FileManager.default.removeItem(atPath: root) }
        // The coordinator's log names its endpoint (in the run directory); once rank 0 joined, both workers exist.
        let log = Self.readLog(err, of: p, "rank 0 joining") { $0.contains("rank 0 joined") && Self.runDirectory(inLog: $0) != nil }
        let dir = try XCTUnwrap(Self.runDirectory(inLog: log), "no ipc endpoint in the coordinator's log")
        XCTAssertEqual(RunDirectory.recordedOwner(dir)?.pid, p.processIdentifier)
        // Its orphaned worker (rank 0; rank 1 never joins and idles until orphaned) exits by itself.
        XCTAssertEqual(Self.killAndReapOrphans(p), 2)
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir), "a SIGKILLed coordinator cannot remove its directory")

        let me = try XCTUnwrap(RunDirectory.owner(of: getpid()))
        var template = Array("\(root)/attnres-XXXXXX".utf8CString)
        let live = String(cString: try XCTUnwrap(mkdtemp(&template)))
        defer { try? FileManager.default.removeItem(atPath: live) }
        try "\(me.pid) \(me.started)\n".write(toFile: "\(live)/owner.pid", atomically: false, encoding: .utf8)

        let next = try CLIProcess.run(["run", "--steps", "1", "--ranks", "2", "--virtual", "1", "--layers", "4", "--blocks", "2", "--microbatches", "2"],
                                      environment: ["TMPDIR": root])
        XCTAssertEqual(next.status, 0, next.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir), "the next run sweeps the dead coordinator's directory")
        XCTAssertTrue(FileManager.default.fileExists(atPath: live), "a live owner's directory is kept")
        CLIProcess.assertNoOrphans()
    }

    /// A coordinator SIGKILLed mid-run leaves its directory with its control socket and every rank's data socket;
    /// the workers it orphaned remove it on their way out (its recorded owner is gone), so nothing is left behind.
    func testOrphanedWorkersRemoveTheKilledCoordinatorsDirectory() throws {
        _ = CLIProcess.becomeSubreaper
        let (p, err, root) = try Self.startInOwnRoot(["run", "--verbose", "--steps", "100000", "--ranks", "2", "--virtual", "1",
                                                      "--layers", "4", "--blocks", "2", "--microbatches", "2"])
        defer { try? FileManager.default.removeItem(atPath: root) }
        // Once every data link is probed, both workers have bound their data sockets in the run directory.
        let log = Self.readLog(err, of: p, "the data links being probed") { $0.contains("every data link probed") }
        let dir = try XCTUnwrap(Self.runDirectory(inLog: log), "no run directory in the log:\n\(log)")
        XCTAssertTrue(FileManager.default.fileExists(atPath: "\(dir)/rank-1.data"), "rank 1's data socket is in \(dir)")
        XCTAssertEqual(Self.killAndReapOrphans(p), 2)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir), "the orphaned workers leave \(dir) behind: \((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [])")
        CLIProcess.assertNoOrphans()
    }

    /// Starts `attnres ARGUMENTS` (stdout discarded, stderr piped) with a temp root of its own as TMPDIR, since any
    /// other attnres run on the machine sweeps the shared one; the caller removes the returned root.
    static func startInOwnRoot(_ arguments: [String]) throws -> (Process, Pipe, String) {
        let root = "/tmp/rdt-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        let p = Process()
        p.environment = ProcessInfo.processInfo.environment.merging(["TMPDIR": root]) { $1 }
        p.executableURL = URL(fileURLWithPath: CLIProcess.binary)
        p.arguments = arguments
        let err = Pipe()
        p.standardError = err
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        return (p, err, root)
    }

    /// `p`'s log from `err` until `done` holds of it or the pipe closes; after 90 s the watchdog kills `p`.
    static func readLog(_ err: Pipe, of p: Process, _ what: String, until done: @escaping (String) -> Bool) -> String {
        Watchdog.run(what, seconds: 90, onTimeout: { kill(p.processIdentifier, SIGKILL) }) { () -> String in
            var log = ""
            while !done(log) {
                let chunk = err.fileHandleForReading.availableData
                if chunk.isEmpty { break }
                log += String(decoding: chunk, as: UTF8.self)
            }
            return log
        } ?? ""
    }

    /// SIGKILLs coordinator `p`, waits for it, then reaps the workers it orphaned (this process is their subreaper),
    /// each of which must exit by itself (after 30 s the watchdog kills them); returns how many were reaped.
    static func killAndReapOrphans(_ p: Process) -> Int? {
        kill(p.processIdentifier, SIGKILL)
        Watchdog.waitForExit(p, "the SIGKILLed coordinator", seconds: 30)
        return Watchdog.run("the orphaned workers exiting", seconds: 30, onTimeout: { for pid in CLIProcess.liveChildren() { kill(pid, SIGKILL) } }) {
            var status: Int32 = 0
            var n = 0
            while waitpid(-1, &status, 0) > 0 { n += 1 }
            return n
        }
    }

    /// The run directory named in a `--verbose` coordinator log.
    static func runDirectory(inLog log: String) -> String? {
        guard let r = log.range(of: "coordinator listening on ipc://"), let end = log[r.upperBound...].firstIndex(of: "\n") else { return nil }
        return URL(fileURLWithPath: String(log[r.upperBound..<end])).deletingLastPathComponent().path
    }

    /// Every exit path the coordinator controls removes its directory: success, a failed worker, SIGTERM.
    func testEveryExitPathRemovesTheDirectory() throws {
        let small = ["--verbose", "--ranks", "2", "--virtual", "1", "--layers", "4", "--blocks", "2", "--microbatches", "2"]
        for (args, succeeds) in [(["run", "--steps", "1"], true), (["run", "--steps", "2", "--fault", "kill:1@1"], false)] {
            let r = try CLIProcess.run(args + small)
            XCTAssertEqual(r.status == 0, succeeds, r.stderr)
            let dir = try XCTUnwrap(Self.runDirectory(inLog: r.stderr), r.stderr)
            XCTAssertFalse(FileManager.default.fileExists(atPath: dir), "\(args): \(dir) left behind")
        }
        _ = CLIProcess.becomeSubreaper
        let p = Process()
        p.executableURL = URL(fileURLWithPath: CLIProcess.binary)
        p.arguments = ["run", "--fault", "never-join:1", "--join-timeout", "60"] + small
        let err = Pipe()
        p.standardError = err
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        let dir = Watchdog.run("rank 0 joining", seconds: 90, onTimeout: { kill(p.processIdentifier, SIGKILL) }) { () -> String? in
            var log = ""
            while !log.contains("rank 0 joined") {
                let chunk = err.fileHandleForReading.availableData
                if chunk.isEmpty { return nil }
                log += String(decoding: chunk, as: UTF8.self)
            }
            return Self.runDirectory(inLog: log)
        } ?? nil
        kill(p.processIdentifier, SIGTERM)
        Watchdog.waitForExit(p, "the coordinator after SIGTERM", seconds: 30)
        _ = Watchdog.run("the coordinator's stderr closing", seconds: 30) { err.fileHandleForReading.readDataToEndOfFile() }
        let path = try XCTUnwrap(dir)
        XCTAssertFalse(FileManager.default.fileExists(atPath: path), "SIGTERM: \(path) left behind")
        CLIProcess.assertNoOrphans()
    }
}
