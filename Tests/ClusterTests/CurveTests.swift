import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif
@testable import Cluster
import Wire

/// CURVE + ZAP with real processes over tcp on 127.0.0.1: key files, a run with measured == predicted, a rogue
/// worker and a rogue data sender refused (and, as the negative control, admitted without CURVE), a passive
/// capture that sees tensors in the clear only without CURVE, and the errors for missing or wrong keys.
final class CurveTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("attnres-curve-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: dir)
        CLIProcess.assertNoOrphans()
    }

    // MARK: helpers

    /// Free tcp ports on 127.0.0.1 (bound to port 0 and released; the kernel does not hand them out again at once).
    static func freePorts(_ n: Int) throws -> [Int] {
        var fds: [Int32] = [], ports: [Int] = []
        defer { for fd in fds { close(fd) } }
        for _ in 0..<n {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            fds.append(fd)
            var a = sockaddr_in()
            a.sin_family = sa_family_t(AF_INET)
            a.sin_addr.s_addr = inet_addr("127.0.0.1")
            a.sin_port = 0
            var len = socklen_t(MemoryLayout<sockaddr_in>.size)
            let ok = withUnsafeMutablePointer(to: &a) { p in
                p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0 }
            }
            guard ok else { throw CocoaError(.fileWriteUnknown) }
            ports.append(Int(UInt16(bigEndian: a.sin_port)))
        }
        return ports
    }

    /// A 4-rank shape-mode topology over tcp on 127.0.0.1 with the given data ports, CURVE when `keys` is set.
    func writeTopology(_ name: String, dataPorts: [Int], keys: String?, coordinatorPort: Int? = nil, steps: Int = 2) throws -> String {
        var yaml = """
        name: curve-test
        mode: shape
        steps: \(steps)
        model: {layers: 16, hidden: 64, heads: 4, seq: 32, vocab: 256}
        residual: {kind: block, blocks: 4}
        cache: cross-stage
        pipeline: {ranks: 4, virtual: 2, schedule: interleaved-1f1b, microbatches: 4, microbatch_size: 2}
        transport: {kind: tcp, ranks: [\(dataPorts.map { "{host: 127.0.0.1, port: \($0)}" }.joined(separator: ", "))]}

        """
        if let keys { yaml += "security: {curve: \(keys)}\n" }
        if let coordinatorPort { yaml += "coordinator: tcp://127.0.0.1:\(coordinatorPort)\n" }
        let path = dir.appendingPathComponent(name).path
        try yaml.write(toFile: path, atomically: false, encoding: .utf8)
        return path
    }

    func generateKeys(_ name: String) throws -> String {
        let path = dir.appendingPathComponent(name).path
        let r = try CLIProcess.run(["keys", "generate", path, "--ranks", "4"])
        XCTAssertEqual(r.status, 0, r.stderr)
        return path
    }

    func report(_ path: String) throws -> ReportJSON {
        let d = JSONDecoder()
        d.keyDecodingStrategy = .convertFromSnakeCase
        return try d.decode(ReportJSON.self, from: Data(contentsOf: URL(fileURLWithPath: path)))
    }

    func assertMatches(_ r: ReportJSON, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(r.runs.count, 1, file: file, line: line)
        XCTAssertEqual(r.runs.first?.measured?.matchesPredicted, true, "\(r.runs.first?.measured?.mismatches ?? [])", file: file, line: line)
        XCTAssertGreaterThan(r.runs.first?.measured?.payloadBytesPerStep ?? 0, 0, file: file, line: line)
    }

    /// A process started in the background with its output in files, read once it has exited.
    final class Started {
        let process = Process()
        let out: URL, err: URL
        init(_ args: [String], in dir: URL, executable: String = CLIProcess.binary) throws {
            let id = UUID().uuidString
            out = dir.appendingPathComponent("\(id).out"); err = dir.appendingPathComponent("\(id).err")
            FileManager.default.createFile(atPath: out.path, contents: nil)
            FileManager.default.createFile(atPath: err.path, contents: nil)
            process.executableURL = URL(fileURLWithPath: executable)
            process.arguments = args
            process.standardOutput = try FileHandle(forWritingTo: out)
            process.standardError = try FileHandle(forWritingTo: err)
            try process.run()
        }
        var stdout: String { (try? String(contentsOf: out, encoding: .utf8)) ?? "" }
        var stderr: String { (try? String(contentsOf: err, encoding: .utf8)) ?? "" }
        /// Waits (bounded) for the exit; nil when it had to be killed.
        func wait(_ what: String, seconds: Double = 120) -> Int32? {
            Watchdog.waitForExit(process, what, seconds: seconds) ? process.terminationStatus : nil
        }
        /// Waits, bounded, until `condition` holds on standard error.
        func waitForStderr(_ what: String, seconds: Double = 60, _ condition: (String) -> Bool) -> Bool {
            let deadline = Date().addingTimeInterval(seconds)
            while Date() < deadline {
                if condition(stderr) { return true }
                if !process.isRunning { return condition(stderr) }
                usleep(20_000)
            }
            XCTFail("\(what): not seen within \(Int(seconds)) s; stderr: \(stderr)")
            return false
        }
    }

    // MARK: keys

    func testKeysGenerateRoundTripAndRefusesToOverwrite() throws {
        let keys = try generateKeys("keys")
        for name in ["coordinator"] + (0..<4).map { "rank-\($0)" } {
            let pub = try String(contentsOfFile: "\(keys)/\(name).pub", encoding: .utf8)
            let secret = try String(contentsOfFile: "\(keys)/\(name).secret", encoding: .utf8)
            XCTAssertEqual(pub.count, 41, "40 Z85 characters and a newline")
            XCTAssertTrue(pub.hasSuffix("\n"))
            XCTAssertEqual(CurveKeyPair.publicKey(of: secret.trimmingCharacters(in: .newlines)), pub.trimmingCharacters(in: .newlines), name)
            let mode = try FileManager.default.attributesOfItem(atPath: "\(keys)/\(name).secret")[.posixPermissions] as? Int
            XCTAssertEqual(mode, 0o600, "\(name).secret")
        }
        let c = try CurveKeys.coordinator(directory: keys, ranks: 4)
        let w = try CurveKeys.worker(directory: keys, rank: 2)
        XCTAssertEqual(c.rankPublicKeys[2], w.pair.publicKey)
        XCTAssertEqual(w.coordinatorPublicKey, c.pair.publicKey)
        XCTAssertEqual(Set(c.rankPublicKeys + [c.pair.publicKey]).count, 5, "every pair is fresh")

        let again = try CLIProcess.run(["keys", "generate", keys, "--ranks", "4"])
        XCTAssertNotEqual(again.status, 0)
        XCTAssertTrue(again.stderr.contains("refusing to overwrite") && again.stderr.contains("--force") && again.stderr.contains("coordinator.pub"), again.stderr)
        XCTAssertEqual(try CurveKeys.coordinator(directory: keys, ranks: 4), c, "a refused generate leaves the keys alone")
        let forced = try CLIProcess.run(["keys", "generate", keys, "--ranks", "4", "--force"])
        XCTAssertEqual(forced.status, 0, forced.stderr)
        XCTAssertNotEqual(try CurveKeys.coordinator(directory: keys, ranks: 4).pair, c.pair)
        let bad = try CLIProcess.run(["keys", "generate", dir.appendingPathComponent("one").path, "--ranks", "1"])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("--ranks 1"), bad.stderr)
    }

    /// `security: {curve: DIR}` is resolved against the topology file's directory, travels in the run message's
    /// topology, and a wrong shape is an error naming the key and line.
    func testSecurityKeyParsesRelativeToTheFileAndTravels() throws {
        let yaml = Topology.embeddedDefaultYAML + "\nsecurity: {curve: ../keys}\n"
        let (t, _) = try Topology.parse(yaml: yaml, source: "/srv/cluster/topologies/t.yaml")
        XCTAssertEqual(t.curveDirectory, "/srv/cluster/keys")
        let back = try JSONDecoder().decode(Topology.self, from: try JSONEncoder().encode(t))
        XCTAssertEqual(back.curveDirectory, "/srv/cluster/keys")
        XCTAssertNil(try JSONDecoder().decode(Topology.self, from: try JSONEncoder().encode(Topology())).curveDirectory)
        XCTAssertThrowsError(try Topology.parse(yaml: Topology.embeddedDefaultYAML + "\nsecurity: {plain: x}\n", source: "f.yaml")) { e in
            XCTAssertTrue("\(e)".contains("f.yaml:11: security.plain: unknown key (known here: curve)"), "\(e)")
        }
        XCTAssertThrowsError(try Topology.parse(yaml: Topology.embeddedDefaultYAML + "\nsecurity: curve\n", source: "f.yaml")) { e in
            XCTAssertTrue("\(e)".contains("security: must be a mapping"), "\(e)")
        }
    }

    // MARK: a CURVE run

    func testCurveRunOverTCPMeasuredEqualsPredicted() throws {
        let keys = try generateKeys("keys")
        let topo = try writeTopology("t.yaml", dataPorts: try Self.freePorts(4), keys: "keys")
        let json = dir.appendingPathComponent("r.json").path
        let r = try CLIProcess.run(["run", topo, "--json", json])
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains("CURVE: control and data links authenticated and encrypted; 0 connections refused"), r.stdout)
        let rep = try report(json)
        assertMatches(rep)
        XCTAssertEqual(rep.security?.curve, true)
        XCTAssertEqual(rep.security?.refusedConnections, 0)
        _ = keys
    }

    /// `bench wire --curve` measures the data path over a CURVE link (encrypted: the bytes arrive intact through
    /// the ZAP-admitted pair) beside the plain one; without the flag there is no CURVE column.
    func testWireBenchmarkMeasuresCurveBesidePlain() throws {
        let rows = try WireBenchmark.run(transports: [.tcp], sizes: [64 << 10], trials: 1, bytesPerTrial: 4 << 20, curve: true)
        XCTAssertEqual(rows.count, 1)
        XCTAssertGreaterThan(rows[0].curveGBps ?? 0, 0)
        XCTAssertGreaterThan(rows[0].curveRatio ?? 0, 0)
        XCTAssertNil(try WireBenchmark.run(transports: [.ipc], sizes: [64 << 10], trials: 1, bytesPerTrial: 1 << 20)[0].curveRatio)
    }

    /// docs/examples/shape_worker.py, written from docs/protocol.md, follows "Authentication (CURVE)" too: Python
    /// ranks 0 and 2 beside attnres ranks 1 and 3, every link CURVE over tcp, measured == predicted.
    func testPythonWorkersJoinACurveCluster() throws {
        guard (try? Python.shell(["python3", "-c", "import zmq; assert zmq.has('curve')"]))?.status == 0 else {
            throw XCTSkip("python3 with a CURVE-capable pyzmq is not installed (make deps installs pyzmq)")
        }
        let keys = try generateKeys("keys")
        var t = Topology()
        t.transport = .tcp
        t.curveDirectory = keys
        let coordinator = try Coordinator(topology: t, joinTimeout: 60, silenceTimeout: 30, spawnLocal: false)
        coordinator.phaseTimeout = 120
        var processes: [Started] = []
        defer {
            coordinator.shutdown()
            for p in processes { _ = p.wait("worker \(p.process.arguments ?? [])", seconds: 30) }
        }
        for r in 0..<t.ranks {
            let args = ["--join", coordinator.endpoint, "--rank", "\(r)", "--keys", keys]
            processes.append(r % 2 == 0 ? try Started(["python3", PythonWorkerTests.script] + args, in: dir, executable: "/usr/bin/env")
                                        : try Started(["worker"] + args, in: dir))
        }
        try coordinator.start()
        let result = try coordinator.run(t)
        XCTAssertTrue(result.matchesPrediction, result.mismatches.joined(separator: "\n"))
        XCTAssertEqual(coordinator.curveRefusals, [])
        coordinator.shutdown()
        for p in processes { XCTAssertEqual(p.wait("worker", seconds: 60), 0, p.stderr) }
    }

    /// Refused connections with the same key from the same address (a rogue's control and heartbeat sockets, or a
    /// rogue starting again and again) are each counted but recorded and logged once.
    func testZAPRecordsEachRefusedKeyOnceButCountsEveryAttempt() throws {
        let server = try CurveKeyPair.generate(), friend = try CurveKeyPair.generate(), rogue = try CurveKeyPair.generate()
        let serverContext = ZContext(), clientContext = ZContext()
        final class Log: @unchecked Sendable { var lines = 0; let lock = NSLock() }
        let log = Log()
        let zap = try ZAPHandler(context: serverContext, admitted: [friend.publicKey: "rank-0"]) { _ in log.lock.lock(); log.lines += 1; log.lock.unlock() }
        defer { zap.stop() }
        let pull = try Socket(serverContext, .pull)
        defer { pull.close() }
        try pull.makeCurveServer(secretKey: server.secretKey, domain: "test")
        try pull.bind("tcp://127.0.0.1:*")
        let pushes = try (0..<3).map { _ in try Socket(clientContext, .push) }
        defer { for p in pushes { p.close() } }
        for p in pushes {
            try p.makeCurveClient(rogue, serverKey: server.publicKey)
            try p.connect(pull.lastEndpoint)
        }
        let deadline = Date().addingTimeInterval(60)
        while zap.refusedAttempts < 3 && Date() < deadline { usleep(10_000) }
        XCTAssertEqual(zap.refusedAttempts, 3)
        XCTAssertEqual(zap.refusals, [ZAPHandler.Refusal(address: "127.0.0.1", publicKey: rogue.publicKey)])
        log.lock.lock(); XCTAssertEqual(log.lines, 1); log.lock.unlock()
    }

    /// Once a ZAP refusal has ended a connecting socket's session, libzmq neither reconnects nor keeps a pipe: a
    /// blocking send would wait for ever (a rogue worker whose refusal came before its hello hung so, about one start
    /// in 15). `send(_:stillWaiting:)` calls its check instead, which here gives up, and queues once a pipe exists.
    func testSendAfterARefusedHandshakeCallsItsCheckInsteadOfBlocking() throws {
        let server = try RefusingCurveServer(.router, domain: "test")
        defer { server.close() }
        let clientContext = ZContext()
        let dealer = try Socket(clientContext, .dealer)
        defer { dealer.close(lingerMs: 0) }
        try dealer.makeCurveClient(try CurveKeyPair.generate(), serverKey: server.key.publicKey)
        let monitor = try SocketMonitor(dealer)
        defer { monitor.close() }
        try dealer.connect(server.endpoint)
        var refusal: SocketMonitor.Event?
        let deadline = Date().addingTimeInterval(60)
        while refusal == nil && Date() < deadline {
            guard try monitor.wait(timeoutMs: 100) else { continue }
            while let e = try monitor.next() { if e.isAuthenticationFailure { refusal = e } }
        }
        XCTAssertEqual(refusal?.value, 400, "the server's ZAP handler refused the key")
        // The event comes from the I/O thread during the handshake; the socket drops the session's pipe when it next
        // processes its commands (which a send or a poll does).
        try RefusingCurveServer.waitUntilThePipeIsGone(dealer)
        struct GaveUp: Error {}
        var checks = 0
        XCTAssertThrowsError(try dealer.send([Message(bytes: [1])]) { checks += 1; if checks == 3 { throw GaveUp() } }) {
            XCTAssertTrue($0 is GaveUp, "\($0)")
        }
        XCTAssertEqual(checks, 3, "the check runs while no pipe takes the message")
        XCTAssertFalse(try dealer.trySend(Message(bytes: [1])), "the refused session left no pipe")
        // A socket with a live pipe sends at once, without a check.
        let plainServer = try Socket(clientContext, .pull), plainClient = try Socket(clientContext, .push)
        defer { plainServer.close(); plainClient.close(lingerMs: 0) }
        try plainServer.bind("inproc://attnres.send-check")
        try plainClient.connect("inproc://attnres.send-check")
        try plainClient.send([Message(bytes: [7]), Message(bytes: [8])]) { XCTFail("a live pipe needs no check") }
        XCTAssertEqual(try plainServer.receive()?.map(\.array), [[7], [8]])
    }

    /// A worker's data send over a link whose session libzmq ended (here: the peer's ZAP handler refused the key)
    /// neither blocks nor drops the tensor silently: after `Worker.linkDownSeconds` it fails naming the peer rank
    /// and its endpoint, while its liveness checks keep running.
    func testADataSendOverARefusedLinkFailsNamingThePeer() throws {
        let inbox = try RefusingCurveServer(.pull, domain: "attnres-data")
        defer { inbox.close() }
        // A worker whose coordinator never answers (its join timeout is far off), with one peer link to that inbox.
        let worker = try Worker(join: "tcp://127.0.0.1:\(try Self.freePorts(1)[0])", rank: 0, faults: [])
        let push = try Socket(worker.context, .push)
        defer { push.close(lingerMs: 0) }
        try push.setUnboundedQueues()
        try push.makeCurveClient(try CurveKeyPair.generate(), serverKey: inbox.key.publicKey)
        try push.connect(inbox.endpoint)
        worker.peers[1] = push
        worker.peerEndpoints[1] = inbox.endpoint
        try RefusingCurveServer.waitUntilThePipeIsGone(push)
        let header = FrameHeader(kind: .forward, step: 0, microbatch: 0, hop: 0, source: 0, destination: 1, tensors: [])
        let start = monotonicSeconds()
        XCTAssertThrowsError(try worker.sendData(to: 1, header: header, payloads: [])) { error in
            guard case WorkerError.linkDown(let r, let peer, let endpoint, _) = error else { return XCTFail("\(error)") }
            XCTAssertEqual([r, peer], [0, 1])
            XCTAssertEqual(endpoint, inbox.endpoint)
            XCTAssertTrue("\(error)".contains("the data link to rank 1 at \(inbox.endpoint) has had no connection for 3 s"), "\(error)")
        }
        XCTAssertGreaterThanOrEqual(monotonicSeconds() - start, Worker.linkDownSeconds, "it waited for a connection first")
        XCTAssertEqual(worker.counters.messagesSent, 0, "nothing was counted as sent")
    }

    /// A CURVE worker (`--keys`) refuses a setup that would give it plain data links or that does not list its own
    /// key for its rank: a failed message naming the field, exit 1. The coordinator here is the test, a CURVE ROUTER.
    func testCurveWorkerRefusesSetupWithoutOrWithWrongKeys() throws {
        let keys = try generateKeys("keys")
        let coordinatorKeys = try CurveKeys.coordinator(directory: keys, ranks: 4)
        let stranger = try CurveKeyPair.generate().publicKey
        let cases: [(String, [String]?, String)] = [
            ("no keys", nil, "setup: no curve_public_keys, but this worker was started with --keys \(keys): refusing plain data links"),
            ("wrong own key", [stranger, coordinatorKeys.rankPublicKeys[1]], "setup: curve_public_keys[0] is not this worker's public key"),
            ("wrong count", [coordinatorKeys.rankPublicKeys[0]], "setup: curve_public_keys must list 2 Z85 keys"),
        ]
        for (name, listed, expected) in cases {
            let context = ZContext()
            let zap = try ZAPHandler(context: context, admitted: [coordinatorKeys.rankPublicKeys[0]: "rank-0"]) { _ in }
            defer { zap.stop() }
            let router = try Socket(context, .router)
            defer { router.close() }
            try router.makeCurveServer(secretKey: coordinatorKeys.pair.secretKey, domain: "attnres-control")
            try router.bind("tcp://127.0.0.1:*")
            let worker = try Started(["worker", "--join", router.lastEndpoint, "--rank", "0", "--keys", keys], in: dir)
            var failure: String?, welcomed = false
            let deadline = Date().addingTimeInterval(60)
            while failure == nil, Date() < deadline {
                guard try !Socket.poll([router], timeoutMs: 50).isEmpty else { continue }
                while let frames = try router.receive(nonBlocking: true), frames.count == 2 {
                    XCTAssertEqual(frames[1].userId, "rank-0", "every message carries the ZAP user id of its key")
                    guard let m = try? ControlFrame.decode(FromWorker.self, from: frames[1]) else { continue }
                    if case .hello = m, !welcomed {
                        welcomed = true
                        func send(_ m: ToWorker) throws { try router.send([Message(bytes: Array("rank-0".utf8)), try ControlFrame.encode(m)]) }
                        try send(.welcome(rank: 0, version: 2))
                        try send(.setup(transport: .tcp, ipcDirectory: "/tmp", address: nil, ranks: 2, maxFrameBytes: 1 << 20, curvePublicKeys: listed))
                    }
                    if case .failed(_, let message) = m { failure = message }
                }
            }
            XCTAssertTrue(failure?.contains(expected) == true, "\(name): \(failure ?? "no failed message")")
            XCTAssertEqual(worker.wait("worker after \(name)", seconds: 30), 1, name)
        }
    }

    // MARK: rogue worker

    /// A worker with its own key pair (and the coordinator's public key, which is no secret) cannot join: refused by
    /// ZAP, counted and named with its address in the report, it exits non-zero by itself; the real workers then
    /// run with measured == predicted. Without CURVE the same process joins as rank 0 (negative control).
    func testRogueWorkerCannotJoinAndTheRunGoesOn() throws {
        let keys = try generateKeys("keys")
        let rogueKeys = try generateKeys("rogue")
        try FileManager.default.removeItem(atPath: "\(rogueKeys)/coordinator.pub")
        try FileManager.default.copyItem(atPath: "\(keys)/coordinator.pub", toPath: "\(rogueKeys)/coordinator.pub")
        let rogueKey = try CurveKeys.worker(directory: rogueKeys, rank: 0).pair.publicKey

        for curve in [true, false] {
            let port = try Self.freePorts(1)[0]
            let topo = try writeTopology("rogue-\(curve).yaml", dataPorts: try Self.freePorts(4), keys: curve ? "keys" : nil, coordinatorPort: port)
            let json = dir.appendingPathComponent("rogue-\(curve).json").path
            let endpoint = "tcp://127.0.0.1:\(port)"
            let coordinator = try Started(["coordinator", topo, "--json", json, "--join-timeout", "120"], in: dir)
            defer { if coordinator.process.isRunning { kill(coordinator.process.processIdentifier, SIGKILL) } }
            XCTAssertTrue(coordinator.waitForStderr("coordinator listening") { $0.contains("listening on") })
            let rogue = try Started(["worker", "--join", endpoint, "--rank", "0", "--join-timeout", "60"] + (curve ? ["--keys", rogueKeys] : []), in: dir)
            if curve {
                // Refused, it exits by itself, saying why.
                XCTAssertEqual(rogue.wait("rogue worker", seconds: 60), 1)
                XCTAssertTrue(rogue.stderr.contains("was not admitted by the coordinator at \(endpoint): its CURVE key was refused (ZAP status 400)"), rogue.stderr)
                XCTAssertTrue(coordinator.waitForStderr("refusal logged") { $0.contains("refused a CURVE connection from 127.0.0.1: public key \(rogueKey)") })
            } else {
                XCTAssertTrue(coordinator.waitForStderr("rogue joined") { $0.contains("rank 0 joined (pid \(rogue.process.processIdentifier)") },
                              "without CURVE any process that reaches the endpoint joins as rank 0")
            }
            let first = curve ? 0 : 1
            let workers = try (first..<4).map { r in
                try Started(["worker", "--join", endpoint, "--rank", "\(r)"] + (curve ? ["--keys", keys] : []), in: dir)
            }
            XCTAssertEqual(coordinator.wait("coordinator"), 0, coordinator.stdout + coordinator.stderr)
            for (i, w) in workers.enumerated() { XCTAssertEqual(w.wait("worker \(first + i)", seconds: 60), 0, w.stderr) }
            if !curve { XCTAssertEqual(rogue.wait("rogue worker", seconds: 60), 0) }
            let rep = try report(json)
            assertMatches(rep)
            if curve {
                let refused = rep.security?.refused ?? []
                XCTAssertGreaterThanOrEqual(rep.security?.refusedConnections ?? 0, 1)
                XCTAssertTrue(refused.contains { $0.address == "127.0.0.1" && $0.publicKey == rogueKey }, "\(refused)")
                XCTAssertFalse(rep.workers!.contains { $0.pid == rogue.process.processIdentifier })
                XCTAssertTrue(coordinator.stdout.contains("connections refused for an unknown key (from 127.0.0.1)"), coordinator.stdout)
            } else {
                XCTAssertNil(rep.security)
                XCTAssertTrue(rep.workers!.contains { $0.rank == 0 && $0.pid == rogue.process.processIdentifier }, "the rogue ran as rank 0")
            }
        }
    }

    // MARK: rogue data sender

    /// A process that reaches rank 1's data inbox and sends it a data frame claiming to come from rank 0. With
    /// CURVE its own key pair is refused by the inbox's ZAP handler (logged by rank 1) and the run finishes with
    /// measured == predicted; without CURVE the same frame reaches the inbox and the run fails naming it.
    func testRogueSenderCannotInjectADataFrame() throws {
        _ = try generateKeys("keys")
        let rogue = try CurveKeyPair.generate()
        for curve in [true, false] {
            let ports = try Self.freePorts(4)
            let topo = try writeTopology("inject-\(curve).yaml", dataPorts: ports, keys: curve ? "keys" : nil, steps: 10)
            let rank1Key = try CurveKeys.worker(directory: dir.appendingPathComponent("keys").path, rank: 1).pair.publicKey
            // Connected (libzmq retries every 10 ms) and the frame queued before the inbox exists: it is delivered the
            // moment rank 1 binds, whatever the machine's load.
            let context = ZContext()
            let push = try Socket(context, .push)
            try push.setInt(18 /* ZMQ_RECONNECT_IVL, ms */, 10)
            if curve { try push.makeCurveClient(rogue, serverKey: rank1Key) }
            try push.connect("tcp://127.0.0.1:\(ports[1])")
            let forged = FrameHeader(kind: .probe, step: 0, microbatch: 0, hop: 0, source: 0, destination: 1, tensors: [])
            _ = try DataMessage(header: forged, payloads: []).send(on: push)
            let json = dir.appendingPathComponent("inject-\(curve).json").path
            let r = try CLIProcess.run(["run", topo, "--json", json])
            push.close()
            if curve {
                XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
                assertMatches(try report(json))
                XCTAssertTrue(r.stderr.contains("[rank 1] refused a data connection from 127.0.0.1: CURVE key \(rogue.publicKey) is not a sender of this rank"),
                              r.stderr)
                XCTAssertFalse(r.stderr.contains("rejected"), r.stderr)
            } else {
                XCTAssertNotEqual(r.status, 0, "without CURVE the forged frame must reach rank 1's inbox: " + r.stdout)
                XCTAssertTrue(r.stderr.contains("worker rank 1 failed") && r.stderr.contains("link probe from rank 0"), r.stderr)
            }
        }
    }

    // MARK: passive listener

    /// tcpdump on the loopback, filtered to the four data ports: without CURVE the first block tensor of the first
    /// microbatch (its tag, 1.0f, then zeros: ShapeTensors) is in the capture; with CURVE it is not, though as many
    /// bytes went by.
    func testPassiveCaptureSeesTensorsOnlyWithoutCurve() throws {
        guard getuid() == 0 else { throw XCTSkip("tcpdump needs root (capture on the loopback); CI runs as root") }
        guard let tcpdump = TestHosts.tool("tcpdump") else {
            throw XCTSkip("tcpdump is not installed (make deps installs it)")
        }
        _ = try generateKeys("keys")
        let tag = ShapeTensors.tag(.block(0), direction: .forward, step: 0, microbatch: 0, hop: 0)
        XCTAssertEqual(tag, 1.0)
        let pattern = withUnsafeBytes(of: tag.bitPattern.littleEndian) { Array($0) } + [UInt8](repeating: 0, count: 1020)
        var captured: [Bool: (bytes: Int, found: Bool)] = [:]
        for curve in [false, true] {
            let ports = try Self.freePorts(4)
            let topo = try writeTopology("cap-\(curve).yaml", dataPorts: ports, keys: curve ? "keys" : nil)
            let pcap = dir.appendingPathComponent("cap-\(curve).pcap").path
            let filter = ports.map { "tcp port \($0)" }.joined(separator: " or ")
            let dump = try Started(["-i", "lo", "-U", "-s", "0", "-w", pcap, filter], in: dir, executable: tcpdump)
            defer { if dump.process.isRunning { kill(dump.process.processIdentifier, SIGKILL); dump.process.waitUntilExit() } }
            guard dump.waitForStderr("tcpdump listening", { $0.contains("listening on") }) else { return }
            let json = dir.appendingPathComponent("cap-\(curve).json").path
            let r = try CLIProcess.run(["run", topo, "--json", json])
            XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
            assertMatches(try report(json))
            kill(dump.process.processIdentifier, SIGINT)
            XCTAssertNotNil(dump.wait("tcpdump", seconds: 30))
            let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: pcap)))
            captured[curve] = (bytes.count, Self.contains(bytes, pattern))
        }
        XCTAssertEqual(captured[false]?.found, true, "the negative control: without CURVE the tensor bytes are in the capture")
        XCTAssertEqual(captured[true]?.found, false, "with CURVE the tensor bytes must not be in the capture")
        XCTAssertGreaterThan(captured[true]?.bytes ?? 0, (captured[false]?.bytes ?? 0) / 2, "the CURVE capture saw the traffic (encrypted)")
    }

    static func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
        guard let first = needle.first, haystack.count >= needle.count else { return false }
        var i = 0
        while i <= haystack.count - needle.count {
            if haystack[i] == first, haystack[i..<i + needle.count].elementsEqual(needle) { return true }
            i += 1
        }
        return false
    }

    // MARK: missing and wrong keys

    func testMissingOrWrongKeysAreClearErrors() throws {
        let keys = try generateKeys("keys")
        // Missing: the file is named, before any socket.
        try FileManager.default.removeItem(atPath: "\(keys)/rank-3.secret")
        let missing = try CLIProcess.run(["worker", "--join", "tcp://127.0.0.1:9", "--rank", "3", "--keys", keys], timeout: 60)
        XCTAssertEqual(missing.status, 1)
        XCTAssertTrue(missing.stderr.contains("\(keys)/rank-3.secret: no such file"), missing.stderr)
        // A pair that does not belong together.
        try FileManager.default.copyItem(atPath: "\(keys)/rank-1.pub", toPath: "\(dir.path)/rank-1.pub")
        try FileManager.default.removeItem(atPath: "\(keys)/rank-2.pub")
        try FileManager.default.copyItem(atPath: "\(keys)/rank-1.pub", toPath: "\(keys)/rank-2.pub")
        let mismatched = try CLIProcess.run(["worker", "--join", "tcp://127.0.0.1:9", "--rank", "2", "--keys", keys], timeout: 60)
        XCTAssertEqual(mismatched.status, 1)
        XCTAssertTrue(mismatched.stderr.contains("\(keys)/rank-2.pub is not the public key of \(keys)/rank-2.secret"), mismatched.stderr)
        // A secret others can read.
        chmod("\(keys)/rank-0.secret", 0o644)
        let exposed = try CLIProcess.run(["worker", "--join", "tcp://127.0.0.1:9", "--rank", "0", "--keys", keys], timeout: 60)
        XCTAssertEqual(exposed.status, 1)
        XCTAssertTrue(exposed.stderr.contains("\(keys)/rank-0.secret: a secret key readable by others (mode 644)"), exposed.stderr)
        // A malformed key.
        try "not a key\n".write(toFile: "\(keys)/rank-1.pub", atomically: false, encoding: .utf8)
        let malformed = try CLIProcess.run(["worker", "--join", "tcp://127.0.0.1:9", "--rank", "1", "--keys", keys], timeout: 60)
        XCTAssertEqual(malformed.status, 1)
        XCTAssertTrue(malformed.stderr.contains("\(keys)/rank-1.pub: rank 1's public key must be one line of 40 Z85 characters"), malformed.stderr)
        // A directory or a device where a secret key file should be is named as what it is (its mode 0755 or 0666
        // is not the problem).
        try FileManager.default.createDirectory(atPath: "\(keys)/rank-3.secret", withIntermediateDirectories: false, attributes: [.posixPermissions: 0o755])
        XCTAssertThrowsError(try CurveKeys.worker(directory: keys, rank: 3)) {
            XCTAssertEqual("\($0)", "\(keys)/rank-3.secret: is a directory, not a file")
        }
        try FileManager.default.removeItem(atPath: "\(keys)/rank-3.secret")
        try FileManager.default.createSymbolicLink(atPath: "\(keys)/rank-3.secret", withDestinationPath: "/dev/zero")
        XCTAssertThrowsError(try CurveKeys.worker(directory: keys, rank: 3)) {
            XCTAssertTrue("\($0)".hasPrefix("\(keys)/rank-3.secret: is not a regular file"), "\($0)")
        }
        // The coordinator's side: a topology whose key directory lacks a rank's public key is refused before any process starts.
        let topo = try writeTopology("t.yaml", dataPorts: try Self.freePorts(4), keys: "keys")
        let run = try CLIProcess.run(["run", topo])
        XCTAssertNotEqual(run.status, 0)
        XCTAssertTrue(run.stderr.contains("\(keys)/rank-1.pub: rank 1's public key must be one line"), run.stderr)
        let nowhere = try writeTopology("n.yaml", dataPorts: try Self.freePorts(4), keys: "no-such-dir")
        let none = try CLIProcess.run(["run", nowhere])
        XCTAssertNotEqual(none.status, 0)
        XCTAssertTrue(none.stderr.contains("\(dir.path)/no-such-dir/coordinator.secret: no such file"), none.stderr)
    }

    /// Wrong keys that only the other side can tell: a worker whose rank key is not listed is refused by the
    /// coordinator's ZAP handler and exits by itself, naming its key file; one holding another rank's key is refused
    /// its hello; one with the wrong coordinator public key gives up within its join timeout. None hangs.
    func testWrongKeysAreNotAdmittedAndTheWorkerExits() throws {
        let keys = try generateKeys("keys")
        let other = try generateKeys("other")
        let port = try Self.freePorts(1)[0]
        let topo = try writeTopology("t.yaml", dataPorts: try Self.freePorts(4), keys: "keys", coordinatorPort: port)
        let endpoint = "tcp://127.0.0.1:\(port)"
        let coordinator = try Started(["coordinator", topo, "--join-timeout", "120"], in: dir)
        defer { if coordinator.process.isRunning { kill(coordinator.process.processIdentifier, SIGKILL); coordinator.process.waitUntilExit() } }
        XCTAssertTrue(coordinator.waitForStderr("coordinator listening") { $0.contains("listening on") })

        // Rank 0's pair from another directory, the right coordinator key.
        let unlisted = dir.appendingPathComponent("unlisted").path
        try FileManager.default.createDirectory(atPath: unlisted, withIntermediateDirectories: true)
        for f in ["rank-0.pub", "rank-0.secret"] { try FileManager.default.copyItem(atPath: "\(other)/\(f)", toPath: "\(unlisted)/\(f)") }
        try FileManager.default.copyItem(atPath: "\(keys)/coordinator.pub", toPath: "\(unlisted)/coordinator.pub")
        let a = try CLIProcess.run(["worker", "--join", endpoint, "--rank", "0", "--keys", unlisted, "--join-timeout", "60"], timeout: 90)
        XCTAssertEqual(a.status, 1)
        XCTAssertTrue(a.stderr.contains("its CURVE key was refused (ZAP status 400): \(unlisted)/rank-0.secret"), a.stderr)

        // Rank 1's pair presented as rank 0's.
        let swapped = dir.appendingPathComponent("swapped").path
        try FileManager.default.createDirectory(atPath: swapped, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: "\(keys)/rank-1.pub", toPath: "\(swapped)/rank-0.pub")
        try FileManager.default.copyItem(atPath: "\(keys)/rank-1.secret", toPath: "\(swapped)/rank-0.secret")
        try FileManager.default.copyItem(atPath: "\(keys)/coordinator.pub", toPath: "\(swapped)/coordinator.pub")
        let b = try CLIProcess.run(["worker", "--join", endpoint, "--rank", "0", "--keys", swapped, "--join-timeout", "60"], timeout: 90)
        XCTAssertEqual(b.status, 1)
        XCTAssertTrue(b.stderr.contains("refused to let it join: a peer claiming rank 0 must authenticate with rank 0's CURVE key; this one has the key of rank 1"), b.stderr)

        // The wrong coordinator key: no handshake can complete.
        let c = try CLIProcess.run(["worker", "--join", endpoint, "--rank", "0", "--keys", other, "--join-timeout", "5"], timeout: 90)
        XCTAssertEqual(c.status, 1)
        XCTAssertTrue(c.stderr.contains("worker rank 0 was not admitted by the coordinator at \(endpoint)") && c.stderr.contains("\(other)/coordinator.pub"), c.stderr)

        // A plain worker (no --keys) is not admitted either.
        let d = try CLIProcess.run(["worker", "--join", endpoint, "--rank", "0", "--join-timeout", "5"], timeout: 90)
        XCTAssertEqual(d.status, 1, d.stderr)
        XCTAssertTrue(d.stderr.contains("worker rank 0 was not admitted by the coordinator at \(endpoint): the handshake failed")
                      && d.stderr.contains("start this worker with --keys DIR"), d.stderr)
        kill(coordinator.process.processIdentifier, SIGTERM)
        XCTAssertNotNil(coordinator.wait("coordinator"))
    }
}

