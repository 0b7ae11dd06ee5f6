import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// Test hosts on this machine for one test: N network namespaces on a bridge (`scripts/hosts.sh`), each with one
/// address, so a cluster runs over real tcp between "hosts" and a link can be cut. The whole API:
///
///     let hosts = try TestHosts(5, for: self)         // XCTSkip (reason printed) when not root or no `ip netns`
///     let coordinator = try hosts.start(0, ["coordinator", yaml, "--json", json])
///     try coordinator.waitForLog("step 1/", seconds: 120)
///     try hosts.cutLink(3)                             // `ip link set eth0 down` inside host 3
///     hosts.assertNoProcessesLeft()                    // nothing runs in any of the namespaces
///
/// Teardown is registered with the test case (`addTeardownBlock`), so it runs even when the test fails or throws:
/// it kills whatever still runs inside the namespaces and removes them. `down()` may also be called earlier.
final class TestHosts {
    struct Host {
        /// `ip netns` name, e.g. ah137h0.
        let namespace: String
        /// The host's one IPv4 address, e.g. 10.232.137.1.
        let address: String
        /// The host's interface on the bridge (`eth0`).
        let interface: String
    }

    /// The ID that keeps these hosts apart from concurrent users (scripts/hosts.sh's ATTNRES_HOSTS_ID).
    let id: Int
    let hosts: [Host]
    /// A directory for the test's files, and every started process's TMPDIR (so the run directories even a
    /// SIGKILLed coordinator leaves behind go with it); removed by `down()`.
    let directory: String
    private var isDown = false
    private var started: [HostProcess] = []

    /// `scripts/hosts.sh` of this source tree.
    static let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("scripts/hosts.sh").path

