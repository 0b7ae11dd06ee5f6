import Foundation
import Logging
#if canImport(Glibc)
import Glibc
#endif
import Pipeline
import Wire

/// Signal number that asked the coordinator to stop (0 = none). Written only by the signal handler.
nonisolated(unsafe) var coordinatorInterrupt: Int32 = 0

/// A joined worker as the report shows it.
public struct WorkerInfo: Codable, Sendable, Equatable {
    public var rank: Int
    public var pid: Int32
    public var host: String
}

/// Runs a local cluster: binds the control endpoint, starts one worker process per rank (or waits for workers
/// started elsewhere), proves every data link, runs variants on them and collects their measurements.
public final class Coordinator {
    public let base: Topology
    let faults: [Fault]
    let joinTimeout: Double
    let silenceTimeout: Double
    let context = ZContext()
    let router: Socket
    public let endpoint: String
    let ipcDirectory: String
    let processes = WorkerProcesses()
    let spawnLocal: Bool
    let workerExecutable: String
    let logger: Logger
    public private(set) var workers: [Int: WorkerInfo] = [:]
    /// Each rank's bound data inbox, once `start()` has returned.
    public private(set) var dataEndpoints: [String] = []
    var lastSeen: [Int: Double] = [:]
    var lastBeat = 0.0
    var inbox: [FromWorker] = []
    /// Who may say what on the control socket (peers, ranks, field ranges).
    var admission: ControlAdmission
    /// Refused hellos by rank, so a rank that never joins is reported with the reason it was refused.
    var refusals: [Int: (peer: String, reason: String)] = [:]
    /// Control messages dropped: malformed, from a peer that is not the rank it claims, or for a rank out of range.
    public private(set) var droppedMessages = 0
    /// No data frame of the session exceeds this (every worker's ZMQ_MAXMSGSIZE), from the base topology.
    let maxFrameBytes: Int
    var variantCounter = 0
    var stopped = false
    /// Upper bound on each wait after the join (bind, link probe, one variant), seconds; nil = none (a real run
    /// may legitimately take hours; liveness is watched by heartbeats). A test sets it so a lost message or a
    /// schedule bug fails naming the phase and the ranks instead of waiting for ever on live workers.
    public var phaseTimeout: Double?
    /// Seconds a rank may stay alive (heartbeating) without finishing a step before the run stops naming it;
    /// nil = no limit (the command line's `--progress-timeout` defaults to 600 s).
    public var progressTimeout: Double?
    /// Upper bound on binding every inbox and proving every data link, seconds (nil = `phaseTimeout` alone). A data
    /// port that a firewall drops leaves both ends alive and heartbeating, so only a deadline ends it; the command
    /// line's `--setup-timeout` defaults to 120 s.
    public var setupTimeout: Double?
    /// The control socket's ZMQ_MAXMSGSIZE: far above any report (a traced one included), far below what would
    /// hurt; libzmq drops a peer that sends a larger frame.
    public static let maxControlFrameBytes = 256 << 20
    /// Largest control frame decoded from a peer that has not joined (a hello).
    static let maxStrangerFrameBytes = 64 << 10
    /// CURVE (`security: {curve: DIR}`): the coordinator's pair and every rank's public key; nil = plain links.
    let curveKeys: CoordinatorKeys?
    /// CURVE: the control socket's ZAP handler, admitting only the ranks' keys (CoordinatorCurve.swift).
    var zap: ZAPHandler?

