import Pipeline
import Wire

/// Fault injection for failure tests and drills (`--fault`), carried out by the worker itself.
public enum Fault: Codable, Sendable, Equatable, CustomStringConvertible {
    /// The worker SIGKILLs itself when step `step` starts.
    case kill(rank: Int, step: Int)
    /// The worker starts but never joins the coordinator.
    case neverJoin(rank: Int)
    /// The worker SIGSTOPs itself when step `step` starts (a frozen peer: only silence reveals it).
    case freeze(rank: Int, step: Int)
    /// The worker's main thread is busy for 4 s when step `step` starts (a long computation that reads no
    /// socket): the run must go on, since the heartbeat thread keeps reporting.
    case stall(rank: Int, step: Int)
    /// The worker SIGKILLs itself right after writing its checkpoint file of step `step`, before reporting the
    /// step: a crash in the middle of a checkpoint (some rank files written, no manifest).
    case killAfterSave(rank: Int, step: Int)
    /// Every compute action of the rank (forward, backward, optimizer) takes `factor` times as long for the whole
    /// run: after each, the worker busy-waits (factor − 1) × the action's measured duration. A straggler.
    case slow(rank: Int, factor: Double)

    public var rank: Int {
        switch self {
        case .kill(let r, _), .neverJoin(let r), .freeze(let r, _), .stall(let r, _), .killAfterSave(let r, _), .slow(let r, _): return r
        }
    }

    /// Parses `kill:R@S`, `never-join:R`, `freeze:R@S`, `stall:R@S`, `kill-after-save:R@S`, `slow:R×F` (or `slow:RxF`).
    public init?(argument: String) {
        let parts = argument.split(separator: ":")
        guard parts.count == 2 else { return nil }
        if parts[0] == "slow" {
            let rf = parts[1].replacingOccurrences(of: "×", with: "x").split(separator: "x", omittingEmptySubsequences: false)
            guard rf.count == 2, let r = Int(rf[0]), let f = Double(rf[1]) else { return nil }
            self = .slow(rank: r, factor: f)
            return
        }
        let rest = parts[1].split(separator: "@")
        switch (parts[0], rest.count) {
        case ("kill-after-save", 2): guard let r = Int(rest[0]), let s = Int(rest[1]) else { return nil }; self = .killAfterSave(rank: r, step: s)
        case ("never-join", 1): guard let r = Int(rest[0]) else { return nil }; self = .neverJoin(rank: r)
        case ("kill", 2): guard let r = Int(rest[0]), let s = Int(rest[1]) else { return nil }; self = .kill(rank: r, step: s)
        case ("freeze", 2): guard let r = Int(rest[0]), let s = Int(rest[1]) else { return nil }; self = .freeze(rank: r, step: s)
        case ("stall", 2): guard let r = Int(rest[0]), let s = Int(rest[1]) else { return nil }; self = .stall(rank: r, step: s)
        default: return nil
        }
    }

    public var description: String {
        switch self {
        case .kill(let r, let s): return "kill:\(r)@\(s)"
        case .neverJoin(let r): return "never-join:\(r)"
        case .freeze(let r, let s): return "freeze:\(r)@\(s)"
        case .stall(let r, let s): return "stall:\(r)@\(s)"
        case .killAfterSave(let r, let s): return "kill-after-save:\(r)@\(s)"
        // ASCII, so the worker's command line carries it unchanged; the shortest text that reads back as `f`.
        case .slow(let r, let f): return "slow:\(r)x\(f == f.rounded() && abs(f) < 1e15 ? String(Int(f)) : String(f))"
        }
    }
}

/// The control protocol versions this build speaks (docs/protocol.md, "Version negotiation").
public enum ControlProtocol {
    /// Listed by a worker in its `hello`; the coordinator picks the highest version both speak.
    public static let versions: [Int] = [Int(Frame.version)]

    /// The version to speak with a peer that speaks `theirs`; nil when there is none in common.
    public static func negotiate(_ theirs: [Int]) -> Int? { Set(theirs).intersection(versions).max() }
}

/// The JSON keys of every control message: one table, the same as docs/protocol.md and docs/schemas/.
enum ControlKey: String, CodingKey {
    case type, rank, pid, host, versions, version, reason, transport, ranks, endpoint, endpoints, variant, step, loss, message
    case ipcDirectory = "ipc_directory", address, maxFrameBytes = "max_frame_bytes", curvePublicKeys = "curve_public_keys"
    case worldSize = "world_size", worldSizeVariable = "world_size_variable"
}

