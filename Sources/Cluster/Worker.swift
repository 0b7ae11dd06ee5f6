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
    /// The coordinator refused the hello (another protocol version, a rank taken).
    case refused(rank: Int, reason: String)
    /// The data inbox could not be bound (an endpoint in use, a path too long).
    case cannotBind(rank: Int, endpoint: String, why: String)
    /// CURVE: the coordinator did not admit this worker's key, or no handshake completed within the join timeout.
    case notAdmitted(rank: Int, endpoint: String, why: String)
    /// A data message to `peer` found no connection to queue into for `seconds`: libzmq ended that link's session
    /// (its handshake failed or was refused) and does not reconnect.
    case linkDown(rank: Int, peer: Int, endpoint: String, seconds: Double)

    public var description: String {
        switch self {
        case .coordinatorLost(let r, let why): return "worker rank \(r): coordinator lost (\(why)); exiting"
        case .shutdownRequested: return "shutdown requested"
        case .cannotBind(let r, let endpoint, let why): return "rank \(r) cannot bind its data endpoint \(endpoint): \(why)"
        case .protocolViolation(let r, let s): return "worker rank \(r): \(s)"
        case .refused(let r, let reason): return "worker rank \(r): the coordinator refused to let it join: \(reason)"
        case .notAdmitted(let r, let endpoint, let why): return "worker rank \(r) was not admitted by the coordinator at \(endpoint): \(why); exiting"
        case .linkDown(let r, let peer, let endpoint, let seconds):
            return "worker rank \(r): the data link to rank \(peer) at \(endpoint) has had no connection for \(Int(seconds)) s: "
                + "its handshake failed or was refused (with CURVE: does rank \(peer) list this rank's key, and is its own the key given?)"
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
    /// The endpoint each peer socket connects to (for errors).
    var peerEndpoints: [Int: String] = [:]
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
    /// The rank count the coordinator's `setup` announced (its `connect` must list exactly that many endpoints).
    var setupRanks: Int?
    /// The coordinator's run directory holding this rank's ipc data socket (ipc transport only): removed on the way
    /// out when the coordinator was killed (`RunDirectory.removeIfOrphaned`).
    var ipcDirectory: String?
    /// Data messages that arrived before the action that needs them; only what `plan` admits, so it is bounded.
    var stash: [DataKey: DataMessage] = [:]
    /// The receives the running variant's actions still take (nil between variants: no data is expected).
    var plan: ReceivePlan?
    /// Neighbours whose link probe is awaited (while connecting).
    var awaitedProbes: Set<Int> = []
    /// Ranks of the session, from `connect` (a run for another pipeline width is refused).
    var peersExpected = 0
    var counters = Counters()
    /// Timed spans of the current variant (nil unless the run asked for a trace).
    var trace: [TraceRecord]?
    /// Whether compute spans carry their model time (a traced compute run), and their depth-attention time (of an
    /// AttnRes variant).
    var modelTimed = false, depthTimed = false
    /// Seconds of coordinator silence after which a worker exits on its own (no orphans, DESIGN §6).
    static let coordinatorTimeout = 3.0
    /// Seconds a data send waits for a link that has no connection before the worker fails naming it.
    static let linkDownSeconds = 3.0
    /// Before the first word from the coordinator, a worker started by hand waits this long for it to come up.
    public static let firstContactTimeout = 60.0
    /// Whether any control message has arrived yet.
    var heardFromCoordinator = false
    /// `slow:R×F` for this rank: every compute action is stretched to this many times its length (1 = as fast as it runs).
    let slowdown: Double
    /// The task count of the launcher that started this worker (srun, mpirun, torchrun), sent in the hello.
    let launcherWorldSize: LaunchEnvironment.WorldSize?
    /// CURVE (`--keys`): this rank's pair and the coordinator's public key; nil = plain links.
    let keys: WorkerKeys?
    /// CURVE: the control socket's handshake events, so a refused key ends the worker instead of a silent retry.
    var controlMonitor: SocketMonitor?
    /// CURVE: the inbox's ZAP handler, admitting only the ranks that send to this one.
    var dataZAP: ZAPHandler?
    /// CURVE: every rank's public key, from `setup` (index = rank).
    var rankPublicKeys: [String] = []
    /// Seconds to wait for the coordinator's first message (the join) before giving up.
    let joinTimeout: Double

    public init(join endpoint: String, rank: Int, faults: [Fault], parent: pid_t? = nil,
                worldSize: LaunchEnvironment.WorldSize? = nil, keys: WorkerKeys? = nil,
                joinTimeout: Double = Worker.firstContactTimeout) throws {
        // Received tensor frames are malloc'd by libzmq, 100 KiB to many MiB: keep them in the heap for reuse
        // instead of returning each to the kernel and page-faulting the next one in (see AllocatorTuning).
        AllocatorTuning.apply()
        self.rank = rank
        watchedParent = parent
        parentPid = parent ?? getppid()
        self.faults = faults
        var slowdown = 1.0
        for case .slow(let r, let f) in faults where r == rank {
            guard f.isFinite, f > 1, f <= Fault.slowest else {
                throw FaultError(fault: .slow(rank: r, factor: f), problem: "the slowdown factor must be a finite number > 1 and ≤ \(Int(Fault.slowest))")
            }
            slowdown = f
        }
        self.slowdown = slowdown
        launcherWorldSize = worldSize
        joinEndpoint = endpoint
        self.keys = keys
        self.joinTimeout = joinTimeout
        control = try Socket(context, .dealer)
        try control.setIdentity("rank-\(rank)")
        try control.setUnboundedQueues()
        try Worker.secure(control, keys)
        controlMonitor = try SocketMonitor(control)
        try control.connect(endpoint)
    }

    /// Sets a control or heartbeat DEALER up as a CURVE client of the coordinator (no-op for plain links).
    static func secure(_ socket: Socket, _ keys: WorkerKeys?) throws {
        if let keys { try socket.makeCurveClient(keys.pair, serverKey: keys.coordinatorPublicKey) }
    }

    /// Runs until shutdown; returns the process exit code.
    public func run() -> Int32 {
        if faults.contains(.neverJoin(rank: rank)) { return idleUntilOrphaned() }
        heartbeat = HeartbeatSender(context: context, endpoint: joinEndpoint, rank: rank, parent: watchedParent) { [keys] in try Worker.secure($0, keys) }
        // The last control message (a failure report, say) must reach the coordinator before the socket goes;
        // with the coordinator lost nothing can, and waiting would only delay the exit.
        var lingerMs: Int32 = 1000
        defer {
            heartbeat?.stop()
            dataZAP?.stop()
            controlMonitor?.close()
            control.close(lingerMs: lingerMs)
        }
        do {
            try send(.hello(rank: rank, pid: getpid(), host: ProcessInfo.processInfo.hostName, versions: ControlProtocol.versions,
                            worldSize: launcherWorldSize))
            var welcomed = false
            while true {
                guard let msg = try nextControl(timeoutMs: 100) else { continue }
                if !welcomed {
                    switch msg {
                    case .welcome, .refused, .heartbeat, .shutdown: break
                    default: throw WorkerError.protocolViolation(rank: rank, "the coordinator sent a message before welcoming it")
                    }
                }
                switch msg {
                case .welcome(let r, let version):
                    guard r == rank, ControlProtocol.versions.contains(version) else {
                        throw WorkerError.protocolViolation(rank: rank, "welcomed as rank \(r) speaking version \(version)")
                    }
                    welcomed = true
                case .refused(let reason, _): throw WorkerError.refused(rank: rank, reason: reason)
                case .setup(let transport, let dir, let address, let ranks, let maxFrameBytes, let curveKeys):
                    try setup(transport, dir, address, ranks, maxFrameBytes: maxFrameBytes, curveKeys: curveKeys)
                case .connect(let endpoints): try connect(endpoints)
                case .run(let spec):
                    do { try spec.topology.validate() } catch {
                        throw WorkerError.protocolViolation(rank: rank, "the run message's topology is invalid: \(error)")
                    }
                    guard (0...Int(UInt16.max)).contains(spec.variant), (0...Checkpoint.mostSteps).contains(spec.firstStep),
                          spec.topology.ranks == peersExpected else {
                        throw WorkerError.protocolViolation(rank: rank, "run: variant \(spec.variant) (0…65535), first_step \(spec.firstStep) (0…\(Checkpoint.mostSteps)), "
                                                            + "pipeline.ranks \(spec.topology.ranks) (the \(peersExpected) ranks connected)")
                    }
                    if let k = spec.checkpointEvery, !(k >= 1 && k <= spec.topology.steps && spec.saveDirectory != nil) {
                        throw WorkerError.protocolViolation(rank: rank, "run: checkpoint_every \(k) (1…\(spec.topology.steps), with save_directory)")
                    }
                    guard stash.isEmpty else { throw WorkerError.protocolViolation(rank: rank, "data left over before variant \(spec.variant)") }
                    plan = try ReceivePlan(rank: rank, variant: spec.variant, topology: spec.topology)
                    try runVariant(spec)
                    plan = nil
                case .heartbeat: break
                case .shutdown: return 0
                }
            }
        } catch WorkerError.shutdownRequested {
            return 0
        } catch {
            printError("[rank \(rank)] \(error)")
            // A refused worker never joined: the coordinator knows why already.
            if case WorkerError.refused = error { return 1 }
            if case WorkerError.coordinatorLost = error {
                lingerMs = 0
                // A killed coordinator cannot remove its run directory; the worker that outlives it does (only once
                // the directory's recorded owner is gone, so a coordinator that is merely silent keeps it).
                if let d = ipcDirectory { RunDirectory.removeIfOrphaned(d) }
                return 1
            }
            if case WorkerError.notAdmitted = error { return 1 }
            // Never blocks: a link whose handshake failed has no pipe to queue into, and a blocking send would wait for ever.
            if let frame = try? ControlFrame.encode(FromWorker.failed(rank: rank, message: "\(error)")) { _ = try? control.trySend(frame) }
            return 1
        }
    }

    /// The never-join fault: stay alive, silent, until the coordinator stops us or disappears.
    func idleUntilOrphaned() -> Int32 {
        while getppid() == parentPid { usleep(50_000) }
        return 2
    }

    // MARK: control

    /// Sends a control message; a report is stamped with the variant being run (the one it is about).
    func send(_ m: FromWorker) throws {
        var m = m
        if case .report(var r) = m, let plan {
            r.variant = plan.variant
            m = .report(r)
        }
        // Never blocked for good: a control session whose handshake was refused has no pipe, and the refusal (or
        // the lost coordinator, or the join timeout) must end the worker instead (liveness).
        try control.send([try ControlFrame.encode(m)]) { try liveness() }
    }

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
        try watchHandshakes()
        let limit = heardFromCoordinator ? Worker.coordinatorTimeout : joinTimeout
        if monotonicSeconds() - lastHeard > limit {
            try drainControl()
            if monotonicSeconds() - lastHeard > limit {
                if !heardFromCoordinator, let keys {
                    throw WorkerError.notAdmitted(rank: rank, endpoint: joinEndpoint, why: "no CURVE handshake completed within the join timeout of \(Int(limit)) s "
                                                  + "(is \(CurveKeys.publicFile(keys.directory, CurveKeys.coordinatorName)) the key of the coordinator listening there, and is it up?)")
                }
                throw WorkerError.coordinatorLost(rank: rank, why: heardFromCoordinator ? "no message from \(joinEndpoint) for \(Int(limit)) s"
                                                  : "no coordinator answered at \(joinEndpoint) within \(Int(limit)) s")
            }
        }
    }

    // MARK: links

    func setup(_ transport: TransportKind, _ dir: String, _ address: RankAddress?, _ ranks: Int, maxFrameBytes: Int, curveKeys: [String]? = nil) throws {
        guard maxFrameBytes >= Frame.fixedHeaderBytes else {
            throw WorkerError.protocolViolation(rank: rank, "setup: max_frame_bytes \(maxFrameBytes) is smaller than a header")
        }
        // Rank numbers travel as u16 in data headers.
        guard (2...Int(UInt16.max) + 1).contains(ranks), rank < ranks else {
            throw WorkerError.protocolViolation(rank: rank, "setup: ranks \(ranks) (2…65536, more than this rank \(rank))")
        }
        if let a = address, !(0...65535).contains(a.port) {
            throw WorkerError.protocolViolation(rank: rank, "setup: address port \(a.port) is not in 0…65535")
        }
        setupRanks = ranks
        let s = try Socket(context, .pull)
        try s.setUnboundedQueues()
        try secureInbox(s, ranks: ranks, curveKeys: curveKeys)
        // libzmq disconnects a peer that sends a larger frame before queueing any of it.
        try s.setMaxMessageSize(maxFrameBytes + (keys == nil ? 0 : CurveKeyPair.messageOverheadBytes))
        let endpoint: String
        switch transport {
        case .ipc: endpoint = "ipc://\(dir)/rank-\(rank).data"
        case .tcp:
            let a = address ?? RankAddress(host: "127.0.0.1", port: 0)
            endpoint = "tcp://\(a.host):\(a.port == 0 ? "*" : String(a.port))"
        }
        do { try s.bind(endpoint) } catch let e as ZMQError {
            throw WorkerError.cannotBind(rank: rank, endpoint: endpoint, why: e.isAddressInUse ? "address already in use" : e.message)
        }
        inbox = s
        if transport == .ipc { ipcDirectory = dir }
        try send(.bound(rank: rank, endpoint: s.lastEndpoint))
    }

    /// Connects to both neighbours (r±1 mod P, which covers the wrap-around hop) and waits until a probe from
    /// each has arrived, so every data link is proven before the first step.
    func connect(_ endpoints: [String]) throws {
        let p = endpoints.count
        guard p >= 2, rank < p, p == setupRanks else {
            throw WorkerError.protocolViolation(rank: rank, "connect lists \(p) endpoints for rank \(rank); setup announced \(setupRanks.map(String.init) ?? "no") ranks")
        }
        let neighbours = Set([(rank + 1) % p, (rank + p - 1) % p]).subtracting([rank])
        awaitedProbes = neighbours
        peersExpected = p
        for n in neighbours {
            let s = try Socket(context, .push)
            try s.setUnboundedQueues()
            if let keys { try s.makeCurveClient(keys.pair, serverKey: rankPublicKeys[n]) }
            try s.connect(endpoints[n])
            peers[n] = s
            peerEndpoints[n] = endpoints[n]
            let probe = FrameHeader(kind: .probe, step: 0, microbatch: 0, hop: 0, source: UInt16(rank), destination: UInt16(n), tensors: [])
            var waiting: Double?
            try DataMessage(header: probe, payloads: []).send(on: s) { try waitForLink(n, since: &waiting) }
        }
        while !awaitedProbes.isEmpty { try pump(timeoutMs: 100) }
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

    /// Validates a data message and files it under its key. A malformed message, or one that no remaining action
    /// of this rank takes (`ReceivePlan`), is a clear error naming the sender and the key, never a crash or a
    /// stash that grows: the worker fails and tells the coordinator.
    func accept(_ frames: [Message]) throws {
        let message: DataMessage
        do { message = try DataMessage.decode(frames) } catch {
            let from = frames.first.flatMap { FrameHeader.claimedSource($0.bytes) }.map { " claiming to come from rank \($0)" } ?? ""
            throw WorkerError.protocolViolation(rank: rank, "rejected a data message\(from): \(error)")
        }
        let header = message.header
        let source = Int(header.source)
        try checkSender(frames, claimedSource: source)
        guard Int(header.destination) == rank else {
            throw WorkerError.protocolViolation(rank: rank, "rejected a data message from rank \(source) addressed to rank \(header.destination)")
        }
        if header.kind == .probe {
            guard awaitedProbes.remove(source) != nil else {
                throw WorkerError.protocolViolation(rank: rank, "rejected a link probe from rank \(source): no probe from it is awaited")
            }
            return
        }
        let key = DataKey(variant: Int(header.variant), step: Int(header.step), kind: header.kind, hop: Int(header.hop),
                          microbatch: Int(header.microbatch))
        guard plan != nil else {
            throw WorkerError.protocolViolation(rank: rank, "rejected a data message from rank \(source) (\(key)): no variant is running")
        }
        if let why = plan!.admit(key, source: source) {
            throw WorkerError.protocolViolation(rank: rank, "rejected a data message from rank \(source) (\(key)): \(why)")
        }
        guard stash.count < plan!.capacity else {
            throw WorkerError.protocolViolation(rank: rank, "stash full (\(stash.count) messages) at a message from rank \(source) (\(key))")
        }
        counters.countReceived(header: header, payloads: message.payloads)
        if trace != nil {
            let now = monotonicSeconds()
            trace!.append(TraceRecord(kind: .arrive, start: now, end: now, step: key.step, chunk: -1, microbatch: key.microbatch,
                                      hop: key.hop, backward: key.kind == .backward, peer: source,
                                      bytes: message.payloads.reduce(0) { $0 + $1.count }))
        }
        stash[key] = message
    }

    /// Records a compute span (forward, backward, optimizer) when tracing.
    func recordCompute(_ kind: TraceRecord.Kind, start: Double, step: Int, chunk: Int, microbatch: Int) {
        guard trace != nil else { return }
        // The model and depth-attention times since the previous take are this action's: both run only inside
        // forward and backward, and every one of them is recorded here.
        let model = SpanClock.model.take(), depth = SpanClock.depth.take()
        let part = kind != .optimizer
        trace!.append(TraceRecord(kind: kind, start: start, end: monotonicSeconds(), step: step, chunk: chunk, microbatch: microbatch,
                                  modelSeconds: part && modelTimed ? model : nil, depthSeconds: part && depthTimed ? depth : nil))
    }

    // MARK: running a variant

    func runVariant(_ spec: RunSpec) throws {
        counters = Counters()
        counters.waitSecondsPerStep = Array(repeating: 0, count: spec.topology.steps)
        trace = spec.trace ? [] : nil
        let t = spec.topology
        modelTimed = spec.trace && t.mode == .compute
        depthTimed = modelTimed && t.modelConfig.usesDepthAttention
        SpanClock.enable(modelTimed)
        let plan = HopPlan(layout: t.layout, residual: t.residualConfig)
        let schedule = try t.makeSchedule()
        if t.mode == .compute {
            var backend = try ComputeBackend(config: t.modelConfig, layout: t.layout, rank: rank, microbatches: t.microbatches,
                                             microbatchSize: t.microbatchSize, seed: UInt64(t.seed), learningRate: t.learningRate)
            if let dir = spec.resumeDirectory {
                let (p, o) = try Checkpoint.loadRank(directory: dir, rank: rank, chunks: backend.chunks, learningRate: t.learningRate)
                backend.restore(parameters: p, optimizers: o)
            }
            var executor = RankExecutor(rank: rank, plan: plan, schedule: schedule, backend: backend)
            let rows = t.microbatchSize * t.seq, cols = t.hidden
            var channel = WorkerHopChannel<Tensor>(worker: self, spec: spec, plan: plan, encode: HopWire.message,
                                                   decode: { HopWire.tensor($0, rows: rows, cols: cols) })
            for step in 0..<t.steps {
                injectFaults(step: step)
                executor.backend.begin(globalStep: spec.firstStep + step + 1)
                try run(&executor, &channel, step: step)
                let start = monotonicSeconds()
                let loss = executor.backend.finishStep()
                stretchCompute(from: start)
                counters.computeSeconds += monotonicSeconds() - start
                recordCompute(.optimizer, start: start, step: step, chunk: -1, microbatch: -1)
                // The rank file is complete before `step_done` leaves: the coordinator commits a checkpoint once
                // every rank reported its step, so every file it lists is already on disk.
                if let dir = spec.saveDirectory {
                    let checkpoints = CheckpointPlan(directory: dir, every: spec.checkpointEvery)
                    if checkpoints.writes(afterStep: step, firstStep: spec.firstStep, steps: t.steps) {
                        let done = spec.firstStep + step + 1
                        try Checkpoint.saveRank(directory: checkpoints.target(stepsCompleted: done), rank: rank,
                                                chunks: t.layout.chunks(onRank: rank), parameters: executor.backend.parameters,
                                                optimizers: executor.backend.optimizers, stepsCompleted: done)
                        injectFaults(savedAfterStep: step)
                    }
                }
                try send(.stepDone(rank: rank, variant: spec.variant, step: step, loss: loss))
            }
            try send(.report(report(peakCachedBytes: executor.cache.peakBytes)))
        } else {
            let backend = ShapeBackend(plan: plan, activationBytes: t.trafficConfig.activationBytes)
            var executor = RankExecutor(rank: rank, plan: plan, schedule: schedule, backend: backend)
            var channel = WorkerHopChannel<Message>(worker: self, spec: spec, plan: plan, encode: { $0.share() }, decode: { $0 })
            for step in 0..<t.steps {
                injectFaults(step: step)
                executor.backend.step = step
                try run(&executor, &channel, step: step)
                try send(.stepDone(rank: rank, variant: spec.variant, step: step, loss: nil))
            }
            try send(.report(report(peakCachedBytes: executor.cache.peakBytes)))
        }
    }

    /// The faults of this rank that fire once its checkpoint file of step `step` is written (before the step is
    /// reported, so the checkpoint can never be committed).
    func injectFaults(savedAfterStep step: Int) {
        for f in faults where f.rank == rank {
            if case .killAfterSave(_, let s) = f, s == step { kill(getpid(), SIGKILL) }
        }
    }

    /// The faults of this rank that fire when step `step` starts.
    func injectFaults(step: Int) {
        for f in faults where f.rank == rank {
            if case .kill(_, let s) = f, s == step { kill(getpid(), SIGKILL) }
            if case .freeze(_, let s) = f, s == step { kill(getpid(), SIGSTOP) }
            if case .stall(_, let s) = f, s == step { usleep(4_000_000) }
        }
    }

    /// Carries out one step of the executor: its actions one at a time, answering control traffic and filling the
    /// stash while a receive waits; compute and waiting are timed (and traced when asked).
    func run<B: ChunkBackend>(_ executor: inout RankExecutor<B>, _ channel: inout WorkerHopChannel<B.Value>, step: Int) throws {
        executor.begin(step: step)
        channel.step = step
        var waiting: (key: HopKey, since: Double)?
        while true {
            let start = monotonicSeconds()
            switch try executor.perform(&channel) {
            case .performed(let a):
                if a.isCompute { stretchCompute(from: start) }
                let now = monotonicSeconds()
                if let w = waiting {
                    counters.waitSeconds += start - w.since
                    counters.waitSecondsPerStep[step] += start - w.since
                    if trace != nil {
                        trace!.append(TraceRecord(kind: .wait, start: w.since, end: start, step: step, chunk: -1, microbatch: w.key.microbatch,
                                                  hop: w.key.hop, backward: w.key.direction == .backward))
                    }
                    waiting = nil
                }
                if a.isCompute {
                    counters.computeSeconds += now - start
                    recordCompute({ if case .forward = a { return .forward }; return .backward }(), start: start, step: step,
                                  chunk: a.chunk, microbatch: a.microbatch)
                }
                // Drain the inbox between actions so arrival times in a trace are at most one action late.
                if trace != nil { try pump(timeoutMs: 0) }
            case .waiting(let key):
                if waiting == nil { waiting = (key, start) }
                try pump(timeoutMs: 50)
            case .stepDone:
                return
            }
        }
    }

    /// `slow:R×F`: busy-waits until the compute action that began at `start` has taken `slowdown` times as long as
    /// it did. Busy, not asleep, so the rank is occupied as a slower device would be; the heartbeat thread runs on.
    func stretchCompute(from start: Double) {
        guard slowdown > 1 else { return }
        let end = start + (monotonicSeconds() - start) * slowdown
        while monotonicSeconds() < end {}
    }

    /// The data message `key`, if it has arrived.
    func arrived(_ key: DataKey) -> DataMessage? { stash.removeValue(forKey: key) }

    /// What this rank measured over the variant.
    func report(peakCachedBytes: Int) -> WorkerReport {
        let c = counters
        func counts(_ d: [LinkKey: (bytes: Int, tensors: Int)]) -> [LinkCount] {
            d.keys.sorted().map { k in LinkCount(src: k.src, dst: k.dst, direction: k.direction, kind: k.kind, payloadBytes: d[k]!.bytes, tensors: d[k]!.tensors) }
        }
        return WorkerReport(rank: rank, received: counts(c.received), sent: counts(c.sent), headerBytesSent: c.headerBytesSent,
                            messagesSent: c.messagesSent, peakCachedBytes: peakCachedBytes, tensorsPerHop: c.tensorsPerHop,
                            computeSeconds: c.computeSeconds, waitSeconds: c.waitSeconds, trace: trace,
                            waitSecondsPerStep: c.waitSecondsPerStep)
    }

    /// What a data send to `peer` does while its socket has no connection (`Socket.send(_:pollMs:stillWaiting:)`):
    /// keeps the worker's liveness checks going and gives up after `Worker.linkDownSeconds`, naming the link.
    func waitForLink(_ peer: Int, since: inout Double?) throws {
        try liveness()
        let now = monotonicSeconds()
        if since == nil { since = now }
        if now - since! > Worker.linkDownSeconds {
            throw WorkerError.linkDown(rank: rank, peer: peer, endpoint: peerEndpoints[peer] ?? "?", seconds: Worker.linkDownSeconds)
        }
    }

    func sendData(to dst: Int, header: FrameHeader, payloads: [Message]) throws {
        guard let s = peers[dst] else { throw WorkerError.protocolViolation(rank: rank, "no link to rank \(dst)") }
        let start = monotonicSeconds()
        var waiting: Double?
        let (sizes, headerBytes) = try DataMessage(header: header, payloads: payloads).send(on: s) { try waitForLink(dst, since: &waiting) }
        counters.countSent(header: header, payloadBytes: sizes, headerBytes: headerBytes, rank: rank)
        if trace != nil, header.kind != .probe {
            trace!.append(TraceRecord(kind: .send, start: start, end: monotonicSeconds(), step: Int(header.step), chunk: -1,
                                      microbatch: Int(header.microbatch), hop: Int(header.hop), backward: header.kind == .backward,
                                      peer: dst, bytes: sizes.reduce(0, +)))
        }
    }

    /// Entry point of `attnres worker`.
    /// `parent`: exit as soon as this process (the local coordinator that started the worker) is gone.
    /// `worldSize`: the launcher's task count, when a launcher gave the rank (see `LaunchEnvironment`).
    /// `keysDirectory`: CURVE on, with this rank's pair and the coordinator's public key from it (CurveKeys).
    public static func main(join: String, rank: Int, faults: [Fault], parent: pid_t? = nil,
                            worldSize: LaunchEnvironment.WorldSize? = nil, keysDirectory: String? = nil,
                            joinTimeout: Double = Worker.firstContactTimeout) -> Int32 {
        do {
            let keys = try keysDirectory.map { try CurveKeys.worker(directory: $0, rank: rank) }
            return try Worker(join: join, rank: rank, faults: faults, parent: parent, worldSize: worldSize, keys: keys,
                              joinTimeout: joinTimeout).run()
        } catch {
            printError("[rank \(rank)] \(error)")
            return 1
        }
    }
}

/// Per-variant traffic counters of one worker.
struct Counters {
    var received: [LinkKey: (bytes: Int, tensors: Int)] = [:]
    var sent: [LinkKey: (bytes: Int, tensors: Int)] = [:]
    var headerBytesSent = 0
    var messagesSent = 0
    var waitSeconds = 0.0
    /// `waitSeconds` split by step (index = step within the variant).
    var waitSecondsPerStep: [Double] = []
    var computeSeconds = 0.0
    var tensorsPerHop: [Int: Int] = [:]

    mutating func countReceived(header: FrameHeader, payloads: [Message]) {
        let dir: Direction = header.kind == .forward ? .forward : .backward
        for (t, p) in zip(header.tensors, payloads) {
            let key = LinkKey(src: Int(header.source), dst: Int(header.destination), direction: dir, kind: HopWire.role(t).kind)
            received[key, default: (0, 0)].bytes += p.count
            received[key, default: (0, 0)].tensors += 1
        }
    }

    mutating func countSent(header: FrameHeader, payloadBytes: [Int], headerBytes: Int, rank: Int) {
        let dir: Direction = header.kind == .forward ? .forward : .backward
        for (t, n) in zip(header.tensors, payloadBytes) {
            let key = LinkKey(src: rank, dst: Int(header.destination), direction: dir, kind: HopWire.role(t).kind)
            sent[key, default: (0, 0)].bytes += n
            sent[key, default: (0, 0)].tensors += 1
        }
        headerBytesSent += headerBytes
        messagesSent += 1
        if dir == .forward { tensorsPerHop[Int(header.hop)] = max(tensorsPerHop[Int(header.hop)] ?? 0, header.tensors.count) }
    }
}