    /// Binds the control endpoint. Throws `ClusterError.controlEndpoint` when it is in use.
    /// - Parameters:
    ///   - spawnLocal: start the workers as child processes; false = wait for workers started elsewhere.
    ///   - workerExecutable: the `attnres` binary to start workers from (default: this executable).
    public init(topology: Topology, faults: [Fault] = [], joinTimeout: Double = 5, silenceTimeout: Double = 3,
                spawnLocal: Bool = true, workerExecutable: String = WorkerProcesses.selfExecutable,
                logger: Logger? = nil) throws {
        base = topology
        self.workerExecutable = workerExecutable
        self.logger = logger ?? {
            var quiet = Logger(label: "attnres.coordinator")
            quiet.logLevel = .warning
            return quiet
        }()
        self.faults = faults
        self.joinTimeout = joinTimeout
        self.silenceTimeout = silenceTimeout
        self.spawnLocal = spawnLocal
        admission = ControlAdmission(ranks: topology.ranks)
        maxFrameBytes = topology.largestDataFrameBytes
        try RunOptionChecks.timeout(joinTimeout, flag: "joinTimeout")
        try RunOptionChecks.timeout(silenceTimeout, flag: "silenceTimeout")
        router = try Socket(context, .router)
        ipcDirectory = try RunDirectory.create()
        let wanted = topology.coordinator ?? (topology.transport == .tcp ? "tcp://127.0.0.1:*" : "ipc://\(ipcDirectory)/control")
        var handler: ZAPHandler?
        do {
            curveKeys = try topology.curveDirectory.map { try CurveKeys.coordinator(directory: $0, ranks: topology.ranks) }
            if let curveKeys, let dir = topology.curveDirectory {
                handler = try Coordinator.secure(router, keys: curveKeys, directory: dir, context: context, logger: self.logger)
            }
            try router.setUnboundedQueues()
            try router.setRouterMandatory()
            try router.setMaxMessageSize(Coordinator.maxControlFrameBytes)
            do { try router.bind(wanted) } catch let e as ZMQError {
                throw ClusterError.controlEndpoint(wanted, e.isAddressInUse ? "address already in use (another coordinator?)" : e.message)
            }
        } catch {
            // No coordinator comes out of this init, so nothing else would remove its run directory.
            handler?.stop()
            try? FileManager.default.removeItem(atPath: ipcDirectory)
            throw error
        }
        zap = handler
        endpoint = router.lastEndpoint
        self.logger.info("coordinator listening on \(endpoint)")
        signal(SIGPIPE, SIG_IGN)
    }

    /// SIGINT and SIGTERM make every wait of every coordinator in this process stop its workers and throw
    /// `ClusterError.interrupted`. For the command line; a library user (a test process) keeps its own handlers.
    public static func interruptOnSignals() {
        signal(SIGINT) { coordinatorInterrupt = $0 }
        signal(SIGTERM) { coordinatorInterrupt = $0 }
    }

    deinit { shutdown() }

    /// Starts (or waits for) the workers, has them bind and connect, and returns once every link is proven.
    public func start() throws {
        do {
            if spawnLocal {
                for r in 0..<base.ranks {
                    try processes.spawn(rank: r, join: endpoint, faults: faults, executable: workerExecutable, keys: base.curveDirectory)
                }
            }
            let joinDeadline = monotonicSeconds() + joinTimeout
            try waitUntil(phase: "join", deadline: joinDeadline) { [unowned self] in
                // A launch of the wrong size: once every missing rank was refused for it, none will join.
                let missing = (0..<self.base.ranks).filter { self.workers[$0] == nil }
                if !missing.isEmpty, missing.allSatisfy({ self.admission.worldSizeRefusals[$0] != nil }), let r = missing.first {
                    throw ClusterError.joinRefused(rank: r, peer: self.refusals[r]?.peer ?? "'rank-\(r)'",
                                                   reason: self.admission.worldSizeRefusals[r]!)
                }
                return self.workers.count == self.base.ranks
            } onTimeout: { [unowned self] in
                let missing = (0..<self.base.ranks).filter { self.workers[$0] == nil }
                if let r = missing.first(where: { self.refusals[$0] != nil }), let why = self.refusals[r] {
                    return ClusterError.joinRefused(rank: r, peer: why.peer, reason: why.reason)
                }
                return ClusterError.neverJoined(ranks: missing, seconds: self.joinTimeout)
            }
            for r in 0..<base.ranks {
                let address = base.addresses.isEmpty ? nil : base.addresses[r]
                try send(r, .setup(transport: base.transport, ipcDirectory: ipcDirectory, address: address, ranks: base.ranks,
                                  maxFrameBytes: maxFrameBytes, curvePublicKeys: curveKeys?.rankPublicKeys))
            }
            var endpoints = [String?](repeating: nil, count: base.ranks)
            try waitUntil(phase: "bind", deadline: setupDeadline()) { [unowned self] in
                for case .bound(let r, let ep) in self.drain() { endpoints[r] = ep }
                return endpoints.allSatisfy { $0 != nil }
            } onTimeout: { [unowned self] in
                self.phaseTimedOut("bind", seconds: self.setupLimit) { endpoints[$0] == nil }
            }
            dataEndpoints = endpoints.compactMap { $0 }
            logger.info("data inboxes: \(dataEndpoints.joined(separator: " "))")
            for r in 0..<base.ranks { try send(r, .connect(endpoints: dataEndpoints)) }
            var ready: Set<Int> = []
            try waitUntil(phase: "link probe", deadline: setupDeadline()) { [unowned self] in
                for case .ready(let r) in self.drain() { ready.insert(r) }
                return ready.count == self.base.ranks
            } onTimeout: { [unowned self] in
                self.phaseTimedOut("link probe", seconds: self.setupLimit) { !ready.contains($0) }
            }
            logger.info("every data link probed")
        } catch {
            shutdown()
            throw error
        }
    }

