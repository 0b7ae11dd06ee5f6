import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Numerics
import Pipeline
import Wire

/// Why a worker stops early.
public enum WorkerError: Error, CustomStringConvertible {
    case coordinatorLost(rank: Int, why: String)
    case shutdownRequested
    case protocolViolation(rank: Int, String)

    public var description: String {
        switch self {
        case .coordinatorLost(let r, let why): return "worker rank \(r): coordinator lost (\(why)); exiting"
        case .shutdownRequested: return "shutdown requested"
        case .protocolViolation(let r, let s): return "worker rank \(r): \(s)"
        }
    }
}

/// A pipeline rank: one OS process that joins the coordinator, binds its data inbox, connects to its
/// neighbours and runs its part of the schedule. It never reads the topology file itself.
public final class Worker {
    public let rank: Int
    let faults: [Fault]
    let context = ZContext()
    let control: Socket
    var inbox: Socket?
    var peers: [Int: Socket] = [:]
    var lastHeard = monotonicSeconds()
    /// Control messages read but not yet acted on.
    var pendingControl: [ToWorker] = []
    let joinEndpoint: String
    var heartbeat: HeartbeatSender?
    /// A locally spawned worker exits as soon as this process, its coordinator, is gone. The pid is given on the
    /// command line, not read with getppid() at start-up: a coordinator that died before then would otherwise
    /// leave the worker watching the wrong parent for ever. nil for a worker started by hand.
    let watchedParent: pid_t?
    /// The parent the never-join fault idles on: the watched one, else the parent at start-up.
    let parentPid: pid_t
    /// Data messages that arrived before the action that needs them.
    var stash: [DataKey: DataMessage] = [:]
    var counters = Counters()
    /// Timed spans of the current variant (nil unless the run asked for a trace).
    var trace: [TraceRecord]?
    /// Seconds of coordinator silence after which a worker exits on its own (no orphans, DESIGN §6).
    static let coordinatorTimeout = 3.0
    /// Before the first word from the coordinator, a worker started by hand waits this long for it to come up.
    static let firstContactTimeout = 60.0
    /// Whether any control message has arrived yet.
    var heardFromCoordinator = false

    public init(join endpoint: String, rank: Int, faults: [Fault], parent: pid_t? = nil) throws {
        // Received tensor frames are malloc'd by libzmq, 100 KiB to many MiB: keep them in the heap for reuse
        // instead of returning each to the kernel and page-faulting the next one in (see AllocatorTuning).
        AllocatorTuning.apply()
        self.rank = rank
        watchedParent = parent
        parentPid = parent ?? getppid()
        self.faults = faults
        joinEndpoint = endpoint
        control = try Socket(context, .dealer)
        try control.setIdentity("rank-\(rank)")
        try control.setUnboundedQueues()
        try control.connect(endpoint)
    }

    /// Runs until shutdown; returns the process exit code.
    public func run() -> Int32 {
        if faults.contains(.neverJoin(rank: rank)) { return idleUntilOrphaned() }
        heartbeat = HeartbeatSender(context: context, endpoint: joinEndpoint, rank: rank, parent: watchedParent)
        defer {
            heartbeat?.stop()
            // The last control message (a failure report, say) must reach the coordinator before the socket goes.
            control.close(lingerMs: 1000)
        }
        do {
            try send(.hello(rank: rank, pid: getpid(), host: ProcessInfo.processInfo.hostName))
            while true {
                guard let msg = try nextControl(timeoutMs: 100) else { continue }
                switch msg {
                case .setup(let transport, let dir, let address, let ranks): try setup(transport, dir, address, ranks)
                case .connect(let endpoints): try connect(endpoints)
                case .run(let spec): try runVariant(spec)
                case .heartbeat: break
                case .shutdown: return 0
                }
            }
        } catch WorkerError.shutdownRequested {
            return 0
        } catch {
            printError("[rank \(rank)] \(error)")
            try? send(.failed(rank: rank, message: "\(error)"))
            return 1
        }
    }

