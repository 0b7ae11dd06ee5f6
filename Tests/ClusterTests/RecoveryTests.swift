import Foundation
import XCTest
@testable import Cluster
@testable import Model
#if canImport(Glibc)
import Glibc
#endif

/// How a recovery test starts `attnres` and reaches one of its workers. The test bodies below only use this, so
/// the same bodies can run a cluster on test hosts (network namespaces) by passing another launch.
struct RecoveryLaunch {
    /// A name for failure messages.
    var name: String
    /// Extra arguments of every run (the transport, say).
    var runArguments: [String]
    /// Extra arguments of a run a worker dies in: how long the coordinator waits on a silent worker (a frozen
    /// worker must stay frozen until the test kills it; a worker that is not the coordinator's child is only
    /// noticed dead by its silence).
    var failureArguments: [String]
    /// Whether the coordinator sees the worker's exit status (it is its child), so its error names the signal.
    var namesSignal: Bool
    /// Starts `attnres ARGS` without waiting for it.
    var start: ([String]) throws -> LaunchedCLI
    /// The pid of the worker process of `rank` of a started run, nil while it has none.
    var workerPid: (LaunchedCLI, Int) -> pid_t?

    /// Every process on this host: `attnres run` spawns its workers as its own children.
    static func local(transport: String) -> RecoveryLaunch {
        RecoveryLaunch(name: "local \(transport)", runArguments: ["--transport", transport],
                       failureArguments: ["--silence-timeout", "600"], namesSignal: true,
                       start: { try LaunchedCLI(args: $0) },
                       workerPid: { run, rank in LaunchedCLI.children(of: run.process.processIdentifier).first { pid in
                           let args = LaunchedCLI.commandLine(pid)
                           return args.contains("worker") && zip(args, args.dropFirst()).contains { $0 == "--rank" && $1 == String(rank) }
                       } })
    }
}

extension RecoveryLaunch {
    /// `attnres coordinator` and one `attnres worker` per rank started by the test, as a user starts them on
    /// other hosts (over tcp on loopback here). A `run ARGS` becomes `coordinator ARGS`; its `--fault`s go to
    /// the workers as well (each acts on its own rank's).
    static func handStarted() -> RecoveryLaunch {
        RecoveryLaunch(name: "coordinator + hand-started workers, tcp", runArguments: ["--transport", "tcp"],
                       failureArguments: ["--silence-timeout", "5"], namesSignal: false,
                       start: startByHand, workerPid: { run, rank in run.workers[rank]?.process.processIdentifier })
    }

    /// The same on test hosts (network namespaces, `TestHosts`): the coordinator on host 0 and rank R's worker on
    /// host R+1, over tcp between their addresses (`topology` places them); the checkpoint directory is shared, as
    /// a cluster's shared file system is.
    static func onTestHosts(_ hosts: TestHosts, topology: String) -> RecoveryLaunch {
        RecoveryLaunch(name: "test hosts, tcp", runArguments: [], failureArguments: ["--silence-timeout", "5"], namesSignal: false,
                       start: { try startByHand($0, topology: topology, hosts: hosts) },
                       workerPid: { run, rank in run.workers[rank]?.process.processIdentifier })
    }

    private static func startByHand(_ args: [String]) throws -> LaunchedCLI { try startByHand(args, topology: nil, hosts: nil) }

    private static func startByHand(_ args: [String], topology: String?, hosts: TestHosts?) throws -> LaunchedCLI {
        guard args.first == "run" else { return try LaunchedCLI(args: args) }
        let coordinator = try LaunchedCLI(args: ["coordinator"] + (topology.map { [$0] } ?? []) + args.dropFirst(),
                                          namespace: hosts?.hosts[0].namespace)
        let pairs = Array(zip(args, args.dropFirst()))
        let faults: [String] = pairs.filter { $0.0 == "--fault" }.flatMap { ["--fault", $0.1] }
        let ranks: Int = pairs.last { $0.0 == "--ranks" }.flatMap { Int($0.1) } ?? 4
        // The coordinator logs its endpoint to standard error (unbuffered) once it is bound.
        var endpoint: String?
        let deadline = Date().addingTimeInterval(120)
        while endpoint == nil, Date() < deadline, coordinator.process.isRunning {
            let after = coordinator.stderrSoFar.components(separatedBy: "coordinator listening on ").dropFirst().first
            endpoint = after?.split(whereSeparator: { $0.isWhitespace }).first.map(String.init)
            if endpoint == nil { usleep(20_000) }
        }
        guard let endpoint else { return coordinator }  // exited or silent: finish() reports it
        for r in 0..<ranks {
            coordinator.workers[r] = try LaunchedCLI(args: ["worker", "--join", endpoint, "--rank", String(r)] + faults,
                                                     namespace: hosts?.hosts[r + 1].namespace)
        }
        return coordinator
    }
}

