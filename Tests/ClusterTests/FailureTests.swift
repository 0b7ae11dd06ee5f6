import Foundation
import XCTest
@testable import Cluster
@testable import Pipeline
@testable import Wire

/// Failure basics with real processes: every failure names the rank, stops every process and exits
/// non-zero within 10 s, and nothing is left behind.
final class FailureTests: XCTestCase {
    func assertFails(_ args: [String], mentioning words: [String], file: StaticString = #filePath, line: UInt = #line) throws {
        let r = try CLIProcess.run(args, file: file, line: line)
        XCTAssertNotEqual(r.status, 0, "attnres \(args) should fail\n\(r.stdout)", file: file, line: line)
        for w in words { XCTAssertTrue(r.stderr.contains(w), "stderr lacks '\(w)':\n\(r.stderr)", file: file, line: line) }
        XCTAssertLessThan(r.seconds, 10, "failure took \(r.seconds) s to report", file: file, line: line)
        CLIProcess.assertNoOrphans(file: file, line: line)
    }

    func testWorkerKilledMidRun() throws {
        try assertFails(["run", "--steps", "3", "--fault", "kill:1@1"], mentioning: ["worker rank 1", "killed by SIGKILL", "stopped the other workers"])
    }

    func testWorkerThatNeverJoins() throws {
        try assertFails(["run", "--fault", "never-join:2", "--join-timeout", "5"], mentioning: ["rank 2 never joined within 5.0 s"])
    }

    func testFrozenWorkerIsDetectedBySilence() throws {
        try assertFails(["run", "--steps", "2", "--fault", "freeze:3@0", "--silence-timeout", "1.5"], mentioning: ["worker rank 3 silent", "frozen"])
    }