    /// The never-join fault: stay alive, silent, until the coordinator stops us or disappears.
    func idleUntilOrphaned() -> Int32 {
        while getppid() == parentPid { usleep(50_000) }
        return 2
    }

    // MARK: control

    func send(_ m: FromWorker) throws { try control.send([try ControlFrame.encode(m)]) }

    /// The next control message (or none within the timeout); heartbeats only refresh the coordinator's liveness.
    func nextControl(timeoutMs: Int) throws -> ToWorker? {
        try liveness()
        if pendingControl.isEmpty, try !Socket.poll([control], timeoutMs: timeoutMs).isEmpty { try drainControl() }
        return pendingControl.isEmpty ? nil : pendingControl.removeFirst()
    }

    /// Reads every waiting control message without blocking.
    func drainControl() throws {
        while let frames = try control.receive(nonBlocking: true), let first = frames.first {
            lastHeard = monotonicSeconds()
            heardFromCoordinator = true
            let message = try ControlFrame.decode(ToWorker.self, from: first)
            if case .heartbeat = message { continue }
            pendingControl.append(message)
        }
    }

    /// Exits when the coordinator has gone: parent changed (local workers), or no message for a while, counting
    /// the ones that queued up during a long computation.
    func liveness() throws {
        if let watchedParent, getppid() != watchedParent {
            throw WorkerError.coordinatorLost(rank: rank, why: "parent process \(watchedParent) exited")
        }
        let limit = heardFromCoordinator ? Worker.coordinatorTimeout : Worker.firstContactTimeout
        if monotonicSeconds() - lastHeard > limit {
            try drainControl()
            if monotonicSeconds() - lastHeard > limit {
                throw WorkerError.coordinatorLost(rank: rank, why: heardFromCoordinator ? "no message for \(Int(limit)) s"
                                                  : "no coordinator answered at \(joinEndpoint) within \(Int(limit)) s")
            }
        }
    }

    // MARK: links

    func setup(_ transport: TransportKind, _ dir: String, _ address: RankAddress?, _ ranks: Int) throws {
        let s = try Socket(context, .pull)
        try s.setUnboundedQueues()
        let endpoint: String
        switch transport {
        case .ipc: endpoint = "ipc://\(dir)/rank-\(rank).data"
        case .tcp:
            let a = address ?? RankAddress(host: "127.0.0.1", port: 0)
            endpoint = "tcp://\(a.host):\(a.port == 0 ? "*" : String(a.port))"
        }
        do { try s.bind(endpoint) } catch let e as ZMQError {
            let why = e.isAddressInUse ? "address already in use" : e.message
            try send(.failed(rank: rank, message: "rank \(rank) cannot bind its data endpoint \(endpoint): \(why)"))
            throw WorkerError.shutdownRequested
        }
        inbox = s
        try send(.bound(rank: rank, endpoint: s.lastEndpoint))
    }

    /// Connects to both neighbours (r±1 mod P, which covers the wrap-around hop) and waits until a probe from
    /// each has arrived, so every data link is proven before the first step.
    func connect(_ endpoints: [String]) throws {
        let p = endpoints.count
        guard p >= 2, rank < p else { throw WorkerError.protocolViolation(rank: rank, "connect lists \(p) endpoints for rank \(rank)") }
        let neighbours = Set([(rank + 1) % p, (rank + p - 1) % p]).subtracting([rank])
        for n in neighbours {
            let s = try Socket(context, .push)
            try s.setUnboundedQueues()
            try s.connect(endpoints[n])
            peers[n] = s
            let probe = FrameHeader(kind: .probe, step: 0, microbatch: 0, hop: 0, source: UInt16(rank), destination: UInt16(n), tensors: [])
            try DataMessage(header: probe, payloads: []).send(on: s)
        }
        var waiting = neighbours
        while !waiting.isEmpty {
            try pump(timeoutMs: 100)
            for n in waiting where stash.removeValue(forKey: DataKey(variant: -1, step: 0, kind: .probe, hop: 0, microbatch: n)) != nil {
                waiting.remove(n)
            }
        }
        try send(.ready(rank: rank))
    }