/// An `attnres` child process started in the background, its output in files until it is waited for.
final class LaunchedCLI {
    let process = Process()
    let directory: URL
    let args: [String]
    /// Worker processes started beside it (hand-started workers of a coordinator), by rank.
    var workers: [Int: LaunchedCLI] = [:]

    var stderrSoFar: String { (try? String(contentsOf: directory.appendingPathComponent("err"), encoding: .utf8)) ?? "" }

    /// `attnres ARGS`, or inside test host namespace `namespace` (`ip netns exec NS attnres ARGS`, which execs: the
    /// process is attnres itself).
    init(args: [String], namespace: String? = nil) throws {
        _ = CLIProcess.becomeSubreaper
        self.args = args
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("attnres-launch-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let out = directory.appendingPathComponent("out"), err = directory.appendingPathComponent("err")
        _ = FileManager.default.createFile(atPath: out.path, contents: nil)
        _ = FileManager.default.createFile(atPath: err.path, contents: nil)
        if let namespace {
            process.executableURL = URL(fileURLWithPath: TestHosts.ipTool)
            process.arguments = ["netns", "exec", namespace, CLIProcess.binary] + args
        } else {
            process.executableURL = URL(fileURLWithPath: CLIProcess.binary)
            process.arguments = args
        }
        process.standardOutput = try FileHandle(forWritingTo: out)
        process.standardError = try FileHandle(forWritingTo: err)
        try process.run()
    }

    deinit {
        if process.isRunning { kill(process.processIdentifier, SIGKILL); process.waitUntilExit() }
        try? FileManager.default.removeItem(at: directory)
    }

    /// Waits for the exit (bounded; killed and failed past `timeout`).
    func finish(timeout: Double = 300, file: StaticString = #filePath, line: UInt = #line) throws -> CLIProcess.Result {
        guard Watchdog.waitForExit(process, "attnres \(args.joined(separator: " "))", seconds: timeout, file: file, line: line) else {
            throw CocoaError(.executableLoad)
        }
        // Workers exit by themselves once their coordinator is gone (or told them to).
        var workerErrors = ""
        for (r, w) in workers.sorted(by: { $0.key < $1.key }) {
            _ = try w.finish(timeout: 120, file: file, line: line)
            workerErrors += w.stderrSoFar.isEmpty ? "" : "\n[worker \(r)] " + w.stderrSoFar
        }
        return CLIProcess.Result(status: process.terminationStatus,
                                 stdout: try String(contentsOf: directory.appendingPathComponent("out"), encoding: .utf8),
                                 stderr: stderrSoFar + workerErrors, seconds: 0)
    }

    /// (state, ppid) of `pid` from /proc, nil when it is gone.
    static func stat(_ pid: pid_t) -> (state: String, ppid: pid_t)? {
        guard let s = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), let close = s.lastIndex(of: ")") else { return nil }
        let fields = s[s.index(after: close)...].split(separator: " ")
        guard fields.count > 2, let ppid = pid_t(fields[1]) else { return nil }
        return (String(fields[0]), ppid)
    }

    static func children(of parent: pid_t) -> [pid_t] {
        ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap(pid_t.init).filter { stat($0)?.ppid == parent }
    }

    static func commandLine(_ pid: pid_t) -> [String] {
        guard let d = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return [] }
        return d.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
    }
}

final class RecoveryTests: XCTestCase {
    let model = ["--mode", "compute", "--layers", "7", "--blocks", "3", "--hidden", "16", "--heads", "2", "--seq", "8",
                 "--vocab", "64", "--ranks", "2", "--virtual", "2", "--microbatches", "4", "--microbatch-size", "2", "--seed", "3"]
    /// Steps of the uninterrupted run, and the checkpoint period.
    let steps = 8, every = 2

    var scratch: URL!

