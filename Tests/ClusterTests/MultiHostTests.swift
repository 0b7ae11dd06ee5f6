@testable import Cluster
import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// A cluster spread over test hosts (network namespaces, `TestHosts`): `attnres coordinator` on host 0 and one
/// `attnres worker --join tcp://… --rank R` on each of hosts 1…4, over tcp between their addresses, as a user
/// starts them by hand on real machines. Then liveness across hosts: a link cut (no FIN, no RST: silence) and a
/// coordinator host that disappears. Detection times are printed for the CI log.
final class MultiHostTests: XCTestCase {
    static let ranks = 4
    static let controlPort = 5555
    static let dataPort = 6000
    /// The coordinator's `--silence-timeout` in the liveness tests (its default).
    static let silence = 3.0

    /// Hosts 0 (coordinator) … 4 (rank 3), a topology placing each rank on its own host, and a directory for it.
    struct Cluster {
        let hosts: TestHosts
        let yaml: String
        let json: String
        /// CURVE on: the key directory (`attnres keys generate`), given to every worker with `--keys`.
        let keys: String?
        var workerArgs: [String] { keys.map { ["--keys", $0] } ?? [] }
        var endpoint: String { "tcp://\(hosts.hosts[0].address):\(MultiHostTests.controlPort)" }
    }

    func makeCluster(steps: Int, mbit: Int? = nil, curve: Bool = false) throws -> Cluster {
        let hosts = try TestHosts(1 + MultiHostTests.ranks, mbit: mbit, for: self)
        let dir = URL(fileURLWithPath: hosts.directory)
        let keys = curve ? dir.appendingPathComponent("keys").path : nil
        if let keys {
            let r = try CLIProcess.run(["keys", "generate", keys, "--ranks", "\(MultiHostTests.ranks)"])
            XCTAssertEqual(r.status, 0, r.stderr)
        }
        let ranks = (1...MultiHostTests.ranks).map { "{host: \(hosts.hosts[$0].address), port: \(MultiHostTests.dataPort)}" }
        let yaml = dir.appendingPathComponent("hosts.yaml").path
        try """
        name: hosts-4
        mode: shape
        steps: \(steps)
        model: {layers: 16, hidden: 64, heads: 4, seq: 32, vocab: 256}
        residual: {kind: block, blocks: 4}
        cache: cross-stage
        pipeline: {ranks: 4, virtual: 2, schedule: interleaved-1f1b, microbatches: 8, microbatch_size: 2}
        transport: {kind: tcp, ranks: [\(ranks.joined(separator: ", "))]}
        coordinator: tcp://\(hosts.hosts[0].address):\(MultiHostTests.controlPort)
        \(curve ? "security: {curve: keys}" : "")

        """.write(toFile: yaml, atomically: false, encoding: .utf8)
        return Cluster(hosts: hosts, yaml: yaml, json: dir.appendingPathComponent("report.json").path, keys: keys)
    }

    /// How the workers are started: one `attnres worker --join … --rank R` per host by hand, or one `mpirun` on
    /// host 0 that places rank R on host R+1.
    enum Launcher { case byHand, mpirun }