    /// Brings `count` hosts up under an ID no one else holds (`mbit`: a tbf rate limit on every host link, both
    /// directions) and registers their teardown with `test`. Throws XCTSkip, after printing the reason, where
    /// network namespaces cannot be made (not root, no iproute2, a container without CAP_NET_ADMIN).
    init(_ count: Int, mbit: Int? = nil, for test: XCTestCase) throws {
        if let reason = TestHosts.unavailableReason {
            print("TestHosts: skipped: \(reason)")
            throw XCTSkip(reason)
        }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("attnres-hosts-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        directory = dir
        do { (id, hosts) = try TestHosts.claim(count, mbit: mbit) } catch {
            try? FileManager.default.removeItem(atPath: dir)
            throw error
        }
        test.addTeardownBlock { [self] in down() }
        guard hosts.count == count else { throw TestHostsError.scriptFailed(command: "up \(count)", status: 0, stderr: "listed \(hosts.count) hosts") }
    }

    deinit { down() }

    /// Runs `hosts.sh up` under random IDs in 100–250 until one is free (the lower ones are left to people running
    /// the script by hand, default 1); returns the ID and the hosts it listed.
    private static func claim(_ count: Int, mbit: Int?) throws -> (Int, [Host]) {
        _ = sweptOnce
        for candidate in Array(100...250).shuffled() {
            let r = try TestHosts.script(["up", "\(count)"] + (mbit.map { ["\($0)"] } ?? []), id: candidate,
                                         environment: ["ATTNRES_HOSTS_OWNER": "\(getpid())"])
            if r.status == 3 { continue }  // the ID is held by another user
            guard r.status == 0 else { throw TestHostsError.scriptFailed(command: "up \(count)", status: r.status, stderr: r.stderr) }
            let hosts = r.stdout.split(separator: "\n").map { line in
                let f = line.split(separator: " ").map(String.init)
                return Host(namespace: f[0], address: f[1], interface: f[2])
            }
            return (candidate, hosts)
        }
        throw TestHostsError.noFreeID
    }

    /// Why namespaces cannot be used here, or nil when they can (checked once per test process, by making and
    /// removing one).
    static let unavailableReason: String? = {
        guard getuid() == 0 else { return "needs root (network namespaces, veth pairs, a bridge)" }
        guard FileManager.default.isExecutableFile(atPath: ipTool) else { return "ip (iproute2) is not installed" }
        let probe = "ahprobe\(getpid())"
        guard let r = try? CLIProcess.run(["netns", "add", probe], executable: ipTool, timeout: 30), r.status == 0 else {
            return "cannot create a network namespace here (ip netns add failed)"
        }
        _ = try? CLIProcess.run(["netns", "del", probe], executable: ipTool, timeout: 30)
        return nil
    }()

    /// Runs `scripts/hosts.sh args` with ATTNRES_HOSTS_ID set.
    private static func script(_ args: [String], id: Int, environment: [String: String] = [:]) throws -> CLIProcess.Result {
        try CLIProcess.run(args, executable: script, timeout: 120, environment: ["ATTNRES_HOSTS_ID": "\(id)"].merging(environment) { $1 })
    }

    /// Hosts are recorded with this test process as their owner; a test process that was killed (a CI time-out)
    /// could not tear its hosts down, so the first TestHosts of the next one removes them (`hosts.sh sweep`).
    private static let sweptOnce: Void = { _ = try? script(["sweep"], id: 1) }()

    /// The ip(8) command line that runs `executable args` inside host `index`.
    private func netnsExec(_ index: Int, _ executable: String, _ args: [String]) -> [String] {
        ["netns", "exec", hosts[index].namespace, executable] + args
    }

    /// Starts `attnres args` (or `executable args`) inside host `index` and returns at once; its standard error
    /// is tapped (`log`) and its standard output kept. `environment` is added to this process's own (TMPDIR is
    /// `directory`). Teardown stops it if it is still running.
    func start(_ index: Int, _ args: [String], executable: String = CLIProcess.binary, environment: [String: String] = [:]) throws -> HostProcess {
        let p = try HostProcess(arguments: netnsExec(index, executable, args), label: "host \(index): \(args.joined(separator: " "))",
                                environment: ["TMPDIR": directory].merging(environment) { $1 })
        started.append(p)
        return p
    }

    /// Runs `attnres args` inside host `index` to completion, through `CLIProcess.run` (deadline, cleanup).
    func run(_ index: Int, _ args: [String], executable: String = CLIProcess.binary, environment: [String: String] = [:], timeout: Double = 300,
             file: StaticString = #filePath, line: UInt = #line) throws -> CLIProcess.Result {
        try CLIProcess.run(netnsExec(index, executable, args), executable: TestHosts.ipTool, timeout: timeout,
                           environment: ["TMPDIR": directory].merging(environment) { $1 }, file: file, line: line)
    }

    /// Cuts host `index` off the bridge: its interface goes down inside its namespace, its processes live on
    /// and see no FIN or RST, only silence (a pulled cable).
    func cutLink(_ index: Int) throws {
        let r = try CLIProcess.run(["-n", hosts[index].namespace, "link", "set", hosts[index].interface, "down"], executable: TestHosts.ipTool, timeout: 30)
        guard r.status == 0 else { throw TestHostsError.scriptFailed(command: "ip link set \(hosts[index].interface) down in \(hosts[index].namespace)", status: r.status, stderr: r.stderr) }
    }

    /// Every process still running inside one of these namespaces, by namespace (empty when none is left).
    func processesLeft() -> [String: [String]] {
        guard !isDown, let r = try? TestHosts.script(["pids"], id: id) else { return [:] }
        var left: [String: [String]] = [:]
        for line in r.stdout.split(separator: "\n") {
            let f = line.split(separator: " ", maxSplits: 1).map(String.init)
            left[f[0], default: []].append(f.count > 1 ? f[1] : "?")
        }
        return left
    }

    /// Fails the test when any process is left in any namespace, naming them.
    func assertNoProcessesLeft(file: StaticString = #filePath, line: UInt = #line) {
        let left = processesLeft()
        XCTAssertTrue(left.isEmpty, "processes left in the test hosts: \(left)", file: file, line: line)
    }

    /// Kills what runs inside the namespaces and removes them (idempotent; also run by the test's teardown).
    func down() {
        guard !isDown else { return }
        isDown = true
        _ = try? TestHosts.script(["down"], id: id)
        for p in started { p.reap() }
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// ip(8), wherever the distribution put it.
    static var ipTool: String { tool("ip") ?? "/usr/sbin/ip" }

    /// The full path of an administration tool (ip, tcpdump, iptables), wherever the distribution put it: the
    /// sbin and bin directories first (a CI shell's PATH may lack sbin), then PATH; nil when it is not installed.
    static func tool(_ name: String) -> String? {
        let path = (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").map(String.init)
        return (["/usr/sbin", "/sbin", "/usr/bin", "/bin"] + path).map { "\($0)/\(name)" }
            .first { FileManager.default.isExecutableFile(atPath: $0) }
    }
}

enum TestHostsError: Error, CustomStringConvertible {
    case noFreeID
    case scriptFailed(command: String, status: Int32, stderr: String)
    case logTimeout(process: String, waitedFor: String, seconds: Double, log: String)

    var description: String {
        switch self {
        case .noFreeID: return "scripts/hosts.sh: every ID in 100…250 is in use"
        case .scriptFailed(let c, let s, let e): return "scripts/hosts.sh \(c) exited \(s): \(e)"
        case .logTimeout(let p, let w, let s, let log): return "\(p): no '\(w)' on standard error within \(Int(s)) s; it said:\n\(log)"
        }
    }
}

/// A process running inside a test host (through `ip netns exec`, which execs it: the pid is the process's own).
final class HostProcess: @unchecked Sendable {
    let process = Process()
    let label: String
    /// Its standard error, line by line with arrival times, readable while it runs.
    let log = LogTap()
    private let out = LogTap()
    private let lock = NSLock()
    private var exitTime: Double?

    init(arguments: [String], label: String, environment: [String: String]) throws {
        _ = CLIProcess.becomeSubreaper
        self.label = label
        process.executableURL = URL(fileURLWithPath: TestHosts.ipTool)
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        process.standardError = log.pipe
        process.standardOutput = out.pipe
        process.terminationHandler = { [weak self] _ in
            guard let self else { return }
            self.lock.lock(); self.exitTime = HostProcess.now(); self.lock.unlock()
        }
        try process.run()
        log.startReading()
        out.startReading()
    }

    var pid: Int32 { process.processIdentifier }
    var stdout: String { out.text }
    var stderr: String { log.text }

    /// When it exited (`HostProcess.now()` clock), nil while it runs.
    var exitedAt: Double? {
        lock.lock(); defer { lock.unlock() }
        return exitTime
    }

    /// Waits up to `seconds` for it to exit; on time-out it is killed and the test fails. Returns its status
    /// (nil on time-out) once its output is read to the end.
    @discardableResult
    func wait(seconds: Double, file: StaticString = #filePath, line: UInt = #line) -> Int32? {
        guard Watchdog.waitForExit(process, label, seconds: seconds, file: file, line: line) else { return nil }
        log.waitForEnd(seconds: 10)
        out.waitForEnd(seconds: 10)
        return process.terminationStatus
    }

    /// Waits up to `seconds` for a line of its standard error containing `needle`; returns when it arrived.
    @discardableResult
    func waitForLog(_ needle: String, seconds: Double) throws -> Double {
        try log.wait(for: needle, seconds: seconds, process: label)
    }

    /// Kills it if it still runs and reaps it (teardown).
    func reap() {
        if process.isRunning { kill(pid, SIGKILL) }
        Watchdog.waitForExit(process, label, seconds: 30)
    }

    /// A monotonic clock in seconds, the one `LogTap` stamps lines with.
    static func now() -> Double {
        var t = timespec()
        clock_gettime(CLOCK_MONOTONIC, &t)
        return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9
    }
}

/// Reads a pipe on a thread of its own (so the writer never blocks on a full pipe), keeps every line with the
/// time it arrived, and lets a test wait for a line with a deadline: the wait ends on the line itself.
final class LogTap: @unchecked Sendable {
    let pipe = Pipe()
    private let condition = NSCondition()
    private var buffer = ""
    private var lines: [(time: Double, text: String)] = []
    private var ended = false

    func startReading() {
        let handle = pipe.fileHandleForReading
        Thread { [self] in
            while true {
                let chunk = handle.availableData
                condition.lock()
                if chunk.isEmpty {
                    if !buffer.isEmpty { lines.append((HostProcess.now(), buffer)); buffer = "" }
                    ended = true
                    condition.broadcast(); condition.unlock()
                    return
                }
                buffer += String(decoding: chunk, as: UTF8.self)
                let now = HostProcess.now()
                while let nl = buffer.firstIndex(of: "\n") {
                    lines.append((now, String(buffer[..<nl])))
                    buffer = String(buffer[buffer.index(after: nl)...])
                }
                condition.broadcast(); condition.unlock()
            }
        }.start()
    }

    /// Everything read so far.
    var text: String {
        condition.lock(); defer { condition.unlock() }
        return lines.map(\.text).joined(separator: "\n") + (buffer.isEmpty ? "" : "\n" + buffer)
    }

    /// Waits up to `seconds` for a line containing `needle`; returns when it arrived. Throws when the deadline
    /// passes or the writer exits first, with everything it said.
    @discardableResult
    func wait(for needle: String, seconds: Double, process: String = "process") throws -> Double {
        let deadline = Date(timeIntervalSinceNow: seconds)
        condition.lock()
        defer { condition.unlock() }
        while true {
            if let hit = lines.first(where: { $0.text.contains(needle) }) { return hit.time }
            if ended || !condition.wait(until: deadline) {
                if let hit = lines.first(where: { $0.text.contains(needle) }) { return hit.time }
                throw TestHostsError.logTimeout(process: process, waitedFor: needle, seconds: seconds,
                                                log: lines.map(\.text).joined(separator: "\n"))
            }
        }
    }

    /// When the first line containing `needle` arrived, if one has.
    func time(of needle: String) -> Double? {
        condition.lock(); defer { condition.unlock() }
        return lines.first { $0.text.contains(needle) }?.time
    }

    /// Waits (bounded) until the writer has closed the pipe, so `text` is complete.
    func waitForEnd(seconds: Double) {
        let deadline = Date(timeIntervalSinceNow: seconds)
        condition.lock(); defer { condition.unlock() }
        while !ended && condition.wait(until: deadline) {}
    }
}
