import Pipeline
import Wire

/// A (chunk, microbatch) pair: the key of a chunk's pending messages and tapes.
struct ChunkMicrobatch: Hashable { let chunk: Int; let microbatch: Int }

/// What shape mode and compute mode share: carrying out one rank's action list against the hop plan. A runner
/// supplies `forward` and `backward` (which consume `inbox` / `gradInbox` and fill `outbox` / `gradOutbox`);
/// receiving, sending, timing, tracing and the cache check against the ledger happen here, once.
protocol StageRunner {
    var worker: Worker { get }
    var spec: RunSpec { get }
    var plan: HopPlan { get }
    var actions: [Action] { get }
    var step: Int { get set }
    var ledger: CrossStageCacheLedger { get set }
    var inbox: [ChunkMicrobatch: DataMessage] { get set }
    var gradInbox: [ChunkMicrobatch: DataMessage] { get set }
    var outbox: [ChunkMicrobatch: [Message]] { get set }
    var gradOutbox: [ChunkMicrobatch: [Message]] { get set }
    /// Blocks currently in this rank's cross-stage cache for a microbatch.
    func cachedBlocks(microbatch: Int) -> Set<Int>
    mutating func forward(chunk: Int, microbatch: Int) throws
    mutating func backward(chunk: Int, microbatch: Int) throws
}

extension StageRunner {
    var rank: Int { worker.rank }
    var layout: Layout { plan.layout }

    func key(_ kind: FrameKind, hop: Int, microbatch: Int) -> DataKey {
        DataKey(variant: spec.variant, step: step, kind: kind, hop: hop, microbatch: microbatch)
    }

    /// Runs every action of the rank for `step`; after each one the real cache must equal the ledger's.
    mutating func runActions(step: Int) throws {
        self.step = step
        for a in actions {
            let start = monotonicSeconds()
            let at = ChunkMicrobatch(chunk: a.chunk, microbatch: a.microbatch)
            switch a {
            // Receives are their own actions, so a trace separates waiting from compute.
            case .recvForward(let c, let m): inbox[at] = try worker.take(key(.forward, hop: c - 1, microbatch: m))
            case .recvBackward(let c, let m): gradInbox[at] = try worker.take(key(.backward, hop: c, microbatch: m))
            case .forward(let c, let m): try forward(chunk: c, microbatch: m)
            case .backward(let c, let m): try backward(chunk: c, microbatch: m)
            case .sendForward(let c, let m):
                try HopWire.send(worker, spec: spec, plan: plan, direction: .forward, hop: c, step: step, microbatch: m,
                                 payloads: outbox.removeValue(forKey: at)!)
            case .sendBackward(let c, let m):
                try HopWire.send(worker, spec: spec, plan: plan, direction: .backward, hop: c - 1, step: step, microbatch: m,
                                 payloads: gradOutbox.removeValue(forKey: at)!)
            }
            if a.isCompute {
                worker.counters.computeSeconds += monotonicSeconds() - start
                if case .forward = a { worker.recordCompute(.forward, start: start, step: step, chunk: a.chunk, microbatch: a.microbatch) }
                if case .backward = a { worker.recordCompute(.backward, start: start, step: step, chunk: a.chunk, microbatch: a.microbatch) }
            }
            // Drain the inbox between actions so arrival times in a trace are at most one action late.
            if worker.trace != nil { try worker.pump(timeoutMs: 0) }
            ledger.apply(a, plan: plan)
            for (m, blocks) in ledger.entries where cachedBlocks(microbatch: m) != blocks {
                throw WorkerError.protocolViolation(rank: rank, "after \(a): cache for microbatch \(m) holds \(cachedBlocks(microbatch: m).sorted()), ledger \(blocks.sorted())")
            }
        }
        guard outbox.isEmpty, gradOutbox.isEmpty, inbox.isEmpty, gradInbox.isEmpty else {
            throw WorkerError.protocolViolation(rank: rank, "step \(step) ended with unsent or unused tensors")
        }
    }
}