    /// Starts the coordinator on host 0 and rank R's worker on host R+1; by hand, one process per worker is
    /// returned; with mpirun, the one mpirun process.
    func start(_ c: Cluster, coordinatorArgs: [String] = [], workerArgs: [String] = [],
               launcher: Launcher = .byHand) throws -> (HostProcess, [HostProcess]) {
        let coordinator = try c.hosts.start(0, ["coordinator", c.yaml, "--json", c.json, "--join-timeout", "120"] + coordinatorArgs)
        switch launcher {
        case .byHand:
            let workers = try (0..<MultiHostTests.ranks).map { r in
                try c.hosts.start(r + 1, ["worker", "--join", c.endpoint, "--rank", "\(r)"] + c.workerArgs + workerArgs)
            }
            return (coordinator, workers)
        case .mpirun:
            // OpenMPI's remote-shell agent: "AGENT HOST COMMAND…" runs COMMAND on the test host with that address.
            // The test hosts are network namespaces on one file system and one host name, so every orted would make
            // the same session directory (TMPDIR/ompi.HOSTNAME.UID/jf.JOB) and its hwloc topology file: CI saw
            // "mkdir … File exists" (orte_session_dir failed) and a SIGSEGV in hwloc_shmem_topology_write. Each host
            // gets a TMPDIR of its own, as separate machines have.
            let agent = URL(fileURLWithPath: c.hosts.directory).appendingPathComponent("netns-agent.sh").path
            let cases = c.hosts.hosts.enumerated().map { i, h in
                "  \(h.address)) ns=\(h.namespace); tmp=\(c.hosts.directory)/host-\(i)-tmp ;;"
            }.joined(separator: "\n")
            try """
            #!/bin/sh
            host=$1; shift
            case "$host" in
            \(cases)
              *) echo "netns-agent: no test host has address $host" >&2; exit 1 ;;
            esac
            mkdir -p "$tmp"
            exec \(TestHosts.ipTool) netns exec "$ns" env TMPDIR="$tmp" sh -c "$*"

            """.write(toFile: agent, atomically: false, encoding: .utf8)
            chmod(agent, 0o755)
            let workerHosts = (1...MultiHostTests.ranks).map { c.hosts.hosts[$0].address }
            let subnet = c.hosts.hosts[0].address.split(separator: ".").prefix(3).joined(separator: ".") + ".0/24"
            let command = Launch.mpirunCommand(tasks: MultiHostTests.ranks, endpoint: c.endpoint,
                                               mpirunOptions: ["--host", workerHosts.joined(separator: ","),
                                                               "--mca", "plm_rsh_agent", agent,
                                                               "--mca", "oob_tcp_if_include", subnet],
                                               workerArguments: c.workerArgs + workerArgs)
            let mpirun = try c.hosts.start(0, Array(command.dropFirst()), executable: command[0])
            return (coordinator, [mpirun])
        }
    }

    /// Waits until the coordinator has logged the first step done by every rank: the run is under way.
    func waitUntilRunning(_ coordinator: HostProcess) throws {
        try coordinator.waitForLog("step 1/", seconds: 180)
    }

    /// Runs the cluster to completion and returns its report, checked: every process exits 0, measured ==
    /// predicted on every link, the workers are the processes started on the hosts, and nothing is left.
    @discardableResult
    func runToCompletion(_ c: Cluster, coordinatorArgs: [String] = [], workerArgs: [String] = [], launcher: Launcher = .byHand,
                         othersRunning: Bool = false, file: StaticString = #filePath, line: UInt = #line) throws -> ReportJSON {
        let (coordinator, workers) = try start(c, coordinatorArgs: coordinatorArgs, workerArgs: workerArgs, launcher: launcher)
        XCTAssertEqual(coordinator.wait(seconds: 300), 0, coordinator.stderr, file: file, line: line)
        for (r, w) in workers.enumerated() { XCTAssertEqual(w.wait(seconds: 60), 0, "worker \(r): \(w.stderr)", file: file, line: line) }
        XCTAssertTrue(coordinator.stdout.contains("measured == predicted on every link"), coordinator.stdout, file: file, line: line)
        let d = JSONDecoder()
        d.keyDecodingStrategy = .convertFromSnakeCase
        let report = try d.decode(ReportJSON.self, from: Data(contentsOf: URL(fileURLWithPath: c.json)))
        XCTAssertEqual(report.runs.count, 1)
        for run in report.runs {
            guard let m = run.measured else { XCTFail("no measurement"); continue }
            XCTAssertTrue(m.matchesPredicted, "\(m.mismatches)")
            XCTAssertGreaterThan(m.links.count, 0)
            XCTAssertEqual(m.links.map(\.payloadBytes), run.predicted.links.map(\.payloadBytes))
            XCTAssertEqual(m.links.map { "\($0.src)→\($0.dst)" }, run.predicted.links.map { "\($0.src)→\($0.dst)" })
            XCTAssertEqual(m.tensorsPerHop, run.predicted.tensorsPerHop)
            XCTAssertEqual(m.peakCachedBytesPerRank, run.predicted.peakCachedBytesPerRank)
        }
        // The workers that ran are the processes started in the namespaces, and each bound its host's address.
        if launcher == .byHand { XCTAssertEqual(Set(report.workers?.map(\.pid) ?? []), Set(workers.map(\.pid))) }
        XCTAssertEqual(Set(report.workers?.map(\.pid) ?? []).count, MultiHostTests.ranks, file: file, line: line)
        for r in 0..<MultiHostTests.ranks {
            XCTAssertTrue(coordinator.stderr.contains("tcp://\(c.hosts.hosts[r + 1].address):\(MultiHostTests.dataPort)"), coordinator.stderr,
                          file: file, line: line)
        }
        if !othersRunning { c.hosts.assertNoProcessesLeft(file: file, line: line) }
        return report
    }

