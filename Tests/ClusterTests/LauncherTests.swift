import Foundation
import XCTest
@testable import Cluster
#if canImport(Glibc)
import Glibc
#endif

/// Cluster launchers start the workers, as on a real cluster: `attnres coordinator` waits on loopback tcp, and
/// OpenMPI's `mpirun` or SLURM's `srun` / `sbatch` start `attnres worker` with no `--rank` and no `--join`: each
/// worker reads its rank, the launcher's world size and the endpoint from its environment (`LaunchEnvironment`).
/// A launch of the wrong size is refused on both sides, naming the variable. The binaries come from Debian's
/// openmpi-bin, slurm-wlm and munge (`make deps`); without them the tests skip, saying so.
enum Launch {
    /// A small shape-mode run over tcp on 127.0.0.1: four ranks, 1F1B, block AttnRes with the cross-stage cache.
    static let ranks = 4
    static let topologyYAML = """
        name: launcher-4
        mode: shape
        seed: 1
        steps: 2
        model: {layers: 8, hidden: 16, heads: 2, seq: 8, vocab: 64}
        residual: {kind: block, blocks: 4}
        cache: cross-stage
        pipeline: {ranks: 4, virtual: 1, schedule: 1f1b, microbatches: 4, microbatch_size: 1}
        transport: tcp

        """

    /// `mpirun` starting `tasks` workers that join `endpoint`, run under `prefix` (empty here; `["ip", "netns",
    /// "exec", NS]` to start them in a test host's namespace). As root OpenMPI wants `--allow-run-as-root`;
    /// `--oversubscribe` lets P tasks run on fewer cores; `-x` puts the endpoint in every task's environment.
    /// `mpirunOptions` go before the program (`--host a,b,c,d`, `--mca plm_rsh_agent AGENT` to place tasks).
    static func mpirunCommand(prefix: [String] = [], tasks: Int, endpoint: String, binary: String = CLIProcess.binary,
                              mpirunOptions: [String] = [], workerArguments: [String] = []) -> [String] {
        prefix + ["mpirun", "-n", "\(tasks)", "--oversubscribe", "--bind-to", "none"]
            + (getuid() == 0 ? ["--allow-run-as-root"] : []) + mpirunOptions
            + ["-x", "\(LaunchEnvironment.endpointVariable)=\(endpoint)", binary, "worker"] + workerArguments
    }

    /// The full path of `tool` on PATH, nil when it is not installed.
    static func which(_ tool: String) -> String? {
        for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
            let p = "\(dir)/\(tool)"
            if FileManager.default.isExecutableFile(atPath: p) { return p }
        }
        return nil
    }

    /// A fresh directory holding the topology file; removed by the caller.
    static func workDirectory() throws -> (dir: URL, topology: String) {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("attnres-launch-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let topology = dir.appendingPathComponent("launcher-4.yaml")
        try topologyYAML.write(to: topology, atomically: false, encoding: .utf8)
        return (dir, topology.path)
    }

    /// Checks the coordinator's `--json` report: one run, measured == predicted on every link, one process per rank.
    static func assertMeasuredEqualsPredicted(_ json: URL, file: StaticString = #filePath, line: UInt = #line) throws {
        let d = JSONDecoder()
        d.keyDecodingStrategy = .convertFromSnakeCase
        let report = try d.decode(ReportJSON.self, from: Data(contentsOf: json))
        XCTAssertEqual(report.runs.count, 1, file: file, line: line)
        XCTAssertEqual(Set(report.workers?.map(\.pid) ?? []).count, ranks, "one OS process per rank", file: file, line: line)
        for run in report.runs {
            guard let m = run.measured else { XCTFail("no measurement", file: file, line: line); continue }
            XCTAssertTrue(m.matchesPredicted, "\(m.mismatches)", file: file, line: line)
            XCTAssertGreaterThan(m.payloadBytesPerStep, 0, file: file, line: line)
            XCTAssertEqual(m.payloadBytesPerStep, run.predicted.payloadBytesPerStep, file: file, line: line)
            XCTAssertEqual(m.links.map(\.payloadBytes), run.predicted.links.map(\.payloadBytes), file: file, line: line)
        }
    }

    /// Pids of live processes whose command line or environment holds `ATTNRES_COORDINATOR=ENDPOINT` (a run's
    /// unique endpoint): what a launcher started for that run and left behind, wherever in the process tree
    /// (slurmstepd's children are not ours). Waits up to `seconds` for them to go, since a launcher may return
    /// while its tasks are still being reaped.
    static func leftBehind(endpoint: String, within seconds: Double = 20) -> [Int32] {
        // Both files hold NUL-terminated strings: the NUL keeps port 4123 from matching 41234.
        let needle = Data("\(LaunchEnvironment.endpointVariable)=\(endpoint)\0".utf8)
        let me = getpid()
        func scan() -> [Int32] {
            ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap { entry -> Int32? in
                guard let pid = Int32(entry), pid != me else { return nil }
                for f in ["cmdline", "environ"] {
                    guard let data = FileManager.default.contents(atPath: "/proc/\(entry)/\(f)") else { continue }
                    if data.range(of: needle) != nil { return pid }
                }
                return nil
            }
        }
        let deadline = Date().addingTimeInterval(seconds)
        var left = scan()
        while !left.isEmpty, Date() < deadline {
            _ = CLIProcess.liveChildren()  // reaps our own exited orphans
            usleep(100_000)
            left = scan()
        }
        return left
    }
}