/// The `type` of each control message.
enum ControlType: String, Codable {
    case hello, welcome, refused, setup, bound, connect, ready, run, stepDone = "step_done", report, failed, heartbeat, shutdown
}

/// One variant to run on the already-connected workers: the body of a `run` message.
public struct RunSpec: Codable, Sendable, Equatable {
    public var topology: Topology
    /// Index of this variant within the session (tags data messages so variants never mix).
    public var variant: Int
    /// Compute mode: optimizer steps already taken (a resumed run's batches continue from step firstStep + 1).
    public var firstStep: Int = 0
    /// Compute mode: load parameters and optimizer state from this checkpoint directory first.
    public var resumeDirectory: String?
    /// Compute mode: write this rank's checkpoint here after the last step (and every `checkpointEvery` steps).
    public var saveDirectory: String?
    /// Compute mode, with `saveDirectory`: also checkpoint after every K-th optimizer step, into
    /// `saveDirectory/step-N` (`CheckpointPlan`); nil = only after the last step, directly in `saveDirectory`.
    public var checkpointEvery: Int?
    /// Record timed spans for `--trace`.
    public var trace: Bool = false

    enum CodingKeys: String, CodingKey {
        case topology, variant, trace
        case firstStep = "first_step", resumeDirectory = "resume_directory", saveDirectory = "save_directory"
        case checkpointEvery = "checkpoint_every"
    }
}

/// Coordinator → worker.
public enum ToWorker: Codable, Sendable, Equatable {
    /// The answer to `hello`: joined as `rank`, speaking protocol `version`.
    case welcome(rank: Int, version: Int)
    /// The answer to a `hello` that cannot join (another protocol version, a rank taken or out of range).
    case refused(reason: String, versions: [Int])
    /// Bind the data inbox; `ipcDirectory` for ipc, `address` for tcp. No data frame of the session is larger
    /// than `maxFrameBytes` (the inbox's ZMQ_MAXMSGSIZE). `curvePublicKeys` (CURVE runs: every rank's public key,
    /// index = rank) say whom the inbox admits and which server key each neighbour's inbox has.
    case setup(transport: TransportKind, ipcDirectory: String, address: RankAddress?, ranks: Int, maxFrameBytes: Int,
               curvePublicKeys: [String]? = nil)
    /// Connect to the peers' inboxes (index = rank) and probe every link.
    case connect(endpoints: [String])
    case run(RunSpec)
    case heartbeat
    case shutdown

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: ControlKey.self)
        switch try c.decode(ControlType.self, forKey: .type) {
        case .welcome: self = .welcome(rank: try c.decode(Int.self, forKey: .rank), version: try c.decode(Int.self, forKey: .version))
        case .refused: self = .refused(reason: try c.decode(String.self, forKey: .reason), versions: try c.decode([Int].self, forKey: .versions))
        case .setup:
            self = .setup(transport: try c.decode(TransportKind.self, forKey: .transport), ipcDirectory: try c.decode(String.self, forKey: .ipcDirectory),
                          address: try c.decodeIfPresent(RankAddress.self, forKey: .address), ranks: try c.decode(Int.self, forKey: .ranks),
                          maxFrameBytes: try c.decode(Int.self, forKey: .maxFrameBytes),
                          curvePublicKeys: try c.decodeIfPresent([String].self, forKey: .curvePublicKeys))
        case .connect: self = .connect(endpoints: try c.decode([String].self, forKey: .endpoints))
        case .run: self = .run(try RunSpec(from: decoder))
        case .heartbeat: self = .heartbeat
        case .shutdown: self = .shutdown
        case let other:
            throw DecodingError.dataCorruptedError(forKey: .type, in: c, debugDescription: "'\(other.rawValue)' is not a message to a worker")
        }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: ControlKey.self)
        switch self {
        case .welcome(let rank, let version):
            try c.encode(ControlType.welcome, forKey: .type); try c.encode(rank, forKey: .rank); try c.encode(version, forKey: .version)
        case .refused(let reason, let versions):
            try c.encode(ControlType.refused, forKey: .type); try c.encode(reason, forKey: .reason); try c.encode(versions, forKey: .versions)
        case .setup(let transport, let dir, let address, let ranks, let maxFrameBytes, let keys):
            try c.encode(ControlType.setup, forKey: .type); try c.encode(transport, forKey: .transport)
            try c.encode(dir, forKey: .ipcDirectory); try c.encodeIfPresent(address, forKey: .address)
            try c.encode(ranks, forKey: .ranks); try c.encode(maxFrameBytes, forKey: .maxFrameBytes)
            try c.encodeIfPresent(keys, forKey: .curvePublicKeys)
        case .connect(let endpoints): try c.encode(ControlType.connect, forKey: .type); try c.encode(endpoints, forKey: .endpoints)
        case .run(let spec): try c.encode(ControlType.run, forKey: .type); try spec.encode(to: encoder)
        case .heartbeat: try c.encode(ControlType.heartbeat, forKey: .type)
        case .shutdown: try c.encode(ControlType.shutdown, forKey: .type)
        }
    }
}

