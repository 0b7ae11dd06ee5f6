import Foundation
import Model
import Numerics
import Pipeline
import Wire

/// Runs one rank's actions in compute mode: the real model, split into the chunks this rank owns, with real
/// activations, block representations, partial sums and their gradients on the wire.
///
/// The cross-stage cache (DESIGN §4, PAPER §7.5): a chunk's input is rebuilt from the blocks that arrived on its
/// hop plus those its rank already holds. In backward, the gradient of a block read from the cache is deposited on
/// the rank (not sent); the chunk that brought the block onto the rank (received it, or produced it) adds the
/// deposits to the gradient of its output copy before its own backward, so the sum leaves on the hop the block
/// arrived by. Deposits live from the reader's backward to the owner's; none may remain when the rank's first
/// chunk has finished a microbatch's backward (checked).
struct ComputeStageRunner: StageRunner {
    unowned let worker: Worker
    let spec: RunSpec
    let plan: HopPlan
    let actions: [Action]
    let config: ModelConfig
    let myChunks: [Int]
    var chunks: [Int: ModelChunk] = [:]
    var parameters: [Int: ParameterSet] = [:]
    var gradients: [Int: ParameterSet] = [:]
    var optimizers: [Int: AdamW] = [:]
    let data: BatchSource?
    var batch: [Microbatch] = []
    /// Forward tapes kept until the matching backward.
    var tapes: [ChunkMicrobatch: ChunkTape] = [:]
    /// Which input blocks of (chunk, microbatch) arrived on the wire (the rest came from the cache).
    var wireBlocks: [ChunkMicrobatch: Set<Int>] = [:]
    /// The cross-stage cache: microbatch → block → tensor.
    var cache: [Int: [Int: Tensor]] = [:]
    /// Gradient deposits for cached blocks: microbatch → block → summed gradient.
    var deposits: [Int: [Int: Tensor]] = [:]
    /// The chunk of this rank that brings each block onto the rank (and so owns its deposits).
    let owner: [Int: Int]
    var ledger = CrossStageCacheLedger()
    var cachedBytes = 0
    var peakCachedBytes = 0
    var outbox: [ChunkMicrobatch: [Message]] = [:]
    /// Messages received for a chunk's next forward / backward.
    var inbox: [ChunkMicrobatch: DataMessage] = [:]
    var gradInbox: [ChunkMicrobatch: DataMessage] = [:]
    var gradOutbox: [ChunkMicrobatch: [Message]] = [:]
    var losses: [Int: Float] = [:]
    var step = 0
    /// Deposits made and consumed over the run (reported, and checked to balance).
    var depositsMade = 0, depositsConsumed = 0


    init(worker: Worker, spec: RunSpec) throws {
        self.worker = worker
        self.spec = spec
        let t = spec.topology
        plan = HopPlan(layout: t.layout, residual: t.residualConfig)
        actions = try Schedule(kind: t.schedule, layout: t.layout, microbatches: t.microbatches).actions[worker.rank]
        config = t.modelConfig
        try config.validate()
        BLAS.configureDeterministic()
        let chunkLayout = try ChunkLayout(layers: t.layers, chunks: t.layout.chunks)
        myChunks = t.layout.chunks(onRank: worker.rank)
        for c in myChunks {
            let chunk = ModelChunk(config: config, layout: chunkLayout, index: c)
            chunks[c] = chunk
            let p = ParameterSet(initializing: chunk.parameterSpecs, seed: UInt64(t.seed), layers: t.layers)
            parameters[c] = p
            gradients[c] = p.zerosLike()
            optimizers[c] = AdamW(parameters: p, learningRate: t.learningRate)
        }
        if let dir = spec.resumeDirectory {
            (parameters, optimizers) = try Checkpoint.loadRank(directory: dir, rank: worker.rank, chunks: chunks, learningRate: t.learningRate)
        }
        let needsData = myChunks.contains(0) || myChunks.contains(t.layout.chunks - 1)
        data = needsData ? BatchSource.synthetic(seq: t.seq, vocab: t.vocab, seed: UInt64(t.seed)) : nil
        var owner: [Int: Int] = [:]
        for c in myChunks { for j in plan.cachedBlocks(byChunk: c) where owner[j] == nil { owner[j] = c } }
        self.owner = owner
    }

    var rows: Int { spec.topology.microbatchSize * spec.topology.seq }

