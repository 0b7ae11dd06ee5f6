import Foundation
import XCTest
import Cluster
import Wire
#if canImport(Glibc)
import Glibc
#endif

/// The regression corpus (Tests/Corpus) sent to real processes: every data-frame input to a worker's data
/// inbox, every control frame to a worker's control socket and to a coordinator. A process must reject what
/// its decoder rejects with a message naming the rank and the decoder's own error, go on with what decodes, and
/// never crash or hang; nothing is left behind.
final class LiveCorpusReplayTests: XCTestCase {
    /// Two ranks, one chunk each, 20 small steps: rank 1 reads its inbox many times while an input is in flight.
    static var smallTopology: Topology {
        var t = Topology()
        t.name = "corpus-replay"
        t.ranks = 2; t.virtualStages = 1; t.schedule = .oneFOneB
        t.layers = 4; t.blocks = 2; t.hidden = 8; t.heads = 2; t.seq = 4; t.vocab = 16
        t.microbatches = 2; t.microbatchSize = 1; t.steps = 20
        return t
    }

    /// The data-frame corpus, plus its findings rebuilt with this build's encoder (which tracks the wire version).
    static func dataInputs() throws -> [(name: String, frames: () -> [Message])] {
        let overflow = FrameHeader(kind: .forward, step: 0, microbatch: 0, hop: 0, source: 0, destination: 1, tensors: [
            TensorDescriptor(role: .hidden, block: 0, partialLayers: 0, dims: [1 << 31, 1 << 31, 4]),
        ]).encode()
        return try (RegressionCorpus.inputs("data-frame") + [("encoded dims 2^31·2^31·4", overflow)]).map { input in
            (input.name, { frames(header: input.bytes) })
        }
    }

    /// The header, followed by payload frames of the sizes it announces when it decodes and they are small.
    static func frames(header: [UInt8]) -> [Message] {
        guard let h = try? header.withUnsafeBytes({ try FrameHeader.decode($0) }) else { return [Message(bytes: header)] }
        let sizes = h.tensors.map(\.payloadBytes)
        guard sizes.allSatisfy({ $0 <= 1 << 20 }) else { return [Message(bytes: header)] }
        return [Message(bytes: header)] + sizes.map { Message(bytes: [UInt8](repeating: 0, count: $0)) }
    }

    func testDataCorpusSentToAWorkersInboxIsRejectedCleanly() throws {
        let t = LiveCorpusReplayTests.smallTopology
        try t.validate()
        for (name, makeFrames) in try LiveCorpusReplayTests.dataInputs() {
            let coordinator = try Coordinator(topology: t, joinTimeout: 30, silenceTimeout: 30, workerExecutable: CLIProcess.binary)
            coordinator.phaseTimeout = 60  // a worker that hangs on an input fails the test instead of stalling it
            defer { coordinator.shutdown(); CLIProcess.assertNoOrphans() }
            try coordinator.start()
            let pids = coordinator.workers.values.map(\.pid)
            let ctx = ZContext()
            let rogue = try Socket(ctx, .push)
            defer { rogue.close() }
            try rogue.setImmediate()  // the send below returns only once the connection to rank 1 is up
            try rogue.connect(coordinator.dataEndpoints[1])
            let decoderSays: FrameError?
            do { _ = try DataMessage.decode(makeFrames()); decoderSays = nil } catch let e as FrameError { decoderSays = e }
            try rogue.send(makeFrames())
            do {
                _ = try coordinator.run(t)
                XCTAssertNil(decoderSays, "\(name): the worker ran on after an input its decoder rejects with '\(decoderSays!)'")
            } catch ClusterError.workerFailed(let rank, let message) {
                XCTAssertEqual(rank, 1, "\(name): \(message)")
                if let decoderSays {
                    XCTAssertTrue(message.hasPrefix("worker rank 1: rejected a data message"), "\(name): \(message)")
                    XCTAssertTrue(message.hasSuffix(": \(decoderSays)"), "\(name): '\(message)' lacks the decoder's error '\(decoderSays)'")
                }
            } catch {
                XCTFail("\(name): the worker did not reject the input cleanly: \(error)")
            }
            coordinator.shutdown()
            for pid in pids { XCTAssertNotEqual(kill(pid, 0), 0, "\(name): worker pid \(pid) outlived its coordinator") }
        }
    }