/// Measured traffic on one link (as received by its destination, or as sent by its source).
public struct LinkCount: Codable, Sendable, Equatable {
    public var src: Int, dst: Int
    public var direction: Direction
    public var kind: TensorKind
    public var payloadBytes: Int
    public var tensors: Int

    enum CodingKeys: String, CodingKey { case src, dst, direction, kind, tensors, payloadBytes = "payload_bytes" }
}

/// What one worker measured over one variant: the body of a `report` message.
public struct WorkerReport: Codable, Sendable {
    public var rank: Int
    /// Payload received per link (this rank is `dst`).
    public var received: [LinkCount]
    /// Payload sent per link (this rank is `src`), to cross-check the receivers.
    public var sent: [LinkCount]
    public var headerBytesSent: Int
    public var messagesSent: Int
    public var peakCachedBytes: Int
    /// Forward tensors seen per hop for one microbatch, for hops this rank sent (hop → count).
    public var tensorsPerHop: [Int: Int]
    public var computeSeconds: Double
    public var waitSeconds: Double
    /// `waitSeconds` per step of the variant (index = step); empty from a worker that does not report it.
    public var waitSecondsPerStep: [Double] = []
    /// Timed spans, when the run asked for a trace.
    public var trace: [TraceRecord]?
    /// The variant this report is about (the worker stamps the one it ran).
    public var variant: Int = 0

    enum CodingKeys: String, CodingKey {
        case rank, variant, received, sent, trace
        case headerBytesSent = "header_bytes_sent", messagesSent = "messages_sent", peakCachedBytes = "peak_cached_bytes"
        case tensorsPerHop = "tensors_per_hop", computeSeconds = "compute_seconds", waitSeconds = "wait_seconds"
        case waitSecondsPerStep = "wait_seconds_per_step"
    }

    /// One entry of `tensors_per_hop`: a JSON object, since JSON has no integer keys.
    struct HopTensors: Codable { var hop: Int; var tensors: Int }