    /// Moves whatever has arrived on the data inbox into the stash and answers control traffic.
    func pump(timeoutMs: Int) throws {
        try liveness()
        var sockets = [control]
        if let inbox { sockets.append(inbox) }
        let ready = try Socket.poll(sockets, timeoutMs: timeoutMs)
        if ready.contains(0) {
            try drainControl()
            if pendingControl.contains(where: { if case .shutdown = $0 { return true }; return false }) { throw WorkerError.shutdownRequested }
        }
        if ready.contains(1), let inbox {
            while let frames = try inbox.receive(nonBlocking: true) { try accept(frames) }
        }
    }

    /// Validates a data message and files it under its key; a malformed message is a clear error, not a crash.
    func accept(_ frames: [Message]) throws {
        let message: DataMessage
        do { message = try DataMessage.decode(frames) } catch {
            throw WorkerError.protocolViolation(rank: rank, "rejected a data message: \(error)")
        }
        let header = message.header
        guard Int(header.destination) == rank else {
            throw WorkerError.protocolViolation(rank: rank, "received a message for rank \(header.destination)")
        }
        if header.kind == .probe {
            stash[DataKey(variant: -1, step: 0, kind: .probe, hop: 0, microbatch: Int(header.source))] = message
            return
        }
        // The variant index rides in the high bits of the step field (see docs/protocol.md).
        let key = DataKey(variant: Int(header.step >> 20), step: Int(header.step & 0xFFFFF), kind: header.kind,
                          hop: Int(header.hop), microbatch: Int(header.microbatch))
        counters.countReceived(header: header, payloads: message.payloads)
        if trace != nil {
            let now = monotonicSeconds()
            trace!.append(TraceRecord(kind: .arrive, start: now, end: now, step: key.step, chunk: -1, microbatch: key.microbatch,
                                      hop: key.hop, backward: key.kind == .backward, peer: Int(header.source),
                                      bytes: message.payloads.reduce(0) { $0 + $1.count }))
        }
        stash[key] = message
    }

    /// Blocks (while answering control traffic) until the message `key` has arrived.
    func take(_ key: DataKey) throws -> DataMessage {
        let start = monotonicSeconds()
        var waited = false
        while true {
            if let m = stash.removeValue(forKey: key) {
                let now = monotonicSeconds()
                counters.waitSeconds += now - start
                if waited, trace != nil {
                    trace!.append(TraceRecord(kind: .wait, start: start, end: now, step: key.step, chunk: -1, microbatch: key.microbatch,
                                              hop: key.hop, backward: key.kind == .backward))
                }
                return m
            }
            waited = true
            try pump(timeoutMs: 50)
        }
    }

    /// Records a compute span (forward, backward, optimizer) when tracing.
    func recordCompute(_ kind: TraceRecord.Kind, start: Double, step: Int, chunk: Int, microbatch: Int) {
        guard trace != nil else { return }
        trace!.append(TraceRecord(kind: kind, start: start, end: monotonicSeconds(), step: step, chunk: chunk, microbatch: microbatch))
    }

    // MARK: running a variant

