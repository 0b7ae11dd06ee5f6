import Foundation
import XCTest
@testable import Cluster
@testable import Pipeline
@testable import Wire

/// Peers that are not workers of the run, or send what no worker of the run would, against real worker processes:
/// nothing they send crashes, hangs or bloats a process; the run completes with correct results, or fails with
/// a message naming the peer; no process is left.
final class HostilePeerTests: XCTestCase {
    /// A PUSH socket of no rank, connected to rank 1's data inbox; its sends return once the connection is up.
    func rogueSender(to coordinator: Coordinator) throws -> Socket {
        let rogue = try Socket(ZContext(), .push)
        try rogue.setImmediate()
        try rogue.connect(coordinator.dataEndpoints[1])
        return rogue
    }

    /// A started local cluster of real worker processes (the `attnres` binary).
    func cluster(_ t: Topology) throws -> Coordinator {
        let c = try Coordinator(topology: t, joinTimeout: 30, silenceTimeout: 30, workerExecutable: CLIProcess.binary)
        c.phaseTimeout = 120
        try c.start()
        return c
    }

    func controlFrame(_ json: String, version: UInt16 = 2) -> Message {
        var b = Frame.magic
        b.le(version); b.le(ControlFrame.kind)
        return Message(bytes: b + Array(json.utf8))
    }

    /// Reads messages on `socket` until `count` have arrived or `seconds` pass.
    func receive(_ socket: Socket, count: Int, seconds: Double = 30) throws -> [Message] {
        var got: [Message] = []
        let deadline = Date().addingTimeInterval(seconds)
        while got.count < count, Date() < deadline {
            guard try !Socket.poll([socket], timeoutMs: 50).isEmpty else { continue }
            while let frames = try socket.receive(nonBlocking: true) { got += frames }
        }
        return got
    }