    func testControlCorpusSentToAWorkerIsRejectedCleanly() throws {
        let inputs = try RegressionCorpus.inputs("control-message")
        var checked = 0
        for (name, bytes) in inputs {
            let stand = try CoordinatorStandIn()
            defer { stand.stop() }
            guard let worker = try stand.startWorker(rank: 0, name) else { continue }
            let decoderSays: FrameError?
            do { _ = try ControlFrame.decode(ToWorker.self, from: Message(bytes: bytes)); decoderSays = nil } catch let e as FrameError {
                decoderSays = e
            }
            try stand.send(to: 0, bytes)
            if decoderSays == nil { try stand.send(to: 0, try ControlFrame.encode(ToWorker.shutdown).array) }
            guard Watchdog.waitForExit(worker.process, "worker rank 0 after corpus input \(name)", seconds: 30) else { continue }
            let stderr = worker.stderr()
            checked += 1
            XCTAssertEqual(worker.process.terminationReason, .exit, "\(name): the worker was killed by a signal\n\(stderr)")
            if let decoderSays {
                XCTAssertEqual(worker.process.terminationStatus, 1, "\(name)\n\(stderr)")
                XCTAssertTrue(stderr.contains("[rank 0] \(decoderSays)"), "\(name): stderr lacks the decoder's error '\(decoderSays)':\n\(stderr)")
                XCTAssertTrue(stand.received(containing: "\(decoderSays)"), "\(name): no failure report reached the coordinator")
            } else if worker.process.terminationStatus != 0 {
                // A message that decodes but cannot be carried out: a clean failure, named on stderr.
                XCTAssertEqual(worker.process.terminationStatus, 1, "\(name)\n\(stderr)")
                XCTAssertTrue(stderr.contains("[rank 0] worker rank 0: "), "\(name): no clear error on stderr:\n\(stderr)")
            }
        }
        XCTAssertEqual(checked, inputs.count, "every input reached a worker that then exited")
        CLIProcess.assertNoOrphans()
    }

    /// A coordinator drops every corpus frame from a peer that is not one of its workers, logging one line each
    /// that names the peer and, for a frame of its own version, the decoder's error, and keeps waiting for its
    /// workers; SIGTERM then stops it with a normal non-zero exit.
    func testControlCorpusSentToACoordinatorIsDroppedWithAMessage() throws {
        _ = CLIProcess.becomeSubreaper
        let inputs = try RegressionCorpus.inputs("control-message")
        let p = Process()
        p.executableURL = URL(fileURLWithPath: CLIProcess.binary)
        p.arguments = ["coordinator", "--join-timeout", "120"]
        let err = Pipe()
        p.standardError = err
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        defer { if p.isRunning { kill(p.processIdentifier, SIGKILL) }; CLIProcess.assertNoOrphans() }
        let log = StreamLog(err.fileHandleForReading)
        let listening = "coordinator listening on "
        guard log.waitUntil("the coordinator's endpoint", seconds: 60, { $0.line(containing: listening) != nil }),
              let endpoint = log.line(containing: listening)?.components(separatedBy: listening).last?.split(separator: " ").first else {
            return XCTFail("no endpoint in the coordinator's log:\n\(log.text)")
        }
        let ctx = ZContext()
        let rogue = try Socket(ctx, .dealer)
        defer { rogue.close() }
        try rogue.setIdentity("corpus-replay")
        try rogue.connect(String(endpoint))
        for (_, bytes) in inputs { try rogue.send([Message(bytes: bytes)]) }
        let peer = "peer 'corpus-replay'"
        log.waitUntil("\(inputs.count) lines naming the \(peer)", seconds: 60) { $0.text.components(separatedBy: peer).count - 1 >= inputs.count }
        for (name, bytes) in inputs {
            let frame = Message(bytes: bytes)
            guard (try? ControlFrame.version(of: frame)) ?? Frame.version == Frame.version else { continue }
            do { _ = try ControlFrame.decode(FromWorker.self, from: frame) } catch {
                XCTAssertTrue(log.text.contains("\(peer): \(error)"), "\(name): the coordinator did not report '\(error)':\n\(log.text)")
            }
        }
        XCTAssertTrue(p.isRunning, "the coordinator stopped on a corpus frame:\n\(log.text)")
        kill(p.processIdentifier, SIGTERM)
        guard Watchdog.waitForExit(p, "the coordinator after SIGTERM", seconds: 30) else { return }
        XCTAssertEqual(p.terminationReason, .exit, log.text)
        XCTAssertNotEqual(p.terminationStatus, 0)
        log.waitUntil("the end of the coordinator's stderr", seconds: 30) { $0.closed }
        XCTAssertTrue(log.text.contains("interrupted by signal 15"), log.text)
    }
}

/// Plays the coordinator for one worker process: binds a ROUTER, starts `attnres worker --join`, and exchanges
/// raw control frames with it, so a test can send it any bytes.
final class CoordinatorStandIn {
    let directory: String
    let context = ZContext()
    let router: Socket
    let endpoint: String
    var workers: [WorkerProcess] = []
    /// Every control frame received so far, as text (JSON bodies).
    private(set) var receivedText: [String] = []