/// `attnres coordinator TOPOLOGY` as a child process, with the endpoint it bound read from its standard output
/// as soon as it prints it (the coordinator flushes that line): no port is guessed, no sleep waits for it.
final class CoordinatorProcess {
    let process = Process()
    private let output = Pipe()
    private let errorFile: URL
    private let lock = NSLock()
    private var text = ""
    private var ended = false
    private let grew = DispatchSemaphore(value: 0)
    private let reader = DispatchSemaphore(value: 0)

    init(topology: String, arguments: [String], directory: URL) throws {
        _ = CLIProcess.becomeSubreaper
        errorFile = directory.appendingPathComponent("coordinator.err")
        _ = FileManager.default.createFile(atPath: errorFile.path, contents: nil)
        process.executableURL = URL(fileURLWithPath: CLIProcess.binary)
        process.arguments = ["coordinator", topology] + arguments
        process.standardOutput = output
        process.standardError = try FileHandle(forWritingTo: errorFile)
        try process.run()
        let handle = output.fileHandleForReading
        Thread { [self] in
            while true {
                let chunk = handle.availableData
                lock.lock()
                if chunk.isEmpty { ended = true } else { text += String(decoding: chunk, as: UTF8.self) }
                let done = ended
                lock.unlock()
                grew.signal()
                if done { break }
            }
            reader.signal()
        }.start()
    }

    /// The endpoint from `waiting for P workers: attnres worker --join ENDPOINT --rank R`, within `seconds`.
    func endpoint(within seconds: Double) -> String? {
        let deadline = DispatchTime.now() + seconds
        while true {
            lock.lock()
            let (now, done) = (text, ended)
            lock.unlock()
            if let line = now.split(separator: "\n").first(where: { $0.hasPrefix("waiting for") }),
               let range = line.range(of: "--join ") {
                return String(line[range.upperBound...].prefix { $0 != " " })
            }
            if done || grew.wait(timeout: deadline) == .timedOut { return nil }
        }
    }

    /// Waits for the coordinator to exit (killed, and the test failed, after `seconds`): status, stdout, stderr.
    func finish(within seconds: Double = 120, file: StaticString = #filePath, line: UInt = #line) -> (status: Int32, stdout: String, stderr: String)? {
        guard Watchdog.waitForExit(process, "attnres coordinator", seconds: seconds, file: file, line: line) else { return nil }
        _ = reader.wait(timeout: .now() + 10)
        lock.lock()
        defer { lock.unlock() }
        return (process.terminationStatus, text, (try? String(contentsOf: errorFile, encoding: .utf8)) ?? "")
    }

    /// Stops it if it still runs (a failed test's exit path).
    func stop() {
        if process.isRunning { kill(process.processIdentifier, SIGKILL); process.waitUntilExit() }
    }
}

final class LauncherTests: XCTestCase {
    func requireMpirun() throws {
        guard Launch.which("mpirun") != nil else {
            throw XCTSkip("mpirun not found: `make deps` installs Debian's openmpi-bin")
        }
    }

