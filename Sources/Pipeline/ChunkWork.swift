import Model

/// What an action asks of a device: floating-point operations, bytes read and written in memory, and kernel calls
/// (each with a fixed launch or loop cost). A duration comes from these three and a device (`ComputeCost`).
public struct Work: Sendable, Equatable {
    public var flops: Double
    public var bytes: Double
    public var kernels: Double

    public init(flops: Double = 0, bytes: Double = 0, kernels: Double = 0) { self.flops = flops; self.bytes = bytes; self.kernels = kernels }

    public static let zero = Work()
    public static func + (a: Work, b: Work) -> Work { Work(flops: a.flops + b.flops, bytes: a.bytes + b.bytes, kernels: a.kernels + b.kernels) }
    public static func - (a: Work, b: Work) -> Work { Work(flops: a.flops - b.flops, bytes: a.bytes - b.bytes, kernels: a.kernels - b.kernels) }
    public static func * (k: Double, w: Work) -> Work { Work(flops: k * w.flops, bytes: k * w.bytes, kernels: k * w.kernels) }
}

/// Analytical work of every chunk's forward and backward for one microbatch, and of each rank's optimizer step,
/// from the exact model (docs/model.md; formulas and their derivation in docs/step-time.md). Float32 throughout.
///
/// T = b·s tokens, d hidden, H heads, s sequence, V vocabulary. Per sublayer (forward):
/// - attention: RMSNorm 4Td; Q, K, V, O projections 8Td²; scores QKᵀ and P·V 4bs²d (the full s×s product, masked
///   after); causal softmax 2.5·bHs²;
/// - MLP: RMSNorm 4Td; W1, W2 16Td²; GELU 8·4Td;
/// - residual: standard h + f 1·Td; depth attention over n sources 4nTd + 5nT (logits, softmax, weighted sum)
///   plus 3Td for the partial's key norm, and 1·Td to add the output to the open partial;
/// - chunk 0: embedding gather and positions 1·Td; each completed block read by a chunk: 3Td for its key norm,
///   once per chunk (`DepthAttention.rstd` is reused by every layer of the chunk);
/// - last chunk: output depth attention over N+1 sources, RMSNorm 4Td, head 2TdV, softmax cross-entropy 5TV.
/// Backward is twice the forward (each product has two gradient products; element-wise ops read and write twice
/// as much). The optimizer (AdamW) does 12 flops and moves 28 bytes per parameter.
public struct ChunkWork: Sendable {
    public let forward: [Work]
    public let backward: [Work]
    /// The part of `forward` (and `backward`) that is depth attention: every layer's attention over its sources
    /// with the partial's key norm, the completed blocks' key norms, the output attention; not the add that grows
    /// the partial. What a traced worker's `DepthClock` times, so calibration can fit it on its own. Zero for the
    /// standard residual.
    public let forwardDepth: [Work]
    public let backwardDepth: [Work]
    /// Tensors of chunk k's input state plus its output state (`HopPlan.inputRoles`, `outputRoles`): what the
    /// executor around the model gathers, caches and hands on for one forward (and their gradients for a backward).
    public let stateTensors: [Double]
    /// The parts of `forward` (and `backward`) that are the head (final norm, product, loss: the last chunk; its
    /// output depth attention is in `forwardDepth`) and the embedding (chunk 0); zero elsewhere. Calibration fits
    /// them apart from the layers, whose work every configuration of one width repeats.
    public let forwardHead: [Work], forwardEmbedding: [Work]
    public var backwardHead: [Work] { forwardHead.map { 2 * $0 } }
    public var backwardEmbedding: [Work] { forwardEmbedding.map { 2 * $0 } }
    /// Per rank: the optimizer step over the parameters of its chunks.
    public let optimizer: [Work]