    /// A worker busy for longer than the silence timeout (a long computation) is not mistaken for a frozen one:
    /// its heartbeat thread keeps reporting, and the coordinator's messages that queued up are read afterwards.
    func testLongComputationIsNotAFreeze() throws {
        let r = try CLIProcess.run(["run", "--steps", "2", "--fault", "stall:2@1", "--silence-timeout", "1.5"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("measured == predicted"), r.stdout)
        XCTAssertGreaterThan(r.seconds, 4, "the stall happened")
        CLIProcess.assertNoOrphans()
    }

    func testCoordinatorEndpointInUse() throws {
        let ctx = ZContext()
        let squatter = try Socket(ctx, .pull)
        try squatter.bind("tcp://127.0.0.1:*")
        let yaml = FileManager.default.temporaryDirectory.appendingPathComponent("attnres-inuse-\(UUID().uuidString).yaml")
        defer { try? FileManager.default.removeItem(at: yaml) }
        try (Topology.embeddedDefaultYAML + "\ncoordinator: \(squatter.lastEndpoint)\n").write(to: yaml, atomically: false, encoding: .utf8)
        try assertFails(["run", yaml.path], mentioning: ["cannot bind the coordinator endpoint \(squatter.lastEndpoint)", "address already in use"])
    }

    func testWorkerDataEndpointInUse() throws {
        let ctx = ZContext()
        let squatter = try Socket(ctx, .pull)
        try squatter.bind("tcp://127.0.0.1:*")
        let port = squatter.lastEndpoint.split(separator: ":").last!
        let yaml = FileManager.default.temporaryDirectory.appendingPathComponent("attnres-inuse-\(UUID().uuidString).yaml")
        defer { try? FileManager.default.removeItem(at: yaml) }
        let text = Topology.embeddedDefaultYAML.replacingOccurrences(of: "transport: ipc", with: """
        transport:
          kind: tcp
          ranks: [{host: 127.0.0.1, port: 0}, {host: 127.0.0.1, port: \(port)}, {host: 127.0.0.1, port: 0}, {host: 127.0.0.1, port: 0}]
        """)
        try text.write(to: yaml, atomically: false, encoding: .utf8)
        try assertFails(["run", yaml.path], mentioning: ["worker rank 1 failed", "cannot bind its data endpoint tcp://127.0.0.1:\(port)", "address already in use"])
    }

    /// Starts a coordinator whose rank 3 never joins, waits (on its log, not a clock) until ranks 0–2 have
    /// joined, then signals the coordinator.
    func startStuckCluster() throws -> (Process, Pipe) {
        _ = CLIProcess.becomeSubreaper
        let p = Process()
        p.executableURL = URL(fileURLWithPath: CLIProcess.binary)
        p.arguments = ["run", "--verbose", "--fault", "never-join:3", "--join-timeout", "60"]
        let err = Pipe()
        p.standardError = err
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        let joined = Watchdog.run("ranks 0-2 joining the stuck cluster", seconds: 90, onTimeout: { kill(p.processIdentifier, SIGKILL) }) {
            var log = ""
            while !(0...2).allSatisfy({ log.contains("rank \($0) joined") }) {
                let chunk = err.fileHandleForReading.availableData
                if chunk.isEmpty { return "coordinator exited early:\n\(log)" }
                log += String(decoding: chunk, as: UTF8.self)
            }
            return ""
        }
        if let joined, !joined.isEmpty { XCTFail(joined) }
        return (p, err)
    }

    func testWorkersExitWhenTheCoordinatorIsKilled() throws {
        let (p, _) = try startStuckCluster()
        kill(p.processIdentifier, SIGKILL)
        Watchdog.waitForExit(p, "the SIGKILLed coordinator", seconds: 30)
        // The orphaned workers are now this process's children; each must notice and exit by itself.
        let watchdog = DispatchWorkItem { for pid in CLIProcess.liveChildren() { kill(pid, SIGKILL) } }
        DispatchQueue.global().asyncAfter(deadline: .now() + 10, execute: watchdog)
        var status: Int32 = 0
        var reaped = 0
        let start = Date()
        while waitpid(-1, &status, 0) > 0 { reaped += 1 }
        watchdog.cancel()
        XCTAssertEqual(reaped, 4, "four workers should have been orphaned and exited")
        XCTAssertLessThan(Date().timeIntervalSince(start), 10, "orphaned workers took too long to exit (the watchdog killed them)")
    }

    func testSigtermStopsEveryWorker() throws {
        let (p, err) = try startStuckCluster()
        kill(p.processIdentifier, SIGTERM)
        guard Watchdog.waitForExit(p, "the coordinator after SIGTERM", seconds: 30) else { return CLIProcess.assertNoOrphans() }
        // Ends when every writer of the pipe (the coordinator and the workers it started) has exited.
        let rest = Watchdog.run("reading the coordinator's stderr to its end", seconds: 30) {
            String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        } ?? ""
        XCTAssertNotEqual(p.terminationStatus, 0)
        XCTAssertTrue(rest.contains("interrupted by signal 15"), rest)
        CLIProcess.assertNoOrphans()
    }

    /// With a phase bound set, live workers that never finish a variant are an error naming the phase and the
    /// ranks still owed, not an endless wait (the stall keeps rank 2 heartbeating but busy for 4 s).
    func testPhaseTimeoutNamesThePhaseAndTheRanks() throws {
        var t = Topology()
        t.steps = 2
        let coordinator = try Coordinator(topology: t, faults: [.stall(rank: 2, step: 0)], joinTimeout: 30, silenceTimeout: 30,
                                          workerExecutable: CLIProcess.binary)
        defer { coordinator.shutdown(); CLIProcess.assertNoOrphans() }
        try coordinator.start()
        coordinator.phaseTimeout = 1
        XCTAssertThrowsError(try coordinator.run(t)) { error in
            guard case ClusterError.phaseTimedOut(let phase, _, let ranks) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(phase.hasPrefix("variant"), phase)
            XCTAssertTrue(ranks.contains(2), "\(ranks)")
            XCTAssertTrue("\(error)".contains("did not finish within 1 s"), "\(error)")
        }
    }

    /// A malformed data frame reaching a worker is a clear error naming the rank, not a crash.
    func testMalformedFrameIsRejectedByTheWorker() throws {
        var t = Topology()
        t.steps = 20  // rank 1 reads its inbox many times while the rogue frame is in flight
        try ThreadCluster.with(t) { coordinator in try sendMalformedFrame(coordinator, t) }
    }

    func sendMalformedFrame(_ coordinator: Coordinator, _ t: Topology) throws {
        let ctx = ZContext()
        let rogue = try Socket(ctx, .push)
        try rogue.setImmediate()  // the send below returns only once the connection to rank 1 is up
        try rogue.connect(coordinator.dataEndpoints[1])
        var bad = FrameHeader(kind: .forward, step: 0, microbatch: 0, hop: 0, source: 0, destination: 1, tensors: []).encode()
        bad[4] = 9  // version 9
        try rogue.send([Message(bytes: bad)])
        XCTAssertThrowsError(try coordinator.run(t)) { error in
            XCTAssertTrue("\(error)".contains("worker rank 1 failed"), "\(error)")
            XCTAssertTrue("\(error)".contains("protocol version 9, this build speaks version 2"), "\(error)")
        }
    }
}
