import Pipeline

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

    public var rank: Int {
        switch self { case .kill(let r, _), .neverJoin(let r), .freeze(let r, _), .stall(let r, _): return r }
    }

    /// Parses `kill:R@S`, `never-join:R`, `freeze:R@S`, `stall:R@S`.
    public init?(argument: String) {
        let parts = argument.split(separator: ":")
        guard parts.count == 2 else { return nil }
        let rest = parts[1].split(separator: "@")
        switch (parts[0], rest.count) {
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
        }
    }
}

/// One variant to run on the already-connected workers.
public struct RunSpec: Codable, Sendable {
    public var topology: Topology
    /// Index of this variant within the session (tags data messages so variants never mix).
    public var variant: Int
    /// Compute mode: optimizer steps already taken (a resumed run's batches continue from step firstStep + 1).
    public var firstStep: Int = 0
    /// Compute mode: load parameters and optimizer state from this checkpoint directory first.
    public var resumeDirectory: String?
    /// Compute mode: write this rank's checkpoint here after the last step.
    public var saveDirectory: String?
    /// Record timed spans for `--trace`.
    public var trace: Bool = false
}

/// Coordinator → worker.
public enum ToWorker: Codable, Sendable {
    /// Bind the data inbox; `ipcDirectory` for ipc, `address` for tcp.
    case setup(transport: TransportKind, ipcDirectory: String, address: RankAddress?, ranks: Int)
    /// Connect to the peers' inboxes (index = rank) and probe every link.
    case connect(endpoints: [String])
    case run(RunSpec)
    case heartbeat
    case shutdown
}

/// Measured traffic on one link (as received by its destination).
public struct LinkCount: Codable, Sendable, Equatable {
    public var src: Int, dst: Int
    public var direction: Direction
    public var kind: TensorKind
    public var payloadBytes: Int
    public var tensors: Int
}

/// What one worker measured over one variant.
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
    /// Timed spans, when the run asked for a trace.
    public var trace: [TraceRecord]?
}

/// Worker → coordinator.
public enum FromWorker: Codable, Sendable {
    case hello(rank: Int, pid: Int32, host: String)
    case bound(rank: Int, endpoint: String)
    case ready(rank: Int)
    case stepDone(rank: Int, variant: Int, step: Int, loss: Float?)
    case report(WorkerReport)
    case failed(rank: Int, message: String)
    case heartbeat(rank: Int)
}