    /// `twoPhase`: inference's depth attention (docs/model.md "Two-phase inference"): per block, one batched product
    /// of the block's queries over the completed blocks, read once (phase 1), then an online-softmax merge of the
    /// partial per layer (phase 2); one-pass reads every source again at every layer.
    public init(model c: ModelConfig, layout: Layout, microbatchSize b: Int, twoPhase: Bool = false) {
        let t = Double(b * c.seq), d = Double(c.hidden), s = Double(c.seq), h = Double(c.heads), v = Double(c.vocab)
        let partition = c.partition
        func attention() -> Work {
            Work(flops: 4 * t * d + 8 * t * d * d + 4 * Double(b) * s * s * d + 2.5 * Double(b) * h * s * s,
                 bytes: 4 * (4 * d * d + 10 * t * d + 3 * Double(b) * h * s * s), kernels: 5 + 3 * Double(b) * h)
        }
        func mlp() -> Work {
            Work(flops: 4 * t * d + 16 * t * d * d + 32 * t * d, bytes: 4 * (8 * d * d + 12 * t * d), kernels: 4)
        }
        /// The residual of layer l: standard adds, AttnRes attends over depth (`depth`) and grows the open partial.
        func residual(_ l: Int) -> (depth: Work, add: Work) {
            guard let partition else { return (.zero, Work(flops: t * d, bytes: 12 * t * d, kernels: 1)) }
            if twoPhase {
                let block = partition.block(ofLayer: l), first = partition.firstLayer(ofBlock: block)
                let chunkFirst = layout.layers(ofChunk: layout.chunkLayout.chunk(ofLayer: l)).lowerBound
                var w = Work.zero
                if l == first || l == chunkFirst {
                    // Phase 1 for this block's layers in this chunk: S' queries over the n completed blocks at once.
                    let queries = Double(min(partition.lastLayer(ofBlock: block), layout.layers(ofChunk: layout.chunkLayout.chunk(ofLayer: l)).upperBound) - l + 1)
                    let n = Double(block)
                    w = Work(flops: queries * (4 * n * t * d + 5 * n * t), bytes: 4 * (2 * n * t * d + queries * t * d), kernels: 3)
                }
                if l != first { w = w + Work(flops: 3 * t * d + 8 * t * d + 10 * t, bytes: 4 * 4 * t * d, kernels: 2) }
                return (w, Work(flops: t * d, bytes: 4 * 3 * t * d, kernels: 1))
            }
            let n = Double(ChunkWork.depthSources(layer: l, partition: partition))
            let partial = partition.firstLayer(ofBlock: partition.block(ofLayer: l)) == l ? 0.0 : 1.0
            return (Work(flops: 4 * n * t * d + 5 * n * t + partial * 3 * t * d, bytes: 4 * (2 * n * t * d + t * d), kernels: 2 + n),
                    Work(flops: t * d, bytes: 4 * t * d, kernels: 1))
        }
        /// The head: output depth attention (`depth`), final norm, product and loss.
        func head() -> (depth: Work, rest: Work) {
            let rest = Work(flops: 4 * t * d + 2 * t * d * v + 5 * t * v, bytes: 4 * (d * v + 2 * t * v + 2 * t * d), kernels: 4)
            guard let partition else { return (.zero, rest) }
            let n = Double(partition.blocks + 1)
            return (Work(flops: 4 * n * t * d + 5 * n * t, bytes: 4 * (2 * n * t * d + t * d), kernels: 3 + n), rest)
        }
        var forward: [Work] = [], forwardDepth: [Work] = [], forwardHead: [Work] = [], forwardEmbedding: [Work] = []
        var parameters: [Double] = []
        for k in 0..<layout.chunks {
            let layers = layout.layers(ofChunk: k)
            var w = Work.zero, depth = Work.zero, embedding = Work.zero, headRest = Work.zero
            var params = 0.0
            if k == 0 { embedding = Work(flops: t * d, bytes: 4 * 3 * t * d, kernels: 1); w = w + embedding; params += (v + s) * d }
            if let partition {
                let read = k == 0 ? 1 : partition.completedBlocks(afterLayer: layers.lowerBound - 1).count
                depth = depth + Work(flops: 3 * Double(read) * t * d, bytes: 4 * Double(read) * t * d, kernels: Double(read))
            }
            for l in layers {
                let r = residual(l)
                w = w + (c.isAttention(l) ? attention() : mlp()) + r.add
                depth = depth + r.depth
                params += (c.isAttention(l) ? 4 * d * d : 8 * d * d) + d + (partition == nil ? 0 : d)
            }
            if k == layout.chunks - 1 {
                let h = head()
                w = w + h.rest; depth = depth + h.depth; headRest = h.rest
                params += d * v + d + (partition == nil ? 0 : d)
            }
            forward.append(w + depth)
            forwardDepth.append(depth)
            forwardHead.append(headRest)
            forwardEmbedding.append(embedding)
            parameters.append(params)
        }
        self.forward = forward
        self.forwardDepth = forwardDepth
        self.forwardHead = forwardHead
        self.forwardEmbedding = forwardEmbedding
        stateTensors = (0..<layout.chunks).map { k in
            let range = layout.layers(ofChunk: k)
            let input = k == 0 ? 0 : TensorRole.state(afterLayer: range.lowerBound - 1, partition: partition).count
            let output = k == layout.chunks - 1 ? 0 : TensorRole.state(afterLayer: range.upperBound, partition: partition).count
            return Double(input + output)
        }
        backward = forward.map { 2 * $0 }
        backwardDepth = forwardDepth.map { 2 * $0 }
        optimizer = (0..<layout.ranks).map { r in
            let n = layout.chunks(onRank: r).reduce(0.0) { $0 + parameters[$1] }
            return Work(flops: 12 * n, bytes: 28 * n, kernels: Double(layout.virtualStages))
        }
    }