    func testFourHostClusterOverTCPStartedByHandMatchesPrediction() throws {
        try runToCompletion(try makeCluster(steps: 2))
    }

    /// The same cluster started by OpenMPI as on real machines: `mpirun --host ADDR1,…,ADDR4` on host 0 (beside the
    /// coordinator) reaches each worker host through its remote-shell agent — here `ip netns exec` in place of ssh
    /// (`plm_rsh_agent`) — so an `orted` runs on each host, talks back to mpirun over the hosts' links, and starts
    /// `attnres worker` there with no `--rank` or `--join`: the rank from OMPI_COMM_WORLD_RANK, the endpoint from
    /// ATTNRES_COORDINATOR. Each rank must land on the host `transport.ranks` gives it (checked: its inbox address).
    /// With CURVE on (`security: {curve: DIR}`), every control and data link authenticated and encrypted.
    func testFourHostClusterStartedByMpirunWithCurveMatchesPrediction() throws {
        guard Launch.which("mpirun") != nil else { throw XCTSkip("mpirun is not installed (make deps installs openmpi-bin)") }
        let report = try runToCompletion(try makeCluster(steps: 2, curve: true), launcher: .mpirun)
        XCTAssertEqual(report.security?.refusedConnections, 0)
    }

    /// The same CURVE cluster with each worker started by hand: `attnres worker --join … --rank R --keys DIR`.
    func testFourHostClusterStartedByHandWithCurveMatchesPrediction() throws {
        let report = try runToCompletion(try makeCluster(steps: 2, curve: true))
        XCTAssertEqual(report.security?.refusedConnections, 0)
    }