    func runVariant(_ spec: RunSpec) throws {
        counters = Counters()
        trace = spec.trace ? [] : nil
        var shape: ShapeStageRunner?
        var compute: ComputeStageRunner?
        if spec.topology.mode == .compute { compute = try ComputeStageRunner(worker: self, spec: spec) } else { shape = try ShapeStageRunner(worker: self, spec: spec) }
        for step in 0..<spec.topology.steps {
            for f in faults where f.rank == rank {
                if case .kill(_, let s) = f, s == step { kill(getpid(), SIGKILL) }
                if case .freeze(_, let s) = f, s == step { kill(getpid(), SIGSTOP) }
                if case .stall(_, let s) = f, s == step { usleep(4_000_000) }
            }
            var loss: Float?
            if compute != nil { loss = try compute!.runStep(step) } else { try shape!.runStep(step) }
            try send(.stepDone(rank: rank, variant: spec.variant, step: step, loss: loss))
        }
        if let dir = spec.saveDirectory, let compute { try compute.save(to: dir) }
        var report = shape?.report() ?? ShapeStageRunner.report(worker: self, peakCachedBytes: compute!.peakCachedBytes)
        report.depositsMade = compute?.depositsMade ?? 0
        report.depositsConsumed = compute?.depositsConsumed ?? 0
        report.trace = trace
        try send(.report(report))
    }

    func sendData(to dst: Int, header: FrameHeader, payloads: [Message]) throws {
        guard let s = peers[dst] else { throw WorkerError.protocolViolation(rank: rank, "no link to rank \(dst)") }
        let start = monotonicSeconds()
        let (sizes, headerBytes) = try DataMessage(header: header, payloads: payloads).send(on: s)
        counters.countSent(header: header, payloadBytes: sizes, headerBytes: headerBytes, rank: rank)
        if trace != nil, header.kind != .probe {
            trace!.append(TraceRecord(kind: .send, start: start, end: monotonicSeconds(), step: Int(header.step & 0xFFFFF), chunk: -1,
                                      microbatch: Int(header.microbatch), hop: Int(header.hop), backward: header.kind == .backward,
                                      peer: dst, bytes: sizes.reduce(0, +)))
        }
    }

    /// Entry point of `attnres worker`.
    /// `parent`: exit as soon as this process (the local coordinator that started the worker) is gone.
    public static func main(join: String, rank: Int, faults: [Fault], parent: pid_t? = nil) -> Int32 {
        do {
            return try Worker(join: join, rank: rank, faults: faults, parent: parent).run()
        } catch {
            printError("[rank \(rank)] \(error)")
            return 1
        }
    }
}

/// The stash key of a data message.
struct DataKey: Hashable {
    let variant: Int
    let step: Int
    let kind: FrameKind
    let hop: Int
    let microbatch: Int
}

/// Per-variant traffic counters of one worker.
struct Counters {
    var received: [LinkKey: (bytes: Int, tensors: Int)] = [:]
    var sent: [LinkKey: (bytes: Int, tensors: Int)] = [:]
    var headerBytesSent = 0
    var messagesSent = 0
    var waitSeconds = 0.0
    var computeSeconds = 0.0
    var tensorsPerHop: [Int: Int] = [:]

    static func kind(_ r: WireRole) -> TensorKind {
        switch r { case .hidden: return .activation; case .block: return .block; case .partial: return .partial }
    }

    mutating func countReceived(header: FrameHeader, payloads: [Message]) {
        let dir: Direction = header.kind == .forward ? .forward : .backward
        for (t, p) in zip(header.tensors, payloads) {
            let key = LinkKey(src: Int(header.source), dst: Int(header.destination), direction: dir, kind: Counters.kind(t.role))
            received[key, default: (0, 0)].bytes += p.count
            received[key, default: (0, 0)].tensors += 1
        }
    }

    mutating func countSent(header: FrameHeader, payloadBytes: [Int], headerBytes: Int, rank: Int) {
        let dir: Direction = header.kind == .forward ? .forward : .backward
        for (t, n) in zip(header.tensors, payloadBytes) {
            let key = LinkKey(src: rank, dst: Int(header.destination), direction: dir, kind: Counters.kind(t.role))
            sent[key, default: (0, 0)].bytes += n
            sent[key, default: (0, 0)].tensors += 1
        }
        headerBytesSent += headerBytes
        messagesSent += 1
        if dir == .forward { tensorsPerHop[Int(header.hop)] = max(tensorsPerHop[Int(header.hop)] ?? 0, header.tensors.count) }
    }
}