    /// Sources layer l's depth attention reads: the completed blocks b_0 … b_{n−1}, plus the open partial b_n^{i−1}
    /// unless l starts its block (full AttnRes: every earlier output v_0 … v_{l−1}).
    public static func depthSources(layer l: Int, partition: BlockPartition) -> Int {
        let n = partition.block(ofLayer: l)
        return partition.firstLayer(ofBlock: n) == l ? n : n + 1
    }
}

/// A device's cost of work: a duration for each flop, byte and kernel call, plus one per action. A hardware profile
/// gives the first three from its datasheet; calibration fits all four to a real run's trace.
public struct ComputeCost: Sendable, Equatable, Codable {
    public var secondsPerFlop: Double
    public var secondsPerByte: Double
    public var secondsPerKernel: Double
    public var secondsPerAction: Double

    public init(secondsPerFlop: Double, secondsPerByte: Double, secondsPerKernel: Double, secondsPerAction: Double = 0) {
        self.secondsPerFlop = secondsPerFlop; self.secondsPerByte = secondsPerByte
        self.secondsPerKernel = secondsPerKernel; self.secondsPerAction = secondsPerAction
    }

    /// Work is additive (no overlap of arithmetic and memory traffic): conservative, and linear in its
    /// coefficients, so calibration is a least-squares fit.
    public func seconds(_ w: Work) -> Double {
        w.flops * secondsPerFlop + w.bytes * secondsPerByte + w.kernels * secondsPerKernel + secondsPerAction
    }
}

/// The executor's own time in a forward or backward, around the model: a fixed part and a part per tensor of the
/// chunk's input and output state (`ChunkWork.stateTensors`: gathering them from the wire and the cache, storing,
/// handing them on).
public struct ExecutorCost: Sendable, Equatable, Codable {
    public var secondsPerAction: Double
    public var secondsPerTensor: Double
    public init(secondsPerAction: Double, secondsPerTensor: Double) {
        self.secondsPerAction = secondsPerAction; self.secondsPerTensor = secondsPerTensor
    }
    public func seconds(tensors: Double) -> Double { secondsPerAction + secondsPerTensor * tensors }
}

/// Costs of the compute actions of a step: forward and backward separately (their kernels differ), the optimizer.
/// A calibration on a trace that timed the parts of every span (`SpanClock`) also fits, on their own, depth
/// attention's part of forward and backward (`ChunkWork.forwardDepth`; its kernels run at another rate than the
/// sublayers' products) and the executor's part around the model (`ExecutorCost`); nil leaves depth attention to
/// `forward` and `backward`, and the executor free, as a datasheet does.
public struct ComputeCosts: Sendable, Equatable, Codable {
    public var forward: ComputeCost
    public var backward: ComputeCost
    public var optimizer: ComputeCost
    public var forwardDepth: ComputeCost?
    public var backwardDepth: ComputeCost?
    public var forwardExecutor: ExecutorCost?
    public var backwardExecutor: ExecutorCost?
    /// The head's and the embedding's cost (`ChunkWork.forwardHead`, `forwardEmbedding`), when fitted apart from
    /// the layers' (nil: `forward`, `backward` price them).
    public var forwardEnds: EndCosts?
    public var backwardEnds: EndCosts?

    /// What the two ends of the model cost, apart from the layers; and what depth attention's traffic costs the
    /// layers themselves (seconds per byte of `ChunkWork.forwardDepth`): the sources it streams evict the
    /// sublayers' weights and activations from the caches, so the same sublayers run slower beside more sources
    /// (measured: full AttnRes's layers 17 % slower than block(4)'s, outside depth attention's own time).
    public struct EndCosts: Sendable, Equatable, Codable {
        public var head: ComputeCost, embedding: ComputeCost
        public var layersPerDepthByte: Double
        public init(head: ComputeCost, embedding: ComputeCost, layersPerDepthByte: Double = 0) {
            self.head = head; self.embedding = embedding; self.layersPerDepthByte = layersPerDepthByte
        }
        func seconds(head h: Work, embedding e: Work) -> Double {
            (h == .zero ? 0 : head.seconds(h)) + (e == .zero ? 0 : embedding.seconds(e))
        }
    }