    /// `mpirun -n P attnres worker`: every rank from OMPI_COMM_WORLD_RANK, the world size checked, measured ==
    /// predicted, no process left.
    func testMpirunStartsEveryRank() throws {
        try requireMpirun()
        let (dir, topology) = try Launch.workDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let json = dir.appendingPathComponent("report.json")
        let coordinator = try CoordinatorProcess(topology: topology, arguments: ["--join-timeout", "120", "--json", json.path], directory: dir)
        defer { coordinator.stop() }
        let endpoint = try XCTUnwrap(coordinator.endpoint(within: 60), "the coordinator printed no endpoint")
        XCTAssertTrue(endpoint.hasPrefix("tcp://127.0.0.1:"), endpoint)
        let mpirun = try CLIProcess.run(Launch.mpirunCommand(tasks: Launch.ranks, endpoint: endpoint), executable: "/usr/bin/env", timeout: 180)
        XCTAssertEqual(mpirun.status, 0, "mpirun:\n\(mpirun.stdout)\n\(mpirun.stderr)")
        let c = try XCTUnwrap(coordinator.finish())
        XCTAssertEqual(c.status, 0, "coordinator:\n\(c.stdout)\n\(c.stderr)")
        XCTAssertTrue(c.stdout.contains("measured == predicted on every link"), c.stdout)
        for r in 0..<Launch.ranks { XCTAssertTrue(c.stderr.contains("rank \(r) joined"), c.stderr) }
        try Launch.assertMeasuredEqualsPredicted(json)
        XCTAssertEqual(Launch.leftBehind(endpoint: endpoint), [], "processes of this run left behind")
        CLIProcess.assertNoOrphans()
    }

    /// `mpirun -n P+1`: each worker that reaches the coordinator is refused naming OMPI_COMM_WORLD_SIZE, the
    /// coordinator fails naming it too, and mpirun's exit status is non-zero.
    func testMpirunWithTheWrongWorldSizeIsAClearError() throws {
        try requireMpirun()
        let (dir, topology) = try Launch.workDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let coordinator = try CoordinatorProcess(topology: topology, arguments: ["--join-timeout", "60"], directory: dir)
        defer { coordinator.stop() }
        let endpoint = try XCTUnwrap(coordinator.endpoint(within: 60), "the coordinator printed no endpoint")
        let mpirun = try CLIProcess.run(Launch.mpirunCommand(tasks: Launch.ranks + 1, endpoint: endpoint), executable: "/usr/bin/env", timeout: 180)
        XCTAssertNotEqual(mpirun.status, 0, "mpirun -n \(Launch.ranks + 1) succeeded:\n\(mpirun.stdout)\n\(mpirun.stderr)")
        let says = "was started by a launcher with world size 5 (OMPI_COMM_WORLD_SIZE=5), but the topology has 4 ranks (pipeline.ranks)"
        XCTAssertTrue(mpirun.stderr.contains("the coordinator refused to let it join: rank "), mpirun.stderr)
        XCTAssertTrue(mpirun.stderr.contains(says), mpirun.stderr)
        let c = try XCTUnwrap(coordinator.finish())
        XCTAssertNotEqual(c.status, 0)
        XCTAssertTrue(c.stderr.contains("was refused: rank "), c.stderr)
        XCTAssertTrue(c.stderr.contains(says), c.stderr)
        XCTAssertFalse(c.stderr.contains("never joined"), "the coordinator waited out its join time instead of naming the world size:\n\(c.stderr)")
        XCTAssertEqual(Launch.leftBehind(endpoint: endpoint), [], "processes of this run left behind")
        CLIProcess.assertNoOrphans()
    }

    /// torchrun's variables (RANK, WORLD_SIZE) on workers started one by one, as torchrun-style launchers (and
    /// Kubernetes job controllers) do; torchrun itself needs PyTorch, so the environment is what is tested.
    func testTorchrunStyleEnvironment() throws {
        let (dir, topology) = try Launch.workDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let json = dir.appendingPathComponent("report.json")
        let coordinator = try CoordinatorProcess(topology: topology, arguments: ["--join-timeout", "120", "--json", json.path], directory: dir)
        defer { coordinator.stop() }
        let endpoint = try XCTUnwrap(coordinator.endpoint(within: 60), "the coordinator printed no endpoint")
        let workers = try (0..<Launch.ranks).map { r -> Process in
            let p = Process()
            p.executableURL = URL(fileURLWithPath: CLIProcess.binary)
            p.arguments = ["worker"]
            p.environment = ProcessInfo.processInfo.environment.merging(
                ["RANK": "\(r)", "WORLD_SIZE": "\(Launch.ranks)", LaunchEnvironment.endpointVariable: endpoint]) { $1 }
            p.standardOutput = FileHandle.nullDevice
            p.standardError = FileHandle.nullDevice
            try p.run()
            return p
        }
        defer { for p in workers where p.isRunning { kill(p.processIdentifier, SIGKILL) } }
        let c = try XCTUnwrap(coordinator.finish())
        XCTAssertEqual(c.status, 0, "coordinator:\n\(c.stdout)\n\(c.stderr)")
        for (r, p) in workers.enumerated() {
            guard Watchdog.waitForExit(p, "worker RANK=\(r)", seconds: 60) else { continue }
            XCTAssertEqual(p.terminationStatus, 0, "worker RANK=\(r)")
        }
        try Launch.assertMeasuredEqualsPredicted(json)
        CLIProcess.assertNoOrphans()
    }