    /// A passive listener on a host's link (tcpdump inside rank 1's host, on its only interface) reads the tensors
    /// of a plain run — the first block representation rank 0 ships to rank 1, its tag 1.0f and then zeros — and
    /// none of a CURVE run, though it captured as much traffic.
    func testACaptureOnAHostLinkReadsTensorsOnlyWithoutCurve() throws {
        guard let tcpdump = TestHosts.tool("tcpdump") else {
            throw XCTSkip("tcpdump is not installed (make deps installs it)")
        }
        let tag = ShapeTensors.tag(.block(0), direction: .forward, step: 0, microbatch: 0, hop: 0)
        let pattern = withUnsafeBytes(of: tag.bitPattern.littleEndian) { Array($0) } + [UInt8](repeating: 0, count: 1020)
        var captured: [Bool: (bytes: Int, found: Bool)] = [:]
        for curve in [false, true] {
            let c = try makeCluster(steps: 1, curve: curve)
            let pcap = URL(fileURLWithPath: c.hosts.directory).appendingPathComponent("rank1.pcap").path
            let dump = try c.hosts.start(2, ["-i", c.hosts.hosts[2].interface, "-U", "-s", "0", "-w", pcap, "tcp"], executable: tcpdump)
            _ = try dump.waitForLog("listening on", seconds: 60)
            try runToCompletion(c, othersRunning: true)
            kill(dump.pid, SIGINT)
            XCTAssertNotNil(dump.wait(seconds: 30), "tcpdump did not stop")
            c.hosts.assertNoProcessesLeft()
            let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: pcap)))
            captured[curve] = (bytes.count, CurveTests.contains(bytes, pattern))
            c.hosts.down()
        }
        print("MultiHostTests: capture on rank 1's host link: plain \(captured[false]?.bytes ?? 0) B (tensor bytes found: \(captured[false]?.found ?? false)), "
              + "CURVE \(captured[true]?.bytes ?? 0) B (found: \(captured[true]?.found ?? false))")
        XCTAssertEqual(captured[false]?.found, true, "the negative control: without CURVE the tensor bytes are in the capture")
        XCTAssertEqual(captured[true]?.found, false, "with CURVE the tensor bytes must not be in the capture")
        XCTAssertGreaterThan(captured[true]?.bytes ?? 0, (captured[false]?.bytes ?? 0) / 2, "the CURVE capture saw the traffic (encrypted)")
    }

    /// The same cluster with every host link limited to 50 Mbit/s by tbf: the data went through each worker host's
    /// qdisc, and the run took at least as long as its busiest host needs to send its bytes at that rate.
    func testShapedHostLinksCarryTheRunAtTheirRate() throws {
        let mbit = 50, steps = 2
        let c = try makeCluster(steps: steps, mbit: mbit)
        let report = try runToCompletion(c)
        guard let m = report.runs.first?.measured else { return XCTFail("no measurement") }
        var sentByRank = [Int](repeating: 0, count: MultiHostTests.ranks)
        for l in m.links { sentByRank[l.src] += l.payloadBytes * steps }
        for r in 0..<MultiHostTests.ranks {
            let q = try c.hosts.run(r + 1, ["-s", "qdisc", "show", "dev", "eth0"], executable: "tc", timeout: 30)
            XCTAssertTrue(q.stdout.contains("tbf") && q.stdout.contains("rate \(mbit)Mbit"), q.stdout)
            // " Sent 2183904 bytes 1534 pkt (dropped 0, overlimits 390 requeues 0)"
            let words = q.stdout.split(whereSeparator: \.isWhitespace)
            let sent = words.firstIndex(of: "Sent").flatMap { words.index(after: $0) < words.endIndex ? Int(words[words.index(after: $0)]) : nil }
            XCTAssertGreaterThanOrEqual(sent ?? 0, sentByRank[r], "rank \(r)'s host: its qdisc passed fewer bytes than the rank sent:\n\(q.stdout)")
        }
        // tbf lets one burst (at least 64 KiB) through at once; the rest leaves at the rate at most.
        let floor = Double(sentByRank.max()! - 65_536) * 8 / (Double(mbit) * 1e6)
        print("MultiHostTests: \(mbit) Mbit/s host links: run \(String(format: "%.2f", m.seconds)) s, busiest host's bytes at that rate \(String(format: "%.2f", floor)) s")
        XCTAssertGreaterThanOrEqual(m.seconds, floor, "the run was faster than its host links allow: the rate limit is not in effect")
    }

    /// Rank 2's host loses its link mid-run: the coordinator names rank 2 within 2 × the silence timeout and stops
    /// the others; rank 2, cut off, exits by itself (its coordinator is silent); nothing is left on any host.
    func testCutLinkIsNamedByRankAndEveryProcessExits() throws {
        let c = try makeCluster(steps: 100_000)
        let (coordinator, workers) = try start(c, coordinatorArgs: ["--silence-timeout", "\(MultiHostTests.silence)"])
        try waitUntilRunning(coordinator)
        try c.hosts.cutLink(3)
        let cut = HostProcess.now()
        let status = coordinator.wait(seconds: 120)
        XCTAssertNotNil(status)
        XCTAssertNotEqual(status, 0)
        let named = coordinator.log.time(of: "worker rank 2 silent")
        XCTAssertNotNil(named, "the coordinator did not name rank 2:\n\(coordinator.stderr)")
        if let named {
            let seconds = named - cut
            print("MultiHostTests: link of rank 2's host cut → coordinator names rank 2: \(String(format: "%.2f", seconds)) s (silence timeout \(MultiHostTests.silence) s)")
            XCTAssertLessThanOrEqual(seconds, 2 * MultiHostTests.silence, "detection took longer than 2 × the silence timeout")
        }
        for (r, w) in workers.enumerated() {
            let s = w.wait(seconds: 60)
            XCTAssertNotNil(s, "rank \(r) did not exit")
            if r == 2 { XCTAssertTrue(w.stderr.contains("coordinator lost (no message from \(c.endpoint)"), "rank 2: \(w.stderr)") }
        }
        if let last = workers.compactMap(\.exitedAt).max() {
            print("MultiHostTests: link cut → last worker exit: \(String(format: "%.2f", last - cut)) s")
        }
        c.hosts.assertNoProcessesLeft()
    }

    /// The negative case of the test above: with the silence watch out of reach (a timeout of an hour) the same
    /// cut goes unnoticed for 2 × 3 s, so the detection above is the silence watch's, not a side effect.
    func testWithoutTheSilenceWatchACutLinkGoesUnnoticed() throws {
        let c = try makeCluster(steps: 100_000)
        let (coordinator, _) = try start(c, coordinatorArgs: ["--silence-timeout", "3600"])
        try waitUntilRunning(coordinator)
        try c.hosts.cutLink(3)
        XCTAssertThrowsError(try coordinator.waitForLog("silent", seconds: 2 * MultiHostTests.silence))
        XCTAssertNil(coordinator.exitedAt, "the coordinator stopped: \(coordinator.stderr)")
        // Teardown (TestHosts.down) stops the run.
    }

    /// A firewall on rank 1's host drops its data port (control still flows, so every process heartbeats): the
    /// link probe cannot finish, and `--setup-timeout` ends the run naming the phase, instead of a cluster that
    /// waits for ever. Every worker exits; nothing is left. Without the limit (`--setup-timeout 0`) the same
    /// cluster is still waiting after 3 × the limit used above: the deadline is what ends it.
    func testADataPortDroppedByAFirewallFailsTheLinkProbe() throws {
        guard let iptables = TestHosts.tool("iptables") else { throw XCTSkip("iptables is not installed (make deps installs it)") }
        for limit in ["5", "0"] {
            let c = try makeCluster(steps: 2)
            let rule = try c.hosts.run(2, ["-A", "INPUT", "-p", "tcp", "--dport", "\(MultiHostTests.dataPort)", "-j", "DROP"],
                                       executable: iptables, timeout: 30)
            XCTAssertEqual(rule.status, 0, rule.stderr)
            let (coordinator, workers) = try start(c, coordinatorArgs: ["--setup-timeout", limit])
            if limit == "0" {
                XCTAssertThrowsError(try coordinator.waitForLog("link probe", seconds: 15))
                XCTAssertNil(coordinator.exitedAt, "the coordinator stopped without a setup limit: \(coordinator.stderr)")
                c.hosts.down()
                continue
            }
            let status = coordinator.wait(seconds: 120)
            XCTAssertNotNil(status, "the coordinator did not stop")
            XCTAssertNotEqual(status, 0)
            XCTAssertTrue(coordinator.stderr.contains("link probe"), coordinator.stderr)
            for (r, w) in workers.enumerated() { XCTAssertNotNil(w.wait(seconds: 60), "rank \(r) did not exit") }
            c.hosts.assertNoProcessesLeft()
            c.hosts.down()
        }
    }

    func testCoordinatorHostCutOffMakesEveryWorkerExit() throws {
        try assertWorkersExitWhenCoordinatorGoes("coordinator's host cut off") { c, _ in try c.hosts.cutLink(0) }
    }

    func testCoordinatorKilledMakesEveryWorkerExit() throws {
        try assertWorkersExitWhenCoordinatorGoes("coordinator SIGKILLed") { _, coordinator in
            XCTAssertEqual(kill(coordinator.pid, SIGKILL), 0)
        }
    }

    /// Runs the cluster, makes the coordinator go (`how`) once a step is done, and checks that every worker exits
    /// by itself, non-zero, naming the coordinator's endpoint; prints the time to the last exit.
    func assertWorkersExitWhenCoordinatorGoes(_ what: String, file: StaticString = #filePath, line: UInt = #line,
                                              _ how: (Cluster, HostProcess) throws -> Void) throws {
        let c = try makeCluster(steps: 100_000)
        let (coordinator, workers) = try start(c)
        try waitUntilRunning(coordinator)
        try how(c, coordinator)
        let gone = HostProcess.now()
        for (r, w) in workers.enumerated() {
            let status = w.wait(seconds: 60, file: file, line: line)
            XCTAssertNotNil(status, "rank \(r) did not exit by itself", file: file, line: line)
            XCTAssertNotEqual(status, 0, "rank \(r)", file: file, line: line)
            XCTAssertTrue(w.stderr.contains("worker rank \(r): coordinator lost (no message from \(c.endpoint) for"),
                          "rank \(r): \(w.stderr)", file: file, line: line)
        }
        if let last = workers.compactMap(\.exitedAt).max() {
            print("MultiHostTests: \(what) → last worker exit: \(String(format: "%.2f", last - gone)) s")
            XCTAssertLessThan(last - gone, 30, "workers took too long to notice", file: file, line: line)
        }
        XCTAssertNotNil(coordinator.wait(seconds: 60, file: file, line: line), "the coordinator did not exit", file: file, line: line)
        c.hosts.assertNoProcessesLeft(file: file, line: line)
    }
}