    override func setUpWithError() throws {
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent("attnres-recovery-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
    }

    override func tearDown() {
        try? FileManager.default.removeItem(at: scratch)
        CLIProcess.assertNoOrphans()
    }

    struct Losses: Decodable { var losses: [Float]; var firstStep: Int? }

    /// Runs `attnres ARGS --json F` to completion through `launch`, requiring success; returns the report's losses.
    func completed(_ launch: RecoveryLaunch, _ args: [String], file: StaticString = #filePath, line: UInt = #line) throws -> Losses {
        let json = scratch.appendingPathComponent("\(UUID().uuidString).json")
        let r = try launch.start(args + launch.runArguments + ["--json", json.path]).finish(file: file, line: line)
        XCTAssertEqual(r.status, 0, "\(launch.name): attnres \(args.joined(separator: " "))\n\(r.stderr)", file: file, line: line)
        let d = JSONDecoder()
        d.keyDecodingStrategy = .convertFromSnakeCase
        return try d.decode(Losses.self, from: Data(contentsOf: json))
    }

    /// `attnres merge DIR` into a file; its bytes.
    func merged(_ launch: RecoveryLaunch, _ dir: String, file: StaticString = #filePath, line: UInt = #line) throws -> [UInt8] {
        let out = scratch.appendingPathComponent("\(UUID().uuidString).safetensors")
        let r = try launch.start(["merge", dir, out.path]).finish(file: file, line: line)
        XCTAssertEqual(r.status, 0, "merge \(dir): \(r.stderr)", file: file, line: line)
        return try InputFile.bytes(out.path)
    }

    /// The uninterrupted run: its losses and its merged parameters.
    func reference(_ launch: RecoveryLaunch) throws -> (losses: [Float], parameters: [UInt8]) {
        let ck = scratch.appendingPathComponent("reference").path
        let l = try completed(launch, ["run", "--steps", String(steps), "--save", ck] + model)
        XCTAssertEqual(l.losses.count, steps)
        return (l.losses, try merged(launch, ck))
    }

    /// Waits up to `seconds` for `condition`, polling (the events are files and process states of other processes).
    func waitUntil(_ what: String, seconds: Double = 180, _ condition: () -> Bool, file: StaticString = #filePath, line: UInt = #line) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while !condition() {
            if Date() > deadline { XCTFail("\(what): not within \(Int(seconds)) s", file: file, line: line); return false }
            usleep(20_000)
        }
        return true
    }