    /// A rogue DEALER on a running coordinator's control endpoint: step_done for rank 99, four reports for ranks
    /// 10–13, a hello for a joined rank, a step_done claiming rank 1, garbage, a three-frame message and a version 1
    /// hello. Every one is dropped or refused; the run still measures exactly what the model predicts.
    func testRogueControlPeerCannotCrashOrDerailTheCoordinator() throws {
        var t = Topology()
        t.steps = 2
        let coordinator = try cluster(t)
        defer { coordinator.shutdown(); CLIProcess.assertNoOrphans() }
        let ctx = ZContext()
        let rogue = try Socket(ctx, .dealer)
        defer { rogue.close() }
        try rogue.setIdentity("rogue")
        try rogue.connect(coordinator.endpoint)
        let report = WorkerReport(rank: 0, received: [], sent: [], headerBytesSent: 0, messagesSent: 0, peakCachedBytes: 0,
                                  tensorsPerHop: [:], computeSeconds: 0, waitSeconds: 0)
        var messages: [Message] = [
            try ControlFrame.encode(FromWorker.stepDone(rank: 99, variant: 0, step: 0, loss: nil)),
            try ControlFrame.encode(FromWorker.hello(rank: 1, pid: 1, host: "rogue", versions: [2])),
            try ControlFrame.encode(FromWorker.stepDone(rank: 1, variant: 0, step: 0, loss: nil)),
            try ControlFrame.encode(FromWorker.failed(rank: 2, message: "forged failure")),
            Message(bytes: Array("garbage, not a control frame".utf8)),
            controlFrame(#"{"type":"step_done","rank":1,"variant":0,"step":"soon"}"#),
            controlFrame(#"{"hello":{"rank":3,"pid":7,"host":"old"}}"#, version: 1),
        ]
        for r in 10...13 {
            var fake = report
            fake.rank = r
            messages.append(try ControlFrame.encode(FromWorker.report(fake)))
        }
        for m in messages { try rogue.send([m]) }
        try rogue.send([Message(bytes: [1]), Message(bytes: [2])])
        let expected = messages.count + 1
        // Wait (bounded) until the coordinator has read every rogue message, so the run below sees them all handled.
        let deadline = Date().addingTimeInterval(30)
        while coordinator.droppedMessages < expected, Date() < deadline {
            _ = try Socket.poll([coordinator.router], timeoutMs: 50)
            try coordinator.receivePending()
        }
        XCTAssertEqual(coordinator.droppedMessages, expected)
        let result = try coordinator.run(t)
        XCTAssertTrue(result.matchesPrediction, result.mismatches.joined(separator: "\n"))
        XCTAssertEqual(coordinator.workers.count, t.ranks)
        XCTAssertNotEqual(coordinator.workers[1]?.host, "rogue", "the rogue's hello did not replace rank 1")

        let replies = try receive(rogue, count: 2).map { try ControlFrame.decode(ToWorker.self, from: $0) }
        XCTAssertEqual(replies.count, 2, "a refusal for each hello")
        let reasons = replies.compactMap { if case .refused(let reason, let versions) = $0, versions == [2] { return reason }; return nil }
        XCTAssertTrue(reasons.contains { $0.contains("rank 1 has already joined") }, "\(reasons)")
        XCTAssertTrue(reasons.contains { $0.contains("the worker speaks 1, this coordinator speaks 2") }, "\(reasons)")
    }

    /// A worker of protocol version 1 is refused by name, not reported as "never joined".
    func testVersionOneWorkerIsRefusedClearly() throws {
        var t = Topology()
        t.ranks = 2; t.virtualStages = 1; t.schedule = .oneFOneB
        let coordinator = try Coordinator(topology: t, joinTimeout: 3, silenceTimeout: 30, spawnLocal: false)
        defer { coordinator.shutdown() }
        let ctx = ZContext()
        let old = try Socket(ctx, .dealer)
        defer { old.close() }
        try old.setIdentity("rank-0")
        try old.connect(coordinator.endpoint)
        try old.send([controlFrame(#"{"hello":{"rank":0,"pid":7,"host":"old"}}"#, version: 1)])
        XCTAssertThrowsError(try coordinator.start()) { error in
            guard case ClusterError.joinRefused(let rank, let peer, _) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(rank, 0)
            XCTAssertEqual(peer, "'rank-0'")
            XCTAssertTrue("\(error)".contains("the worker speaks 1, this coordinator speaks 2"), "\(error)")
        }
        let reply = try receive(old, count: 1)
        XCTAssertEqual(reply.count, 1)
        XCTAssertEqual(try reply.first.map { try ControlFrame.version(of: $0) }, 2)
    }

    /// A joined worker that breaks the protocol (a second `bound`) stops the run with an error naming its peer,
    /// rank and field.
    func testJoinedWorkerBreakingTheProtocolIsNamed() throws {
        var t = Topology()
        t.ranks = 2; t.virtualStages = 1; t.schedule = .oneFOneB
        let coordinator = try Coordinator(topology: t, joinTimeout: 30, silenceTimeout: 30, spawnLocal: false)
        defer { coordinator.shutdown() }
        let ctx = ZContext()
        var fakes: [Socket] = []
        defer { fakes.forEach { $0.close() } }
        for r in 0..<2 {
            let s = try Socket(ctx, .dealer)
            try s.setIdentity("rank-\(r)")
            try s.connect(coordinator.endpoint)
            try s.send([try ControlFrame.encode(FromWorker.hello(rank: r, pid: 1, host: "fake", versions: [2]))])
            fakes.append(s)
        }
        for _ in 0..<2 { try fakes[0].send([try ControlFrame.encode(FromWorker.bound(rank: 0, endpoint: "ipc:///nowhere"))]) }
        XCTAssertThrowsError(try coordinator.start()) { error in
            guard case ClusterError.protocolViolation(let peer, let rank, let field, _) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(peer, "'rank-0'"); XCTAssertEqual(rank, 0); XCTAssertEqual(field, "type")
            XCTAssertTrue("\(error)".contains("a second bound message"), "\(error)")
        }
    }

    /// An attnres worker asking for a rank the cluster does not have is refused and exits naming the reason.
    func testWorkerForARankOutOfRangeIsRefusedAndExits() throws {
        var t = Topology()
        t.ranks = 2; t.virtualStages = 1; t.schedule = .oneFOneB
        let coordinator = try Coordinator(topology: t, joinTimeout: 30, silenceTimeout: 30, spawnLocal: false)
        defer { coordinator.shutdown(); CLIProcess.assertNoOrphans() }
        _ = CLIProcess.becomeSubreaper
        let p = Process()
        p.executableURL = URL(fileURLWithPath: CLIProcess.binary)
        p.arguments = ["worker", "--join", coordinator.endpoint, "--rank", "7"]
        let err = Pipe()
        p.standardError = err
        try p.run()
        // The coordinator answers hellos only while it waits: poll (bounded) until the refused worker has exited. Not
        // until the first dropped message: under load the worker's heartbeat can arrive (and be dropped) before its hello.
        let deadline = Date().addingTimeInterval(30)
        while p.isRunning, Date() < deadline {
            _ = try Socket.poll([coordinator.router], timeoutMs: 50)
            try coordinator.receivePending()
        }
        XCTAssertTrue(Watchdog.waitForExit(p, "refused worker", seconds: 30))
        XCTAssertEqual(p.terminationStatus, 1)
        XCTAssertGreaterThan(coordinator.droppedMessages, 0, "the refused hello is counted")
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        XCTAssertTrue(stderr.contains("the coordinator refused to let it join: rank 7 is not in 0…1"), stderr)
    }

    /// A rogue PUSH on a worker's inbox sends a 56-byte header announcing 2^31 × 2^31 × 4 elements: the worker
    /// rejects it naming the claimed sender (before, the byte count overflowed and trapped).
    func testHugeShapeHeaderFailsTheWorkerCleanly() throws {
        var t = Topology()
        t.steps = 20  // rank 1 reads its inbox many times while the rogue frame is in flight
        let coordinator = try cluster(t)
        defer { coordinator.shutdown(); CLIProcess.assertNoOrphans() }
        let rogue = try rogueSender(to: coordinator)
        defer { rogue.close() }
        let huge = TensorDescriptor(role: .block, block: 1, partialLayers: 0, dims: [1 << 31, 1 << 31, 4])
        let header = FrameHeader(kind: .forward, step: 0, microbatch: 0, hop: 0, source: 0, destination: 1, tensors: [huge]).encode()
        XCTAssertEqual(header.count, 56)
        try rogue.send([Message(bytes: header)])
        XCTAssertThrowsError(try coordinator.run(t)) { error in
            XCTAssertTrue("\(error)".contains("worker rank 1 failed"), "\(error)")
            XCTAssertTrue("\(error)".contains("claiming to come from rank 0"), "\(error)")
            XCTAssertTrue("\(error)".contains("more than 2^40 elements"), "\(error)")
        }
    }

    /// Compute mode: a rogue frame with the right key and roles but another shape ([1, 1, 1], 4-byte payloads) is
    /// refused naming the sender, the tensor and both shapes (before, the worker trapped building the tensor).
    func testComputeModeFrameOfTheWrongShapeFailsTheWorkerCleanly() throws {
        var t = Topology()
        t.mode = .compute
        t.ranks = 2; t.virtualStages = 1; t.schedule = .oneFOneB
        t.layers = 4; t.blocks = 2; t.hidden = 16; t.heads = 2; t.seq = 8; t.vocab = 32; t.microbatches = 2
        let coordinator = try cluster(t)
        defer { coordinator.shutdown(); CLIProcess.assertNoOrphans() }
        let rogue = try rogueSender(to: coordinator)
        defer { rogue.close() }
        let plan = HopPlan(layout: t.layout, residual: t.residualConfig)
        let tiny = plan.tensors[0].map { role -> TensorDescriptor in
            var d = HopWire.descriptor(role, t)
            d.dims = [1, 1, 1]
            return d
        }
        let header = FrameHeader(kind: .forward, step: 0, microbatch: 0, hop: 0, source: 0, destination: 1, tensors: tiny)
        try DataMessage(header: header, payloads: tiny.map { _ in Message(bytes: [0, 0, 0, 0]) }).send(on: rogue)
        XCTAssertThrowsError(try coordinator.run(t)) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("worker rank 1 failed"), text)
            // Either the rogue frame came first (refused for its shape) or the real one did (the rogue one is then a duplicate).
            XCTAssertTrue(text.contains("has shape [1, 1, 1] float32, expected [2, 8, 16] float32") || text.contains("duplicate"), text)
        }
    }

    /// A hostile coordinator's setup, connect and run messages with values out of range: a real worker answers each
    /// with `failed` naming the field, and exits 1 (never a trap on a rank that does not fit a u16 or a step count
    /// that overflows).
    func testWorkerRefusesOutOfRangeCoordinatorMessages() throws {
        let cases: [(String, [ToWorker], String)] = [
            ("setup ranks", [.setup(transport: .ipc, ipcDirectory: "/tmp", address: nil, ranks: 70_000, maxFrameBytes: 1 << 20)],
             "setup: ranks 70000 (2…65536"),
            ("setup port", [.setup(transport: .tcp, ipcDirectory: "/tmp", address: RankAddress(host: "127.0.0.1", port: 70_000), ranks: 2,
                                   maxFrameBytes: 1 << 20)], "setup: address port 70000 is not in 0…65535"),
            ("connect count", [.setup(transport: .tcp, ipcDirectory: "/tmp", address: nil, ranks: 2, maxFrameBytes: 1 << 20),
                               .connect(endpoints: Array(repeating: "tcp://127.0.0.1:1", count: 70_000))],
             "connect lists 70000 endpoints for rank 0; setup announced 2 ranks"),
            ("setup curve keys", [.setup(transport: .tcp, ipcDirectory: "/tmp", address: nil, ranks: 2, maxFrameBytes: 1 << 20,
                                         curvePublicKeys: [try CurveKeyPair.generate().publicKey, try CurveKeyPair.generate().publicKey])],
             "setup: curve_public_keys given, but this worker was started without --keys"),
        ]
        for (name, messages, expected) in cases {
            let router = try Socket(ZContext(), .router)
            defer { router.close() }
            try router.bind("tcp://127.0.0.1:*")
            _ = CLIProcess.becomeSubreaper
            let p = Process()
            p.executableURL = URL(fileURLWithPath: CLIProcess.binary)
            p.arguments = ["worker", "--join", router.lastEndpoint, "--rank", "0"]
            p.standardError = FileHandle.nullDevice
            try p.run()
            let hello = try receive(router, count: 2)  // routing id, hello (a heartbeat may come with it)
            XCTAssertGreaterThanOrEqual(hello.count, 2, name)
            func send(_ m: ToWorker) throws { try router.send([Message(bytes: Array("rank-0".utf8)), try ControlFrame.encode(m)]) }
            try send(.welcome(rank: 0, version: 2))
            for m in messages { try send(m) }
            // Read until the worker's `failed` arrives (bound and heartbeats may come first).
            var failure: String?
            let deadline = Date().addingTimeInterval(30)
            while failure == nil, Date() < deadline {
                guard try !Socket.poll([router], timeoutMs: 50).isEmpty else { continue }
                while let frames = try router.receive(nonBlocking: true), frames.count == 2 {
                    if case .failed(_, let message)? = try? ControlFrame.decode(FromWorker.self, from: frames[1]) { failure = message }
                }
            }
            XCTAssertTrue(failure?.contains(expected) == true, "\(name): \(failure ?? "no failed message")")
            XCTAssertTrue(Watchdog.waitForExit(p, "worker after \(name)", seconds: 30))
            XCTAssertEqual(p.terminationStatus, 1, name)
        }
        CLIProcess.assertNoOrphans()
    }

    /// Many valid frames for a key no action of the rank takes (step 99 of a 20-step variant): the first one
    /// fails the worker naming the sender and the key, so the stash never grows.
    func testFramesForAKeyNoActionTakesFailTheWorker() throws {
        var t = Topology()
        t.steps = 20
        let coordinator = try cluster(t)
        defer { coordinator.shutdown(); CLIProcess.assertNoOrphans() }
        let rogue = try rogueSender(to: coordinator)
        defer { rogue.close() }
        let plan = HopPlan(layout: t.layout, residual: t.residualConfig)
        let header = FrameHeader(kind: .forward, step: 99, microbatch: 0, hop: 0, source: 0, destination: 1,
                                 tensors: plan.tensors[0].map { HopWire.descriptor($0, t) })
        for _ in 0..<600 {
            try DataMessage(header: header, payloads: plan.tensors[0].map { _ in Message(bytes: [UInt8](repeating: 0, count: t.trafficConfig.activationBytes)) })
                .send(on: rogue)
        }
        XCTAssertThrowsError(try coordinator.run(t)) { error in
            XCTAssertTrue("\(error)".contains("worker rank 1 failed"), "\(error)")
            XCTAssertTrue("\(error)".contains("from rank 0 (variant 0 step 99 forward hop 0 microbatch 0)"), "\(error)")
            XCTAssertTrue("\(error)".contains("the variant has steps 0…19"), "\(error)")
        }
    }

    /// A frame larger than the session's largest legal frame never reaches the worker: libzmq drops the rogue's
    /// connection (ZMQ_MAXMSGSIZE), and the run completes with exactly the predicted traffic.
    func testOversizedFrameIsDroppedByLibzmq() throws {
        var t = Topology()
        t.steps = 20
        let coordinator = try cluster(t)
        defer { coordinator.shutdown(); CLIProcess.assertNoOrphans() }
        let rogue = try rogueSender(to: coordinator)
        defer { rogue.close() }
        // A header-looking frame one byte over the limit: were it delivered, the worker would reject it and fail.
        var big = FrameHeader(kind: .forward, step: 0, microbatch: 0, hop: 0, source: 0, destination: 1, tensors: []).encode()
        big += [UInt8](repeating: 0, count: t.largestDataFrameBytes + 1 - big.count)
        try rogue.send([Message(bytes: big)])
        let result = try coordinator.run(t)
        XCTAssertTrue(result.matchesPrediction, result.mismatches.joined(separator: "\n"))
    }

    /// A worker alive but finishing no step for --progress-timeout is named with the phase (the stall fault keeps
    /// rank 2 heartbeating but busy for 4 s, and its neighbours wait on it).
    func testProgressTimeoutNamesARankAndThePhase() throws {
        let r = try CLIProcess.run(["run", "--steps", "3", "--fault", "stall:2@1", "--progress-timeout", "2"])
        XCTAssertNotEqual(r.status, 0, r.stdout)
        XCTAssertTrue(r.stderr.contains("is alive but finished no step for"), r.stderr)
        XCTAssertTrue(r.stderr.contains("during variant block/cross-stage"), r.stderr)
        XCTAssertTrue(r.stderr.contains("--progress-timeout"), r.stderr)
        XCTAssertLessThan(r.seconds, 10, "the timeout fired before the stall ended")
        CLIProcess.assertNoOrphans()
    }
}