    /// Runs one variant for its steps on the connected workers and returns what they measured.
    /// `onStep(step, loss)` is called as every rank finishes a step (loss: compute mode).
    /// `resume` / `save`: checkpoint directories (compute mode); `checkpointEvery`: also checkpoint every K steps
    /// into `save` (`CheckpointPlan`). `resume` may hold periodic checkpoints: the one its `latest` names is read.
    public func run(_ topology: Topology, resume: String? = nil, save: String? = nil, checkpointEvery: Int? = nil, trace: Bool = false,
                    onStep: ((Int, Float?) -> Void)? = nil) throws -> VariantResult {
        var firstStep = 0
        if resume != nil || save != nil {
            guard topology.mode == .compute else { throw Checkpoint.Failure.incompatible("checkpoints hold model parameters: use mode compute") }
        }
        try CheckpointPlan.check(every: checkpointEvery, save: save, topology: topology)
        let checkpoints = save.map { CheckpointPlan(directory: $0, every: checkpointEvery) }
        // Resolved once, here, so every rank loads the same checkpoint even if `latest` moves meanwhile.
        let resume = try resume.map(Checkpoint.resolve)
        if let resume {
            let manifest = try Checkpoint.readManifest(resume)
            try Checkpoint.checkCompatible(manifest.topology, topology)
            firstStep = manifest.stepsCompleted
        }
        for f in faults { try f.validate(checkpoints: checkpoints, firstStep: firstStep, steps: topology.steps) }
        precondition(topology.ranks == base.ranks, "variants share the cluster's ranks")
        let variant = variantCounter
        variantCounter += 1
        let started = monotonicSeconds()
        do {
            guard variant <= Int(UInt16.max) else { throw ClusterError.incompatibleVariant("a session runs at most \(Int(UInt16.max) + 1) variants") }
            guard topology.largestDataFrameBytes <= maxFrameBytes else {
                throw ClusterError.incompatibleVariant("its frames of \(topology.largestDataFrameBytes) bytes exceed the session's ZMQ_MAXMSGSIZE \(maxFrameBytes) (set from the first topology)")
            }
            admission.begin(.init(variant: variant, steps: topology.steps, hops: topology.layout.hops))
            for r in 0..<base.ranks {
                try send(r, .run(RunSpec(topology: topology, variant: variant, firstStep: firstStep, resumeDirectory: resume, saveDirectory: save,
                                         checkpointEvery: checkpointEvery,
                                         trace: trace)))
            }
            var done = [Int](repeating: 0, count: base.ranks)
            var reports: [Int: WorkerReport] = [:]
            var reportedStep = 0
            var losses: [Int: Float] = [:]
            var lastProgress = [Double](repeating: monotonicSeconds(), count: base.ranks)
            let phase = "variant \(topology.residual.rawValue)/\(topology.cache.rawValue)"
            try waitUntil(phase: phase, deadline: phaseDeadline()) { [unowned self] in
                // Admitted messages only: ranks in range, steps in order, one report per rank (ControlAdmission).
                for m in self.drain() {
                    switch m {
                    case .stepDone(let r, _, let s, let loss):
                        done[r] = s + 1
                        lastProgress[r] = monotonicSeconds()
                        if let loss { losses[s] = loss }
                    case .report(let rep): reports[rep.rank] = rep
                    default: break
                    }
                }
                if let limit = self.progressTimeout {
                    let now = monotonicSeconds()
                    if let r = (0..<self.base.ranks).first(where: { reports[$0] == nil && now - lastProgress[$0] > limit }) {
                        throw ClusterError.noProgress(rank: r, seconds: now - lastProgress[r], phase: phase, stepsDone: done[r])
                    }
                }
                let all = done.min() ?? 0
                while reportedStep < all {
                    reportedStep += 1
                    // Every rank wrote its file of this step's checkpoint before reporting the step.
                    if let checkpoints, checkpoints.writes(afterStep: reportedStep - 1, firstStep: firstStep, steps: topology.steps) {
                        try checkpoints.commit(topology: topology, stepsCompleted: firstStep + reportedStep)
                    }
                    onStep?(reportedStep, losses[reportedStep - 1])
                }
                return reports.count == self.base.ranks
            } onTimeout: { [unowned self] in
                self.phaseTimedOut(phase) { reports[$0] == nil }
            }
            admission.running = nil
            let lossPerStep = topology.mode == .compute ? (0..<topology.steps).compactMap { losses[$0] } : []
            guard lossPerStep.count == (topology.mode == .compute ? topology.steps : 0) else {
                throw ClusterError.measuredDiffers("compute mode: no rank reported a loss for step \((0..<topology.steps).first { losses[$0] == nil } ?? 0)")
            }
            return try VariantResult(topology: topology, reports: (0..<base.ranks).compactMap { reports[$0] },
                                     seconds: monotonicSeconds() - started,
                                     losses: lossPerStep,
                                     firstStep: firstStep)
        } catch {
            shutdown()
            throw error
        }
    }