    public init(rank: Int, received: [LinkCount], sent: [LinkCount], headerBytesSent: Int, messagesSent: Int, peakCachedBytes: Int,
                tensorsPerHop: [Int: Int], computeSeconds: Double, waitSeconds: Double,
                trace: [TraceRecord]? = nil, variant: Int = 0, waitSecondsPerStep: [Double] = []) {
        self.waitSecondsPerStep = waitSecondsPerStep
        self.rank = rank; self.received = received; self.sent = sent; self.headerBytesSent = headerBytesSent
        self.messagesSent = messagesSent; self.peakCachedBytes = peakCachedBytes; self.tensorsPerHop = tensorsPerHop
        self.computeSeconds = computeSeconds; self.waitSeconds = waitSeconds
        self.trace = trace; self.variant = variant
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        rank = try c.decode(Int.self, forKey: .rank)
        variant = try c.decode(Int.self, forKey: .variant)
        received = try c.decode([LinkCount].self, forKey: .received)
        sent = try c.decode([LinkCount].self, forKey: .sent)
        headerBytesSent = try c.decode(Int.self, forKey: .headerBytesSent)
        messagesSent = try c.decode(Int.self, forKey: .messagesSent)
        peakCachedBytes = try c.decode(Int.self, forKey: .peakCachedBytes)
        var perHop: [Int: Int] = [:]
        for e in try c.decode([HopTensors].self, forKey: .tensorsPerHop) {
            guard perHop.updateValue(e.tensors, forKey: e.hop) == nil else {
                throw DecodingError.dataCorruptedError(forKey: .tensorsPerHop, in: c, debugDescription: "hop \(e.hop) listed twice")
            }
        }
        tensorsPerHop = perHop
        computeSeconds = try c.decode(Double.self, forKey: .computeSeconds)
        waitSeconds = try c.decode(Double.self, forKey: .waitSeconds)
        waitSecondsPerStep = try c.decodeIfPresent([Double].self, forKey: .waitSecondsPerStep) ?? []
        trace = try c.decodeIfPresent([TraceRecord].self, forKey: .trace)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(rank, forKey: .rank); try c.encode(variant, forKey: .variant)
        try c.encode(received, forKey: .received); try c.encode(sent, forKey: .sent)
        try c.encode(headerBytesSent, forKey: .headerBytesSent); try c.encode(messagesSent, forKey: .messagesSent)
        try c.encode(peakCachedBytes, forKey: .peakCachedBytes)
        try c.encode(tensorsPerHop.keys.sorted().map { HopTensors(hop: $0, tensors: tensorsPerHop[$0]!) }, forKey: .tensorsPerHop)
        try c.encode(computeSeconds, forKey: .computeSeconds); try c.encode(waitSeconds, forKey: .waitSeconds)
        if !waitSecondsPerStep.isEmpty { try c.encode(waitSecondsPerStep, forKey: .waitSecondsPerStep) }
        try c.encodeIfPresent(trace, forKey: .trace)
    }

    /// The first field out of range for a report of `variant` from `rank` in a cluster of `ranks` ranks whose
    /// pipeline has `hops` hops, as (field, problem); nil when every field is in range.
    func violation(rank claimed: Int, variant current: Int, ranks: Int, hops: Int) -> (field: String, problem: String)? {
        if rank != claimed { return ("rank", "\(rank), but the peer joined as rank \(claimed)") }
        if variant != current { return ("variant", "\(variant), but the variant being run is \(current)") }
        for (name, v) in [("header_bytes_sent", headerBytesSent), ("messages_sent", messagesSent), ("peak_cached_bytes", peakCachedBytes)] where v < 0 {
            return (name, "\(v) is negative")
        }
        for (name, v) in [("compute_seconds", computeSeconds), ("wait_seconds", waitSeconds)] where !(v.isFinite && v >= 0) {
            return (name, "\(v) is not a finite number ≥ 0")
        }
        if let (i, v) = waitSecondsPerStep.enumerated().first(where: { !($0.element.isFinite && $0.element >= 0) }) {
            return ("wait_seconds_per_step[\(i)]", "\(v) is not a finite number ≥ 0")
        }
        for (name, links, own) in [("received", received, \LinkCount.dst), ("sent", sent, \LinkCount.src)] {
            for (i, l) in links.enumerated() {
                if !(0..<ranks).contains(l.src) || !(0..<ranks).contains(l.dst) {
                    return ("\(name)[\(i)]", "link \(l.src)→\(l.dst) names a rank outside 0…\(ranks - 1)")
                }
                if l[keyPath: own] != rank { return ("\(name)[\(i)]", "link \(l.src)→\(l.dst) does not involve rank \(rank) on its \(name == "sent" ? "src" : "dst") side") }
                if l.payloadBytes < 0 || l.tensors < 0 { return ("\(name)[\(i)]", "negative payload_bytes or tensors") }
            }
        }
        for (hop, n) in tensorsPerHop where !(0..<hops).contains(hop) || n < 0 {
            return ("tensors_per_hop", "hop \(hop) with \(n) tensors: the pipeline has hops 0…\(hops - 1)")
        }
        if let (i, p) = trace?.enumerated().lazy.compactMap({ e in e.element.partProblem.map { (e.offset, $0) } }).first {
            return ("trace[\(i)].\(p.field)", p.problem)
        }
        return nil
    }
}