    public init(forward: ComputeCost, backward: ComputeCost, optimizer: ComputeCost,
                forwardDepth: ComputeCost? = nil, backwardDepth: ComputeCost? = nil,
                forwardExecutor: ExecutorCost? = nil, backwardExecutor: ExecutorCost? = nil,
                forwardEnds: EndCosts? = nil, backwardEnds: EndCosts? = nil) {
        self.forward = forward; self.backward = backward; self.optimizer = optimizer
        self.forwardDepth = forwardDepth; self.backwardDepth = backwardDepth
        self.forwardExecutor = forwardExecutor; self.backwardExecutor = backwardExecutor
        self.forwardEnds = forwardEnds; self.backwardEnds = backwardEnds
    }

    /// The same device for every kind of action.
    public init(_ cost: ComputeCost) { self.init(forward: cost, backward: cost, optimizer: cost) }

    /// One action's seconds in its three parts: the model without depth attention, depth attention, the executor.
    public struct Parts: Sendable, Equatable {
        public var rest: Double, depth: Double, executor: Double
        public var total: Double { rest + depth + executor }
    }

    /// The parts of an action with `total` model work of which `depth` is depth attention, `head` and
    /// `embedding` the model's ends, and `tensors` state tensors (`main` prices the model's work, and depth
    /// attention or the ends too where their own costs are nil).
    public static func parts(_ total: Work, depth: Work, head: Work = .zero, embedding: Work = .zero, tensors: Double,
                             main: ComputeCost, depthCost: ComputeCost?, ends: EndCosts? = nil, executor: ExecutorCost?) -> Parts {
        let exec = executor?.seconds(tensors: tensors) ?? 0
        let endWork = ends == nil ? Work.zero : head + embedding
        let endSeconds = (ends?.seconds(head: head, embedding: embedding) ?? 0) + (ends.map { $0.layersPerDepthByte * depth.bytes } ?? 0)
        guard let depthCost else {
            let all = main.seconds(total - endWork)
            // An infinite price (a datasheet out of range) stays one infinite part, never inf − inf.
            guard all.isFinite else { return Parts(rest: all + endSeconds, depth: 0, executor: exec) }
            let d = min(all, main.seconds(depth) - main.secondsPerAction)
            return Parts(rest: all - d + endSeconds, depth: d, executor: exec)
        }
        return Parts(rest: main.seconds(total - depth - endWork) + endSeconds, depth: depthCost.seconds(depth) - depthCost.secondsPerAction,
                     executor: exec)
    }

    /// Chunk k's forward and backward, in parts.
    public func forwardParts(_ work: ChunkWork) -> [Parts] {
        (0..<work.forward.count).map { k in
            Self.parts(work.forward[k], depth: work.forwardDepth[k], head: work.forwardHead[k], embedding: work.forwardEmbedding[k],
                       tensors: work.stateTensors[k], main: forward, depthCost: forwardDepth, ends: forwardEnds, executor: forwardExecutor)
        }
    }
    public func backwardParts(_ work: ChunkWork) -> [Parts] {
        let head = work.backwardHead, embedding = work.backwardEmbedding
        return (0..<work.backward.count).map { k in
            Self.parts(work.backward[k], depth: work.backwardDepth[k], head: head[k], embedding: embedding[k],
                       tensors: work.stateTensors[k], main: backward, depthCost: backwardDepth, ends: backwardEnds, executor: backwardExecutor)
        }
    }

    /// The step's costs for a configuration: per-chunk durations, per-hop message bytes from its hop plan.
    public func stepCosts(_ work: ChunkWork, plan: HopPlan, activationBytes: Int, link: LinkCost,
                          overrides: [StepCosts.LinkID: LinkCost] = [:], sendOverhead: Double = 0, receiveOverhead: Double = 0) -> StepCosts {
        let f = forwardParts(work), b = backwardParts(work)
        var c = StepCosts(forward: f.map(\.total), backward: b.map(\.total),
                          optimizer: work.optimizer.map(optimizer.seconds), sendOverhead: sendOverhead,
                          hopBytes: plan.tensors.map { $0.count * activationBytes }, defaultLink: link, overrides: overrides)
        c.receiveOverhead = receiveOverhead
        c.forwardParts = f; c.backwardParts = b
        return c
    }
}