    /// The same workers without a launcher, rank or endpoint: a clear error listing what was tried, before any
    /// socket is opened.
    func testWorkerWithoutLauncherNamesWhatItTried() throws {
        let scrubbed = Dictionary(uniqueKeysWithValues: (LaunchEnvironment.launchers.flatMap { [$0.rankVariable, $0.sizeVariable] }
                                                         + [LaunchEnvironment.endpointVariable]).map { ($0, "") })
        let noEndpoint = try CLIProcess.run(["worker"], timeout: 60, environment: scrubbed)
        XCTAssertNotEqual(noEndpoint.status, 0)
        XCTAssertTrue(noEndpoint.stderr.contains("no coordinator endpoint: pass --join ENDPOINT or set ATTNRES_COORDINATOR"), noEndpoint.stderr)
        var env = scrubbed
        env[LaunchEnvironment.endpointVariable] = "tcp://127.0.0.1:9"
        let noRank = try CLIProcess.run(["worker"], timeout: 60, environment: env)
        XCTAssertNotEqual(noRank.status, 0)
        XCTAssertTrue(noRank.stderr.contains("tried SLURM_PROCID, OMPI_COMM_WORLD_RANK, PMI_RANK, RANK"), noRank.stderr)
        env["SLURM_PROCID"] = "0"
        env["OMPI_COMM_WORLD_RANK"] = "2"
        let nested = try CLIProcess.run(["worker"], timeout: 60, environment: env)
        XCTAssertNotEqual(nested.status, 0)
        XCTAssertTrue(nested.stderr.contains("SLURM_PROCID=0 but OMPI_COMM_WORLD_RANK=2"), nested.stderr)
        CLIProcess.assertNoOrphans()
    }
}

/// SLURM on this machine: scripts/slurm-local.sh starts munged, slurmctld and slurmd for one local node (once for
/// the class), `srun` and an `sbatch` job start the workers, and `down` stops the daemons on every exit path.
final class SlurmLauncherTests: XCTestCase {
    nonisolated(unsafe) static var cluster: URL?
    nonisolated(unsafe) static var unavailable: String?
    nonisolated(unsafe) static var failed: String?
    static let script = packageRoot.appendingPathComponent("scripts/slurm-local.sh").path

    override class func setUp() {
        super.setUp()
        guard getuid() == 0 else { unavailable = "SLURM's daemons need root (SlurmUser=root); run as root, as CI does"; return }
        let missing = ["munged", "mungekey", "slurmctld", "slurmd", "srun", "sbatch", "sinfo"].filter { Launch.which($0) == nil }
        guard missing.isEmpty else {
            unavailable = "\(missing.joined(separator: ", ")) not found: `make deps` installs Debian's slurm-wlm and munge"
            return
        }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("attnres-slurm-\(UUID().uuidString.prefix(8))")
        guard let up = try? CLIProcess.run([script, "up", dir.path, "16"], executable: "/usr/bin/env", timeout: 120) else {
            failed = "scripts/slurm-local.sh up did not finish"
            return
        }
        guard up.status == 0 else {
            failed = "scripts/slurm-local.sh up failed (\(up.status)):\n\(up.stdout)\n\(up.stderr)"
            return
        }
        cluster = dir
    }

    override class func tearDown() {
        if let dir = cluster {
            let down = try? CLIProcess.run([script, "down", dir.path], executable: "/usr/bin/env", timeout: 120)
            if down?.status != 0 { print("scripts/slurm-local.sh down \(dir.path) failed: \(down?.stderr ?? "did not finish")") }
            cluster = nil
            _ = CLIProcess.liveChildren()  // reaps the stopped daemons, our children since they were orphaned
        }
        super.tearDown()
    }

