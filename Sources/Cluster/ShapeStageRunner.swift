import Pipeline
import Wire

/// Runs one rank's actions in shape mode: every tensor the real model would send, of exactly its size, with
/// no arithmetic. Blocks live in a real cross-stage cache (libzmq buffers shared, never copied) whose contents
/// are checked against the pure `CrossStageCacheLedger` after every action.
struct ShapeStageRunner: StageRunner {
    unowned let worker: Worker
    let spec: RunSpec
    let plan: HopPlan
    let actions: [Action]
    let activationBytes: Int
    /// The cross-stage cache: microbatch → block → buffer.
    var cache: [Int: [Int: Message]] = [:]
    var ledger = CrossStageCacheLedger()
    var cachedBytes = 0
    var peakCachedBytes = 0
    /// Outputs of a forward chunk waiting for their send action, keyed by (chunk, microbatch).
    var outbox: [ChunkMicrobatch: [Message]] = [:]
    /// Messages received for a chunk's next forward / backward.
    var inbox: [ChunkMicrobatch: DataMessage] = [:]
    var gradInbox: [ChunkMicrobatch: DataMessage] = [:]
    /// Gradients of a chunk's inputs waiting for their send action.
    var gradOutbox: [ChunkMicrobatch: [Message]] = [:]
    var step = 0


    init(worker: Worker, spec: RunSpec) throws {
        self.worker = worker
        self.spec = spec
        let t = spec.topology
        plan = HopPlan(layout: t.layout, residual: t.residualConfig)
        actions = try Schedule(kind: t.schedule, layout: t.layout, microbatches: t.microbatches).actions[worker.rank]
        activationBytes = t.trafficConfig.activationBytes
    }

    func cachedBlocks(microbatch m: Int) -> Set<Int> { Set(cache[m]?.keys.map { $0 } ?? []) }

    mutating func runStep(_ step: Int) throws {
        try runActions(step: step)
        guard cache.isEmpty else { throw WorkerError.protocolViolation(rank: rank, "step \(step) ended with cache entries left") }
    }

    /// Receives the chunk's inputs (or embeds, on chunk 0), stores blocks per the cache policy and prepares the
    /// outputs of hop c.
    mutating func forward(chunk c: Int, microbatch m: Int) throws {
        var available: [Int: Message] = cache[m] ?? [:]
        if c > 0 {
            let msg = inbox.removeValue(forKey: ChunkMicrobatch(chunk: c, microbatch: m))!
            try expect(msg, roles: plan.tensors[c - 1], direction: .forward, hop: c - 1, microbatch: m)
            for (d, p) in zip(msg.header.tensors, msg.payloads) {
                if case .block(let n) = HopWire.role(d) { available[n] = p }
            }
        }
        for n in plan.producedBlocks(inChunk: c) {
            available[n] = ShapeTensors.make(bytes: activationBytes, tag: tag(.block(n), .forward, m, hop: c))
        }
        for n in plan.cachedBlocks(byChunk: c) {
            guard let buffer = available[n] else { throw WorkerError.protocolViolation(rank: rank, "chunk \(c) should cache b\(n) but does not hold it") }
            if cache[m]?[n] == nil {
                cache[m, default: [:]][n] = buffer
                cachedBytes += buffer.count
            }
        }
        peakCachedBytes = max(peakCachedBytes, cachedBytes)
        guard c < layout.chunks - 1 else { return }
        var out: [Message] = []
        for r in plan.tensors[c] {
            switch r {
            case .block(let n):
                guard let b = available[n] else { throw WorkerError.protocolViolation(rank: rank, "chunk \(c) must send b\(n) for microbatch \(m) but does not hold it") }
                out.append(b.share())
            case .partial, .hidden:
                out.append(ShapeTensors.make(bytes: activationBytes, tag: tag(r, .forward, m, hop: c)))
            }
        }
        outbox[ChunkMicrobatch(chunk: c, microbatch: m)] = out
    }

    /// Receives the gradients of hop c's tensors and prepares the gradients of hop c−1's (what came in).
    mutating func backward(chunk c: Int, microbatch m: Int) throws {
        if c < layout.chunks - 1 {
            let msg = gradInbox.removeValue(forKey: ChunkMicrobatch(chunk: c, microbatch: m))!
            try expect(msg, roles: plan.tensors[c], direction: .backward, hop: c, microbatch: m)
        }
        if c > 0 {
            gradOutbox[ChunkMicrobatch(chunk: c, microbatch: m)] = plan.tensors[c - 1].map {
                ShapeTensors.make(bytes: activationBytes, tag: tag($0, .backward, m, hop: c - 1))
            }
        }
        if layout.virtualStage(ofChunk: c) == 0, let entries = cache.removeValue(forKey: m) {
            cachedBytes -= entries.values.reduce(0) { $0 + $1.count }
        }
    }

    func tag(_ role: TensorRole, _ d: Direction, _ m: Int, hop: Int) -> Float {
        ShapeTensors.tag(role, direction: d, step: step, microbatch: m, hop: hop)
    }

    /// A received message must carry exactly the planned tensors, each with the tag of what it claims to be.
    func expect(_ msg: DataMessage, roles: [TensorRole], direction: Direction, hop: Int, microbatch m: Int) throws {
        try HopWire.expect(msg, roles: roles, direction: direction, hop: hop, microbatch: m, rank: rank)
        for (r, p) in zip(roles, msg.payloads) where p.count >= 4 {
            let want = tag(r, direction, m, hop: hop)
            guard ShapeTensors.readTag(p) == want else {
                throw WorkerError.protocolViolation(rank: rank, "hop \(hop) \(direction.rawValue) microbatch \(m): \(r) carries tag \(ShapeTensors.readTag(p) ?? .nan), expected \(want)")
            }
        }
    }

    func report() -> WorkerReport { ShapeStageRunner.report(worker: worker, peakCachedBytes: peakCachedBytes) }

    static func report(worker: Worker, peakCachedBytes: Int) -> WorkerReport {
        let c = worker.counters
        func counts(_ d: [LinkKey: (bytes: Int, tensors: Int)]) -> [LinkCount] {
            d.keys.sorted().map { k in LinkCount(src: k.src, dst: k.dst, direction: k.direction, kind: k.kind, payloadBytes: d[k]!.bytes, tensors: d[k]!.tensors) }
        }
        return WorkerReport(rank: worker.rank, received: counts(c.received), sent: counts(c.sent), headerBytesSent: c.headerBytesSent,
                            messagesSent: c.messagesSent, peakCachedBytes: peakCachedBytes, tensorsPerHop: c.tensorsPerHop,
                            computeSeconds: c.computeSeconds, waitSeconds: c.waitSeconds)
    }
}