/// Worker → coordinator.
public enum FromWorker: Codable, Sendable {
    /// The first message: join as `rank`, speaking the protocol `versions`; `worldSize`: the task count of the
    /// launcher that started it (srun, mpirun, torchrun), which the coordinator checks against the topology's ranks.
    case hello(rank: Int, pid: Int32, host: String, versions: [Int], worldSize: LaunchEnvironment.WorldSize? = nil)
    case bound(rank: Int, endpoint: String)
    case ready(rank: Int)
    case stepDone(rank: Int, variant: Int, step: Int, loss: Float?)
    case report(WorkerReport)
    case failed(rank: Int, message: String)
    case heartbeat(rank: Int)

    /// The rank the message claims to come from.
    public var rank: Int {
        switch self {
        case .hello(let r, _, _, _, _), .bound(let r, _), .ready(let r), .stepDone(let r, _, _, _), .failed(let r, _), .heartbeat(let r): return r
        case .report(let rep): return rep.rank
        }
    }

    /// The message's `type`, for log lines.
    public var typeName: String {
        switch self {
        case .hello: return ControlType.hello.rawValue
        case .bound: return ControlType.bound.rawValue
        case .ready: return ControlType.ready.rawValue
        case .stepDone: return ControlType.stepDone.rawValue
        case .report: return ControlType.report.rawValue
        case .failed: return ControlType.failed.rawValue
        case .heartbeat: return ControlType.heartbeat.rawValue
        }
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: ControlKey.self)
        func rank() throws -> Int { try c.decode(Int.self, forKey: .rank) }
        switch try c.decode(ControlType.self, forKey: .type) {
        case .hello:
            // world_size and world_size_variable come together or not at all.
            var worldSize: LaunchEnvironment.WorldSize?
            if c.contains(.worldSize) || c.contains(.worldSizeVariable) {
                worldSize = LaunchEnvironment.WorldSize(size: try c.decode(Int.self, forKey: .worldSize),
                                                        variable: try c.decode(String.self, forKey: .worldSizeVariable))
            }
            self = .hello(rank: try rank(), pid: try c.decode(Int32.self, forKey: .pid), host: try c.decode(String.self, forKey: .host),
                          versions: try c.decode([Int].self, forKey: .versions), worldSize: worldSize)
        case .bound: self = .bound(rank: try rank(), endpoint: try c.decode(String.self, forKey: .endpoint))
        case .ready: self = .ready(rank: try rank())
        case .stepDone:
            self = .stepDone(rank: try rank(), variant: try c.decode(Int.self, forKey: .variant), step: try c.decode(Int.self, forKey: .step),
                             loss: try c.decodeIfPresent(Float.self, forKey: .loss))
        case .report: self = .report(try WorkerReport(from: decoder))
        case .failed: self = .failed(rank: try rank(), message: try c.decode(String.self, forKey: .message))
        case .heartbeat: self = .heartbeat(rank: try rank())
        case let other:
            throw DecodingError.dataCorruptedError(forKey: .type, in: c, debugDescription: "'\(other.rawValue)' is not a message from a worker")
        }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: ControlKey.self)
        switch self {
        case .hello(let r, let pid, let host, let versions, let worldSize):
            try c.encode(ControlType.hello, forKey: .type); try c.encode(r, forKey: .rank); try c.encode(pid, forKey: .pid)
            try c.encode(host, forKey: .host); try c.encode(versions, forKey: .versions)
            try c.encodeIfPresent(worldSize?.size, forKey: .worldSize); try c.encodeIfPresent(worldSize?.variable, forKey: .worldSizeVariable)
        case .bound(let r, let endpoint):
            try c.encode(ControlType.bound, forKey: .type); try c.encode(r, forKey: .rank); try c.encode(endpoint, forKey: .endpoint)
        case .ready(let r): try c.encode(ControlType.ready, forKey: .type); try c.encode(r, forKey: .rank)
        case .stepDone(let r, let variant, let step, let loss):
            try c.encode(ControlType.stepDone, forKey: .type); try c.encode(r, forKey: .rank); try c.encode(variant, forKey: .variant)
            try c.encode(step, forKey: .step); try c.encodeIfPresent(loss, forKey: .loss)
        case .report(let rep): try c.encode(ControlType.report, forKey: .type); try rep.encode(to: encoder)
        case .failed(let r, let message):
            try c.encode(ControlType.failed, forKey: .type); try c.encode(r, forKey: .rank); try c.encode(message, forKey: .message)
        case .heartbeat(let r): try c.encode(ControlType.heartbeat, forKey: .type); try c.encode(r, forKey: .rank)
        }
    }
}