    /// The cluster's slurm.conf, or a skip / failure saying why there is none.
    func slurmConf() throws -> String {
        if let why = SlurmLauncherTests.unavailable { throw XCTSkip(why) }
        if let why = SlurmLauncherTests.failed { XCTFail(why); throw XCTSkip("no SLURM cluster") }
        return try XCTUnwrap(SlurmLauncherTests.cluster).appendingPathComponent("slurm.conf").path
    }

    /// `srun -n P attnres worker`: ranks from SLURM_PROCID, SLURM_NTASKS checked, measured == predicted; with
    /// `-n P+1` every worker is refused naming SLURM_NTASKS and srun fails.
    func testSrunStartsEveryRankAndRefusesTheWrongSize() throws {
        let conf = try slurmConf()
        let (dir, topology) = try Launch.workDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        for tasks in [Launch.ranks, Launch.ranks + 1] {
            let json = dir.appendingPathComponent("report-\(tasks).json")
            let coordinator = try CoordinatorProcess(topology: topology, arguments: ["--join-timeout", "120", "--json", json.path], directory: dir)
            defer { coordinator.stop() }
            let endpoint = try XCTUnwrap(coordinator.endpoint(within: 60), "the coordinator printed no endpoint")
            let srun = try CLIProcess.run(["srun", "-n", "\(tasks)", "--kill-on-bad-exit=1", CLIProcess.binary, "worker"], executable: "/usr/bin/env",
                                          timeout: 180, environment: ["SLURM_CONF": conf, LaunchEnvironment.endpointVariable: endpoint])
            let c = try XCTUnwrap(coordinator.finish())
            if tasks == Launch.ranks {
                XCTAssertEqual(srun.status, 0, "srun:\n\(srun.stdout)\n\(srun.stderr)")
                XCTAssertEqual(c.status, 0, "coordinator:\n\(c.stdout)\n\(c.stderr)")
                XCTAssertTrue(c.stdout.contains("measured == predicted on every link"), c.stdout)
                try Launch.assertMeasuredEqualsPredicted(json)
            } else {
                let says = "world size 5 (SLURM_NTASKS=5), but the topology has 4 ranks (pipeline.ranks)"
                XCTAssertNotEqual(srun.status, 0, "srun -n \(tasks) succeeded")
                XCTAssertTrue(srun.stderr.contains(says), srun.stderr)
                XCTAssertNotEqual(c.status, 0)
                XCTAssertTrue(c.stderr.contains(says), c.stderr)
                XCTAssertFalse(FileManager.default.fileExists(atPath: json.path), "a report for a refused launch")
            }
            XCTAssertEqual(Launch.leftBehind(endpoint: endpoint), [], "processes of the \(tasks)-task launch left behind")
        }
    }

    /// scripts/attnres.sbatch as one job: the coordinator on the batch host, srun workers, `sbatch --wait` returns
    /// the coordinator's status; measured == predicted.
    func testSbatchRunsAWholeRun() throws {
        let conf = try slurmConf()
        let (dir, topology) = try Launch.workDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let json = dir.appendingPathComponent("report.json")
        let out = dir.appendingPathComponent("job.out")
        let sbatch = try CLIProcess.run(["sbatch", "--wait", "--ntasks=\(Launch.ranks)", "--output=\(out.path)",
                                         packageRoot.appendingPathComponent("scripts/attnres.sbatch").path, topology,
                                         "--join-timeout", "120", "--json", json.path],
                                        executable: "/usr/bin/env", timeout: 300,
                                        environment: ["SLURM_CONF": conf, "ATTNRES_BIN": CLIProcess.binary])
        let log = (try? String(contentsOf: out, encoding: .utf8)) ?? "(no job output)"
        XCTAssertEqual(sbatch.status, 0, "sbatch:\n\(sbatch.stdout)\n\(sbatch.stderr)\njob output:\n\(log)")
        XCTAssertTrue(log.contains("measured == predicted on every link"), log)
        XCTAssertTrue(log.contains("\(Launch.ranks) tasks, coordinator tcp://127.0.0.1:"), log)
        try Launch.assertMeasuredEqualsPredicted(json)
        if let endpoint = log.split(separator: "\n").first(where: { $0.contains("coordinator tcp://") })?.split(separator: " ").last {
            XCTAssertEqual(Launch.leftBehind(endpoint: String(endpoint)), [], "processes of the job left behind")
        }
    }
}