    /// Asks every worker to exit, then stops and reaps every process it started.
    public func shutdown() {
        guard !stopped else { return }
        stopped = true
        for r in workers.keys { try? send(r, .shutdown) }
        // Linger so the shutdown messages above leave before the socket goes (linger 0 would drop them, and
        // thread or remote workers would only stop when they notice the coordinator's silence).
        router.close(lingerMs: 1000)
        zap?.stop()
        processes.stopAll(graceSeconds: 1.0)
        try? FileManager.default.removeItem(atPath: ipcDirectory)
    }

    // MARK: control plumbing

    func phaseDeadline() -> Double? { phaseTimeout.map { monotonicSeconds() + $0 } }
    /// The deadline of the bind and link-probe phases: the earlier of `setupTimeout` and `phaseTimeout`.
    func setupDeadline() -> Double? { setupLimit.map { monotonicSeconds() + $0 } }
    var setupLimit: Double? { [setupTimeout, phaseTimeout].compactMap { $0 }.min() }

    /// The error for a phase that ran past `phaseTimeout`, naming the ranks for which `missing` holds.
    func phaseTimedOut(_ phase: String, seconds: Double? = nil, missing: (Int) -> Bool) -> ClusterError {
        .phaseTimedOut(phase: phase, seconds: seconds ?? phaseTimeout ?? 0, ranks: (0..<base.ranks).filter(missing))
    }

    func send(_ rank: Int, _ m: ToWorker) throws {
        try router.send([Message(bytes: Array("rank-\(rank)".utf8)), try ControlFrame.encode(m)])
    }

    /// Messages received so far that a waiting phase has not consumed.
    func drain() -> [FromWorker] {
        defer { inbox.removeAll() }
        return inbox
    }

    /// Polls the control socket until `done()` holds, watching for dead, silent or failed workers, signals, and
    /// the deadline. Every failure names the rank.
    func waitUntil(phase: String, deadline: Double? = nil, _ done: () throws -> Bool,
               onTimeout: (() -> ClusterError)? = nil) throws {
        while try !done() {
            if coordinatorInterrupt != 0 { throw ClusterError.interrupted(coordinatorInterrupt) }
            if let dead = processes.reapExited().first {
                // What the ranks said before the death still counts: a checkpoint every rank reported is committed.
                try? receivePending()
                _ = try? done()
                throw ClusterError.workerDied(rank: dead.rank, pid: dead.pid, status: dead.status, phase: phase)
            }
            let now = monotonicSeconds()
            if let deadline, now > deadline, let onTimeout { throw onTimeout() }
            if lastSeen.values.contains(where: { now - $0 > silenceTimeout }) {
                // Heartbeats may be waiting unread (the coordinator itself was slow): read them before judging,
                // then name the rank silent the longest.
                try receivePending()
                let now = monotonicSeconds()
                if let (r, seen) = lastSeen.min(by: { $0.value < $1.value }), now - seen > silenceTimeout {
                    // A refused worker's heartbeat thread beat before it exited: its refusal is the news.
                    if workers[r] == nil, let why = refusals[r] { throw ClusterError.joinRefused(rank: r, peer: why.peer, reason: why.reason) }
                    throw ClusterError.workerSilent(rank: r, seconds: now - seen, phase: phase)
                }
            }
            if now - lastBeat > 0.2 {
                lastBeat = now
                for r in workers.keys { try? send(r, .heartbeat) }
            }
            guard try !Socket.poll([router], timeoutMs: 20).isEmpty else { continue }
            try receivePending()
        }
    }