/// A CURVE server socket on a free tcp port of 127.0.0.1 whose context's ZAP handler admits no key: every client's
/// handshake is refused (status 400), and libzmq then ends the client's session for good.
struct RefusingCurveServer {
    let key: CurveKeyPair
    let context = ZContext()
    let zap: ZAPHandler
    let socket: Socket

    init(_ type: SocketType, domain: String) throws {
        key = try CurveKeyPair.generate()
        zap = try ZAPHandler(context: context, admitted: [:]) { _ in }
        socket = try Socket(context, type)
        try socket.makeCurveServer(secretKey: key.secretKey, domain: domain)
        try socket.bind("tcp://127.0.0.1:*")
    }

    var endpoint: String { socket.lastEndpoint }

    func close() {
        socket.close()
        zap.stop()
    }

    /// Sends probe messages until `client` has no pipe left to queue them in (its refused session is gone); the ones
    /// queued until then go down with the pipe. Fails the test after 60 s.
    static func waitUntilThePipeIsGone(_ client: Socket, file: StaticString = #filePath, line: UInt = #line) throws {
        let deadline = Date().addingTimeInterval(60)
        while try client.trySend(Message(bytes: [0])) {
            guard Date() < deadline else { return XCTFail("the refused session kept its pipe for 60 s", file: file, line: line) }
            _ = try Socket.poll([client], timeoutMs: 10)
        }
    }
}