    struct WorkerProcess {
        let process: Process
        let stderrFile: URL
        func stderr() -> String { (try? String(contentsOf: stderrFile, encoding: .utf8)) ?? "" }
    }

    init() throws {
        _ = CLIProcess.becomeSubreaper
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("attnres-standin-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        router = try Socket(context, .router)
        try router.setRouterMandatory()
        endpoint = "ipc://\(directory)/control"
        try router.bind(endpoint)
    }

    /// Starts a worker, waits for its hello and welcomes it (nil, and the test failed, when no hello came).
    func startWorker(rank: Int, _ what: String) throws -> WorkerProcess? {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: CLIProcess.binary)
        p.arguments = ["worker", "--join", endpoint, "--rank", "\(rank)"]
        let errFile = URL(fileURLWithPath: directory).appendingPathComponent("rank-\(rank).err")
        _ = FileManager.default.createFile(atPath: errFile.path, contents: nil)
        p.standardError = try FileHandle(forWritingTo: errFile)
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        let worker = WorkerProcess(process: p, stderrFile: errFile)
        workers.append(worker)
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline {
            if receive(timeoutMs: 100).contains(where: { $0.id == "rank-\(rank)" && $0.text.contains("\"hello\"") }) {
                try send(to: rank, try ControlFrame.encode(ToWorker.welcome(rank: rank, version: Int(Frame.version))).array)
                return worker
            }
            if !p.isRunning { break }
        }
        XCTFail("\(what): worker rank \(rank) sent no hello within 60 s\n\(worker.stderr())")
        return nil
    }

    func send(to rank: Int, _ bytes: [UInt8]) throws {
        try router.send([Message(bytes: Array("rank-\(rank)".utf8)), Message(bytes: bytes)])
    }

    /// Frames (routing id, body as text) that arrive within `timeoutMs`.
    @discardableResult
    func receive(timeoutMs: Int) -> [(id: String, text: String)] {
        guard (try? Socket.poll([router], timeoutMs: timeoutMs))?.isEmpty == false else { return [] }
        var out: [(String, String)] = []
        while let frames = try? router.receive(nonBlocking: true), frames.count == 2 {
            let text = String(decoding: frames[1].array, as: UTF8.self)
            receivedText.append(text)
            out.append((String(decoding: frames[0].array, as: UTF8.self), text))
        }
        return out
    }

    /// Whether a frame containing `needle` has arrived (reading what is waiting first). The worker's failure
    /// report is sent before it exits, with linger, so after its exit it is here or lost.
    func received(containing needle: String) -> Bool {
        let escaped = String(decoding: (try? JSONEncoder().encode(needle)) ?? Data(), as: UTF8.self).dropFirst().dropLast()
        receive(timeoutMs: 500)
        return receivedText.contains { $0.contains(escaped) }
    }

    /// Kills any worker still running and removes the socket file and the directory.
    func stop() {
        for w in workers where w.process.isRunning {
            kill(w.process.processIdentifier, SIGKILL)
            w.process.waitUntilExit()
        }
        router.close()
        try? FileManager.default.removeItem(atPath: directory)
    }
}

/// A child's output read on a thread of its own as it comes, so a test waits for a line with a bound.
final class StreamLog: @unchecked Sendable {
    private let lock = NSLock()
    private var buffer = ""
    private var eof = false
    private let changed = DispatchSemaphore(value: 0)

    init(_ handle: FileHandle) {
        Thread { [self] in
            while true {
                let chunk = handle.availableData
                lock.lock()
                if chunk.isEmpty { eof = true } else { buffer += String(decoding: chunk, as: UTF8.self) }
                lock.unlock()
                changed.signal()
                if chunk.isEmpty { return }
            }
        }.start()
    }

    var text: String { lock.lock(); defer { lock.unlock() }; return buffer }
    var closed: Bool { lock.lock(); defer { lock.unlock() }; return eof }

    /// The first line containing `needle`, if one has arrived.
    func line(containing needle: String) -> String? {
        text.split(separator: "\n").first { $0.contains(needle) }.map(String.init)
    }

    /// Waits until `condition` holds (true) or `seconds` pass (false, and the test failed naming `what`).
    @discardableResult
    func waitUntil(_ what: String, seconds: Double, file: StaticString = #filePath, line: UInt = #line,
                   _ condition: (StreamLog) -> Bool) -> Bool {
        let deadline = DispatchTime.now() + seconds
        while !condition(self) {
            if closed {
                XCTFail("output ended before \(what):\n\(text)", file: file, line: line)
                return false
            }
            if changed.wait(timeout: deadline) == .timedOut, !condition(self) {
                XCTFail("no \(what) within \(Int(seconds)) s:\n\(text)", file: file, line: line)
                return false
            }
        }
        return true
    }
}