    /// Reads every waiting control message without blocking: joins are answered (welcome or refused), liveness
    /// recorded, a failure report thrown, the rest queued for `drain()`. Nothing a peer sends traps: a malformed
    /// frame or a message from a peer that is not the rank it claims is dropped, counted and logged; a joined
    /// worker's field out of range is a `ClusterError.protocolViolation` naming it.
    func receivePending() throws {
        while let frames = try router.receive(nonBlocking: true) {
            let peer = frames.first?.array ?? []
            guard frames.count == 2 else { drop(peer, "a message of \(frames.count - 1) frames (control messages are one frame)"); continue }
            if curveKeys != nil, let mismatch = curveMismatch(peer: peer, user: frames[1].userId) {
                if let r = mismatch.rank { refuse(peer, rank: r, mismatch.why, versions: []) } else { drop(peer, mismatch.why) }
                continue
            }
            let member = admission.joinedRank(of: peer)
            // A stranger's first words are a hello of a few hundred bytes: a large frame is not decoded at all.
            guard member != nil || frames[1].count <= Coordinator.maxStrangerFrameBytes else {
                drop(peer, "a \(frames[1].count)-byte control message from a peer that has not joined (at most \(Coordinator.maxStrangerFrameBytes))")
                continue
            }
            let version: UInt16
            let msg: FromWorker
            do {
                version = try ControlFrame.version(of: frames[1])
                guard version == Frame.version else { refuseForeign(peer, version: version, body: ControlFrame.body(of: frames[1])); continue }
                msg = try ControlFrame.decode(FromWorker.self, from: frames[1])
            } catch {
                // A joined worker that sends what cannot be decoded is broken: stop, naming it, instead of waiting.
                if let r = member {
                    throw ClusterError.protocolViolation(peer: ControlAdmission.name(peer), rank: r, field: "message", problem: "cannot be decoded: \(error)")
                }
                drop(peer, "\(error)")
                continue
            }
            if case .hello(let r, let pid, let host, let versions, let worldSize) = msg {
                switch admission.join(rank: r, versions: versions, worldSize: worldSize, from: peer) {
                case .success(let v):
                    workers[r] = WorkerInfo(rank: r, pid: pid, host: host)
                    refusals[r] = nil
                    logger.info("rank \(r) joined (pid \(pid), host \(host), protocol version \(v))")
                    lastSeen[r] = monotonicSeconds()
                    // A peer that left right after its hello is noticed by the silence watch, not here.
                    do { try send(r, .welcome(rank: r, version: v)) } catch {
                        logger.warning("coordinator: cannot welcome rank \(r): \(error)")
                    }
                case .failure(let refusal):
                    refuse(peer, rank: r, refusal.reason, versions: versions)
                }
                continue
            }
            switch admission.admit(msg, from: peer) {
            case .accept: break
            case .drop(let why): drop(peer, why); continue
            case .violation(let field, let problem):
                throw ClusterError.protocolViolation(peer: ControlAdmission.name(peer), rank: msg.rank, field: field, problem: problem)
            }
            switch msg {
            case .heartbeat(let r): lastSeen[r] = monotonicSeconds()
            case .failed(let r, let message): throw ClusterError.workerFailed(rank: r, message: message)
            default:
                if case .stepDone(let r, _, _, _) = msg { lastSeen[r] = monotonicSeconds() }
                inbox.append(msg)
            }
        }
    }

    /// Counts and logs a control message that is not from a worker of this run.
    func drop(_ peer: [UInt8], _ why: String) {
        droppedMessages += 1
        logger.warning("coordinator: dropped a control message from peer \(ControlAdmission.name(peer)): \(why)")
    }

    /// Answers a hello that cannot join with `refused`, and remembers it for the join phase's error.
    func refuse(_ peer: [UInt8], rank: Int?, _ reason: String, versions: [Int]) {
        droppedMessages += 1
        logger.warning("coordinator: refused peer \(ControlAdmission.name(peer))\(rank.map { " joining as rank \($0)" } ?? ""): \(reason)")
        if let rank, (0..<base.ranks).contains(rank), workers[rank] == nil { refusals[rank] = (ControlAdmission.name(peer), reason) }
        if let frame = try? ControlFrame.encode(ToWorker.refused(reason: reason, versions: ControlProtocol.versions)) {
            try? router.send([Message(bytes: peer), frame])
        }
    }

    /// A control frame of another protocol version: a hello of version 1 (`{"hello": {"rank": R, …}}`) or of a
    /// later version (`{"type": "hello", "versions": […]}`) is refused naming the versions; anything else dropped.
    func refuseForeign(_ peer: [UInt8], version: UInt16, body: [UInt8]) {
        let object = (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any]
        let v1Hello = object?["hello"] as? [String: Any]
        guard v1Hello != nil || object?["type"] as? String == "hello" else {
            drop(peer, "a control frame of protocol version \(version), this coordinator speaks \(Frame.version)")
            return
        }
        let rank = (v1Hello ?? object)?["rank"] as? Int
        let versions = (object?["versions"] as? [Int]) ?? [Int(version)]
        refuse(peer, rank: rank, ControlAdmission.versionMismatch(theirs: versions), versions: versions)
    }
}