    func latest(_ ck: String) -> String? {
        (try? String(contentsOfFile: "\(ck)/latest", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Resumes from `ck` to the reference's total steps, checkpointing on into `ck`, and checks the losses and the
    /// merged parameters are bit-equal to the uninterrupted run's.
    func assertResumeMatches(_ launch: RecoveryLaunch, _ ck: String, from done: Int, reference: (losses: [Float], parameters: [UInt8]),
                             file: StaticString = #filePath, line: UInt = #line) throws {
        let resumed = try completed(launch, ["run", "--steps", String(steps - done), "--resume", ck, "--save", ck,
                                             "--checkpoint-every", String(every)] + model, file: file, line: line)
        XCTAssertEqual(resumed.firstStep, done, file: file, line: line)
        XCTAssertEqual(resumed.losses.map(\.bitPattern), reference.losses[done...].map(\.bitPattern),
                       "\(launch.name): resumed losses \(resumed.losses), uninterrupted \(Array(reference.losses[done...]))", file: file, line: line)
        XCTAssertEqual(latest(ck), CheckpointPlan.name(stepsCompleted: steps), file: file, line: line)
        let parameters = try merged(launch, ck, file: file, line: line)
        XCTAssertTrue(parameters == reference.parameters,
                      "\(launch.name): merged parameters after resume differ from the uninterrupted run's (\(parameters.count) vs \(reference.parameters.count) bytes)",
                      file: file, line: line)
    }

    /// A worker is SIGKILLed mid-run once a checkpoint provably exists: rank 1 freezes itself at step 5, the test
    /// waits for `latest` to name the checkpoint of step 4 (written after every rank reported step 4), then kills
    /// the frozen worker. The run fails naming rank 1; `--resume` continues to the same total steps, and the losses
    /// and merged parameters are bit-equal to an uninterrupted run's.
    func resumeAfterSIGKILL(_ launch: RecoveryLaunch) throws {
        let reference = try reference(launch)
        let ck = scratch.appendingPathComponent("crashed-\(UUID().uuidString)").path
        let run = try launch.start(["run", "--steps", String(steps), "--save", ck, "--checkpoint-every", String(every),
                                    "--fault", "freeze:1@5"] + launch.failureArguments + model + launch.runArguments)
        let committed = CheckpointPlan.name(stepsCompleted: 4)
        var victim: pid_t?
        let ready = waitUntil("\(launch.name): checkpoint \(committed) committed and rank 1 frozen") {
            victim = launch.workerPid(run, 1)
            return latest(ck) == committed && victim.flatMap(LaunchedCLI.stat)?.state == "T"
        }
        if ready, let victim { kill(victim, SIGKILL) }
        let failed = try run.finish()
        XCTAssertNotEqual(failed.status, 0, failed.stderr)
        XCTAssertTrue(failed.stderr.contains("worker rank 1") && (failed.stderr.contains("SIGKILL") || !launch.namesSignal), failed.stderr)
        XCTAssertEqual(latest(ck), committed, "nothing after the kill moved latest")
        try assertResumeMatches(launch, ck, from: 4, reference: reference)
    }

    /// A worker dies in the middle of a checkpoint write: rank 1 SIGKILLs itself right after writing its file of
    /// the checkpoint of step 6, before the step is reported, so no manifest is written. `latest` still names a
    /// complete earlier checkpoint, the half-written one is refused if named directly, and resuming from the
    /// directory continues from the complete one, bit-equal to an uninterrupted run.
    func resumeAfterKillDuringCheckpointWrite(_ launch: RecoveryLaunch) throws {
        let reference = try reference(launch)
        let ck = scratch.appendingPathComponent("torn-\(UUID().uuidString)").path
        let r = try launch.start(["run", "--steps", String(steps), "--save", ck, "--checkpoint-every", String(every),
                                  "--fault", "kill-after-save:1@5"] + launch.failureArguments + model + launch.runArguments).finish()
        XCTAssertNotEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("worker rank 1") && (r.stderr.contains("SIGKILL") || !launch.namesSignal), r.stderr)
        let torn = "\(ck)/\(CheckpointPlan.name(stepsCompleted: 6))"
        XCTAssertTrue(FileManager.default.fileExists(atPath: "\(torn)/rank-1.safetensors"), "rank 1 wrote its file before dying")
        XCTAssertFalse(FileManager.default.fileExists(atPath: "\(torn)/manifest.json"), "no manifest for a checkpoint a rank never reported")
        // The coordinator reads what arrived before it reports the death, so latest is step 4 unless step 4's
        // reports were still in flight then (step 2): either is complete; never the torn one.
        let pointer = try XCTUnwrap(latest(ck))
        let done = try XCTUnwrap([2, 4].first { CheckpointPlan.name(stepsCompleted: $0) == pointer }, "latest names \(pointer)")
        // Without the pointer, the torn directory itself is refused, naming its missing manifest.
        let direct = try launch.start(["run", "--steps", "2", "--resume", torn] + model + launch.runArguments).finish()
        XCTAssertNotEqual(direct.status, 0)
        XCTAssertTrue(direct.stderr.contains("\(torn)/manifest.json: missing"), direct.stderr)
        try assertResumeMatches(launch, ck, from: done, reference: reference)
    }

    func testResumeAfterSIGKILLIsBitEqualOverIPC() throws { try resumeAfterSIGKILL(.local(transport: "ipc")) }

    func testResumeAfterSIGKILLIsBitEqualOverTCP() throws { try resumeAfterSIGKILL(.local(transport: "tcp")) }

    /// The same with workers the coordinator did not start (`attnres coordinator --save …`), as on other hosts.
    func testResumeAfterSIGKILLIsBitEqualWithHandStartedWorkers() throws { try resumeAfterSIGKILL(.handStarted()) }

    /// The same on test hosts: coordinator and each worker in its own network namespace, over tcp.
    func testResumeAfterSIGKILLIsBitEqualOnTestHosts() throws {
        let hosts = try TestHosts(3, for: self)
        let topology = URL(fileURLWithPath: hosts.directory).appendingPathComponent("recovery-hosts.yaml").path
        try """
        name: recovery-hosts
        transport: {kind: tcp, ranks: [{host: \(hosts.hosts[1].address), port: 6000}, {host: \(hosts.hosts[2].address), port: 6000}]}
        coordinator: tcp://\(hosts.hosts[0].address):5555

        """.write(toFile: topology, atomically: false, encoding: .utf8)
        try resumeAfterSIGKILL(.onTestHosts(hosts, topology: topology))
        hosts.assertNoProcessesLeft()
    }

    func testKillDuringACheckpointWriteResumesFromThePreviousOne() throws {
        try resumeAfterKillDuringCheckpointWrite(.local(transport: "ipc"))
    }

    /// `latest` is input: a pointer that names anything but a checkpoint directory of DIR is refused, naming it.
    func testALatestPointerOutsideTheDirectoryIsRefused() throws {
        let launch = RecoveryLaunch.local(transport: "ipc")
        let ck = scratch.appendingPathComponent("ck").path
        _ = try completed(launch, ["run", "--steps", "2", "--save", ck, "--checkpoint-every", "1"] + model)
        XCTAssertEqual(latest(ck), CheckpointPlan.name(stepsCompleted: 2))
        XCTAssertEqual(try Checkpoint.readManifest(try Checkpoint.resolve(ck)).stepsCompleted, 2)
        XCTAssertEqual(try Checkpoint.readManifest("\(ck)/\(CheckpointPlan.name(stepsCompleted: 1))").stepsCompleted, 1)
        for bad in ["../elsewhere", "/tmp", "step-1/../../x", ""] {
            try Data(bad.utf8).write(to: URL(fileURLWithPath: "\(ck)/latest"))
            let r = try launch.start(["run", "--steps", "1", "--resume", ck] + model).finish()
            XCTAssertNotEqual(r.status, 0, bad)
            XCTAssertTrue(r.stderr.contains("\(ck)/latest: names '\(bad)', not a checkpoint directory"), r.stderr)
        }
        // A dangling symlink is a broken pointer, named as such, not a reason to read DIR as a single checkpoint.
        try FileManager.default.removeItem(atPath: "\(ck)/latest")
        try FileManager.default.createSymbolicLink(atPath: "\(ck)/latest", withDestinationPath: scratch.appendingPathComponent("nowhere").path)
        XCTAssertThrowsError(try Checkpoint.resolve(ck)) { XCTAssertTrue("\($0)".contains("\(ck)/latest: no such file"), "\($0)") }
    }

    /// `--checkpoint-every` is checked before any process starts: K in 1…steps, with --save, in compute mode; a
    /// single checkpoint does not go into a directory of periodic ones.
    func testCheckpointEveryIsValidated() throws {
        let launch = RecoveryLaunch.local(transport: "ipc")
        let ck = scratch.appendingPathComponent("ck").path
        for (args, words) in [(["--checkpoint-every", "0", "--save", ck], "--checkpoint-every 0: must be in 1…4"),
                              (["--checkpoint-every", "5", "--save", ck], "--checkpoint-every 5: must be in 1…4"),
                              (["--checkpoint-every", "2"], "--checkpoint-every 2: needs --save DIR"),
                              (["--checkpoint-every", "2", "--save", ck, "--mode", "shape"], "use mode compute"),
                              (["--fault", "kill-after-save:1@0", "--save", ck, "--checkpoint-every", "2"], "no checkpoint is written after step 0")] {
            let r = try launch.start(["run", "--steps", "4"] + model + args).finish()
            XCTAssertNotEqual(r.status, 0, "\(args)")
            XCTAssertTrue(r.stderr.contains(words), "\(args): \(r.stderr)")
        }
        let compare = try launch.start(["coordinator", "--compare", "--save", ck, "--steps", "4"] + model).finish()
        XCTAssertNotEqual(compare.status, 0)
        XCTAssertTrue(compare.stderr.contains("are for one compute run, not --compare"), compare.stderr)
        let coordinator = try launch.start(["coordinator", "--checkpoint-every", "9", "--save", ck, "--steps", "4"] + model).finish()
        XCTAssertNotEqual(coordinator.status, 0)
        XCTAssertTrue(coordinator.stderr.contains("--checkpoint-every 9: must be in 1…4"), coordinator.stderr)
        _ = try completed(launch, ["run", "--steps", "2", "--save", ck, "--checkpoint-every", "2"] + model)
        let flat = try launch.start(["run", "--steps", "2", "--save", ck] + model).finish()
        XCTAssertNotEqual(flat.status, 0)
        XCTAssertTrue(flat.stderr.contains("holds periodic checkpoints"), flat.stderr)
    }
}