    func cachedBlocks(microbatch m: Int) -> Set<Int> { Set(cache[m]?.keys.map { $0 } ?? []) }

    /// One training step: every action of this rank, then AdamW on this rank's parameters. Returns the step's
    /// mean loss on the rank that holds the last chunk.
    mutating func runStep(_ step: Int) throws -> Float? {
        self.step = step  // the batch below needs it before the actions run
        if let data {
            batch = data.batch(step: spec.firstStep + step + 1, microbatches: spec.topology.microbatches, microbatchSize: spec.topology.microbatchSize)
        }
        losses = [:]
        try runActions(step: step)
        guard cache.isEmpty, deposits.isEmpty, tapes.isEmpty else {
            throw WorkerError.protocolViolation(rank: rank, "step \(step) ended with cache entries, deposits or tapes left")
        }
        let optimizerStart = monotonicSeconds()
        for c in myChunks {
            optimizers[c]!.update(&parameters[c]!, gradients: gradients[c]!)
            gradients[c]!.zeroAll()
        }
        worker.counters.computeSeconds += monotonicSeconds() - optimizerStart
        worker.recordCompute(.optimizer, start: optimizerStart, step: step, chunk: -1, microbatch: -1)
        guard myChunks.contains(layout.chunks - 1) else { return nil }
        // The mean of the microbatch means, summed in microbatch order exactly as the single-process Trainer does.
        let scale = 1 / Float(spec.topology.microbatches)
        var loss: Float = 0
        for m in 0..<spec.topology.microbatches { loss += losses[m]! * scale }
        return loss
    }

    mutating func forward(chunk c: Int, microbatch m: Int) throws {
        var input: HopActivations? = nil
        if c > 0 {
            let msg = inbox.removeValue(forKey: ChunkMicrobatch(chunk: c, microbatch: m))!
            try HopWire.expect(msg, roles: plan.tensors[c - 1], direction: .forward, hop: c - 1, microbatch: m, rank: rank)
            let structure = HopStructure(config: config, afterLayer: layout.layers(ofChunk: c).lowerBound - 1)
            var value = HopActivations(blocks: [])
            var arrived: Set<Int> = []
            var received: [Int: Tensor] = [:]
            for (role, payload) in zip(plan.tensors[c - 1], msg.payloads) {
                let t = ComputeStageRunner.tensor(payload, rows: rows, cols: config.hidden)
                switch role {
                case .hidden: value.hidden = t
                case .partial: value.partial = t
                case .block(let j): received[j] = t; arrived.insert(j)
                }
            }
            if !structure.hidden {
                value.blocks = try (0..<structure.blocks).map { j in
                    if let t = received[j] ?? cache[m]?[j] { return t }
                    throw WorkerError.protocolViolation(rank: rank, "chunk \(c) microbatch \(m) has no b\(j): neither received nor cached")
                }
            }
            wireBlocks[ChunkMicrobatch(chunk: c, microbatch: m)] = arrived
            input = value
        }
        // Middle chunks need only the microbatch's size; tokens and targets live on the first and last chunk.
        let mb = batch.isEmpty ? Microbatch(tokens: [], targets: [], sequences: spec.topology.microbatchSize) : batch[m]
        let f = chunks[c]!.forward(input, microbatch: mb, parameters: parameters[c]!)
        tapes[ChunkMicrobatch(chunk: c, microbatch: m)] = f.tape
        if let loss = f.loss { losses[m] = loss }
        // Keep what later chunks of this rank will read (received, or produced here).
        for j in plan.cachedBlocks(byChunk: c) where cache[m]?[j] == nil {
            guard let t = f.output?.blocks[j] ?? input?.blocks[j] else {
                throw WorkerError.protocolViolation(rank: rank, "chunk \(c) should cache b\(j) but does not hold it")
            }
            cache[m, default: [:]][j] = t
            cachedBytes += t.count * 4
        }
        peakCachedBytes = max(peakCachedBytes, cachedBytes)
        guard let out = f.output else { return }
        outbox[ChunkMicrobatch(chunk: c, microbatch: m)] = plan.tensors[c].map { role in
            switch role {
            case .hidden: return ComputeStageRunner.message(out.hidden!)
            case .block(let j): return ComputeStageRunner.message(out.blocks[j])
            case .partial: return ComputeStageRunner.message(out.partial!)
            }
        }
    }

    mutating func backward(chunk c: Int, microbatch m: Int) throws {
        let pair = ChunkMicrobatch(chunk: c, microbatch: m)
        var gradOutput: HopActivations? = nil
        if c < layout.chunks - 1 {
            let msg = gradInbox.removeValue(forKey: ChunkMicrobatch(chunk: c, microbatch: m))!
            try HopWire.expect(msg, roles: plan.tensors[c], direction: .backward, hop: c, microbatch: m, rank: rank)
            let structure = HopStructure(config: config, afterLayer: layout.layers(ofChunk: c).upperBound)
            // Blocks the receiver already held were not shipped: their output copy here has no consumer (0).
            var g = HopActivations(blocks: structure.hidden ? [] : (0..<structure.blocks).map { _ in Tensor(zeros: [rows, config.hidden]) })
            for (role, payload) in zip(plan.tensors[c], msg.payloads) {
                let t = ComputeStageRunner.tensor(payload, rows: rows, cols: config.hidden)
                switch role {
                case .hidden: g.hidden = t
                case .partial: g.partial = t
                case .block(let j): g.blocks[j] = t
                }
            }
            // This chunk brought these blocks onto the rank: add what later chunks of the rank deposited.
            for (j, o) in owner where o == c {
                if let d = deposits[m]?.removeValue(forKey: j) {
                    g.blocks[j].add(d)
                    depositsConsumed += 1
                }
            }
            if deposits[m]?.isEmpty == true { deposits[m] = nil }
            gradOutput = g
        }
        let gin = chunks[c]!.backward(tapes.removeValue(forKey: pair)!, gradOutput: gradOutput,
                                       lossScale: 1 / Float(spec.topology.microbatches),
                                       parameters: parameters[c]!, gradients: &gradients[c]!)
        if c > 0, let gin {
            let arrived = wireBlocks.removeValue(forKey: pair) ?? []
            for (j, gj) in gin.blocks.enumerated() where !arrived.contains(j) {
                guard owner[j] != nil else { throw WorkerError.protocolViolation(rank: rank, "chunk \(c) read b\(j) from a cache nobody owns") }
                if deposits[m]?[j] == nil { deposits[m, default: [:]][j] = gj } else { deposits[m]![j]!.add(gj) }
                depositsMade += 1
            }
            gradOutbox[pair] = plan.tensors[c - 1].map { role in
                switch role {
                case .hidden: return ComputeStageRunner.message(gin.hidden!)
                case .block(let j): return ComputeStageRunner.message(gin.blocks[j])
                case .partial: return ComputeStageRunner.message(gin.partial!)
                }
            }
        }
        if layout.virtualStage(ofChunk: c) == 0 {
            if let left = deposits[m], !left.isEmpty {
                throw WorkerError.protocolViolation(rank: rank, "microbatch \(m): gradient deposits for \(left.keys.sorted().map { "b\($0)" }) left after the rank's first chunk")
            }
            if let entries = cache.removeValue(forKey: m) { cachedBytes -= entries.values.reduce(0) { $0 + $1.count * 4 } }
        }
    }

    /// Writes this rank's checkpoint (after the run's last step).
    func save(to directory: String) throws {
        try Checkpoint.saveRank(directory: directory, rank: rank, chunks: myChunks, parameters: parameters, optimizers: optimizers,
                                stepsCompleted: spec.firstStep + spec.topology.steps)
    }

    /// A tensor's bytes in a new zero-copy message (the tensor's own array is not handed to libzmq).
    static func message(_ t: Tensor) -> Message {
        let bytes = t.count * 4
        let p = malloc(max(bytes, 4))!
        t.data.withUnsafeBytes { p.copyMemory(from: $0.baseAddress!, byteCount: bytes) }
        return Message(takingMalloced: p, count: bytes)
    }

    static func tensor(_ m: Message, rows: Int, cols: Int) -> Tensor {
        let n = m.count / 4
        let data = [Float](unsafeUninitializedCapacity: n) { buf, count in
            memcpy(buf.baseAddress!, m.data, n * 4)
            count = n
        }
        return Tensor(shape: [rows, cols], data: data)
    }
}

extension Topology {
    /// The model this topology trains in compute mode (and `attnres train` with the same file).
    public var modelConfig: ModelConfig {
        ModelConfig(layers: layers, hidden: hidden, heads: heads, seq: seq, vocab: vocab,
                    residual: residual, blocks: residual == .block ? blocks : layers)
    }
}
