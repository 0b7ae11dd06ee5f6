import Numerics

/// One microbatch: `sequences` token rows of length seq, flattened row-major, with next-byte targets.
public struct Microbatch: Sendable, Equatable {
    /// Token ids [sequences·seq].
    public var tokens: [Int32]
    /// Next-token targets [sequences·seq].
    public var targets: [Int32]
    /// Number of sequences b.
    public var sequences: Int
    public init(tokens: [Int32], targets: [Int32], sequences: Int) {
        self.tokens = tokens; self.targets = targets; self.sequences = sequences
    }
}

/// Everything a chunk's backward needs from its forward (activations are kept, not recomputed).
public struct ChunkTape: Sendable {
    struct LayerRecord: Sendable {
        var layer: Int
        var sources: [Tensor]            // depth-attention sources (full/block), empty for standard
        var depth: DepthAttention.Saved?
        var sublayer: Sublayer.Saved
        var hadPartial: Bool
        var output: Tensor               // v_l = f_l(h_l)
    }
    struct HeadRecord: Sendable {
        var sources: [Tensor]
        var depth: DepthAttention.Saved?
        var o: Tensor
        var norm: RMSNorm.Saved
        var normed: Tensor
        var loss: SoftmaxCrossEntropy.Saved
        var targets: [Int32]
    }
    var tokens: [Int32]?
    var layers: [LayerRecord] = []
    var head: HeadRecord?
    var sequences: Int
}

/// Per-layer magnitudes for the PreNorm-dilution statistics (DESIGN §3 / issue item 6).
public struct LayerMagnitude: Sendable, Equatable {
    /// Layer l (1-based).
    public var layer: Int
    /// RMS of the sublayer input h_l (the residual stream for standard, the depth-attention mix otherwise).
    public var inputRMS: Float
    /// RMS of the sublayer output v_l = f_l(h_l).
    public var outputRMS: Float
    /// RMS of ∂loss/∂v_l (filled by backward).
    public var gradientRMS: Float
}

/// The result of a chunk's forward pass.
public struct ChunkForward: Sendable {
    /// Activations for hop k → k+1; nil for the last chunk.
    public var output: HopActivations?
    /// Mean cross-entropy of the microbatch; only the last chunk has it.
    public var loss: Float?
    /// What the backward pass of this chunk needs.
    public var tape: ChunkTape
}

/// Chunk k of C (DESIGN §4): a contiguous run of layers, plus the embedding (chunk 0) and the output attention,
/// final norm, head and loss (chunk C-1). The single-process model is literally the composition of these calls,
/// so a pipeline that runs chunks in other processes reproduces it bit for bit.
public struct ModelChunk: Sendable {
    public let config: ModelConfig
    public let layout: ChunkLayout
    /// This chunk's index k (0-based).
    public let index: Int
    /// The 1-based layers this chunk runs.
    public var layers: ClosedRange<Int> { layout.layers(ofChunk: index) }
    public var isFirst: Bool { index == 0 }
    public var isLast: Bool { index == layout.chunks - 1 }

    /// `ParameterNames.query(l)` for l = 0 … L + 1, built once: depth attention looks its pseudo-query up three times
    /// a layer and microbatch (forward, backward, gradient).
    let queryNames: [String]

    public init(config: ModelConfig, layout: ChunkLayout, index: Int) {
        precondition(index >= 0 && index < layout.chunks)
        self.config = config; self.layout = layout; self.index = index
        queryNames = (0...(config.layers + 1)).map(ParameterNames.query)
    }

    /// The parameters this chunk owns (names and shapes), in canonical order.
    public var parameterSpecs: [ParameterSpec] { ParameterNames.chunk(index, layout: layout, config: config) }

    /// Forward of one microbatch.
    /// - input: activations from hop k-1 → k (nil for chunk 0, which embeds `microbatch.tokens`).
    /// - Returns: hop activations [b·s, d] each (nil for the last chunk) or the loss (last chunk only).
    public func forward(_ input: HopActivations?, microbatch mb: Microbatch, parameters p: ParameterSet) -> ChunkForward {
        let b = mb.sequences, c = config
        var tape = ChunkTape(sequences: b)
        var state: HopActivations
        if isFirst {
            // v_0 = E[x] + Pos[0..s): exactly one source (never added twice).
            let clock = SpanClock.model.start()
            var v0 = Embedding.forward(ids: mb.tokens, table: p["embed.weight"])
            let positions = (0..<(b * c.seq)).map { Int32($0 % c.seq) }
            v0.add(Embedding.forward(ids: positions, table: p["pos.weight"]))
            SpanClock.model.stop(clock)
            tape.tokens = mb.tokens
            state = c.usesDepthAttention ? HopActivations(blocks: [v0]) : HopActivations(hidden: v0)
        } else {
            guard let input else { preconditionFailure("chunk \(index) needs its input activations") }
            state = input
        }
        // Key statistics (reciprocal RMS) of the completed blocks: a completed block never changes within a forward,
        // so each is normalised once here and reused by every later layer and the output attention (bitwise the same
        // as recomputing). Only the partial's keys change from layer to layer.
        var blockRstd: [[Float]?] = []
        func completedBlockRstd() -> [[Float]?] {
            while blockRstd.count < state.blocks.count { blockRstd.append(DepthAttention.rstd(state.blocks[blockRstd.count])) }
            return blockRstd
        }
        for l in layers {
            let clock = SpanClock.model.start()
            defer { SpanClock.model.stop(clock) }
            if c.usesDepthAttention {
                let sources = state.partial.map { state.blocks + [$0] } ?? state.blocks
                let (h, ds) = SpanClock.depth.measure {
                    DepthAttention.forward(query: p[queryNames[l]], sources: sources, rstd: completedBlockRstd())
                }
                let (v, ss) = Sublayer.forward(layer: l, h, batch: b, config: c, parameters: p)
                tape.layers.append(.init(layer: l, sources: sources, depth: ds, sublayer: ss,
                                         hadPartial: state.partial != nil, output: v))
                if state.partial == nil { state.partial = v } else { state.partial!.add(v) }
                if c.endsBlock(l) { state.blocks.append(state.partial!); state.partial = nil }
            } else {
                let (v, ss) = Sublayer.forward(layer: l, state.hidden!, batch: b, config: c, parameters: p)
                tape.layers.append(.init(layer: l, sources: [], depth: nil, sublayer: ss, hadPartial: false, output: v))
                state.hidden!.add(v)
            }
        }
        guard isLast else { return ChunkForward(output: state, loss: nil, tape: tape) }
        let clock = SpanClock.model.start()
        defer { SpanClock.model.stop(clock) }
        // Output: o attends over [b_0 … b_N] with its own query w_{L+1} (standard: o = h_{L+1}).
        var o: Tensor, headSources: [Tensor] = [], headDepth: DepthAttention.Saved?
        if c.usesDepthAttention {
            precondition(state.partial == nil, "the last layer must complete the last block")
            headSources = state.blocks
            (o, headDepth) = SpanClock.depth.measure {
                DepthAttention.forward(query: p[queryNames[c.layers + 1]], sources: headSources, rstd: completedBlockRstd())
            }
        } else {
            o = state.hidden!
        }
        let (normed, ns) = RMSNorm.forward(o, gain: p["final_norm.gain"])
        let logits = Matmul.forward(normed, p["head.weight"])
        let (loss, ls) = SoftmaxCrossEntropy.forward(logits: logits, targets: mb.targets)
        tape.head = .init(sources: headSources, depth: headDepth, o: o, norm: ns, normed: normed, loss: ls,
                          targets: mb.targets)
        return ChunkForward(output: nil, loss: loss, tape: tape)
    }

    /// Backward of one microbatch.
    /// - gradOutput: gradients of this chunk's output activations (nil for the last chunk).
    /// - lossScale: ∂(objective)/∂(this microbatch's loss), e.g. 1/m for the mean over m microbatches (last chunk).
    /// - gradients: parameter gradients, accumulated (+=) for this chunk's parameters.
    /// - Returns: gradients of the input activations (nil for chunk 0, whose gradient ends in the embeddings).
    public func backward(_ tape: ChunkTape, gradOutput: HopActivations?, lossScale: Float, parameters p: ParameterSet,
                         gradients g: inout ParameterSet) -> HopActivations? {
        var ignored: [LayerMagnitude]? = nil
        return backward(tape, gradOutput: gradOutput, lossScale: lossScale, parameters: p, gradients: &g,
                        magnitudes: &ignored)
    }

    /// Backward that also appends one `LayerMagnitude` per layer (in reverse layer order) when `magnitudes` is non-nil.
    public func backward(_ tape: ChunkTape, gradOutput: HopActivations?, lossScale: Float, parameters p: ParameterSet,
                         gradients g: inout ParameterSet, magnitudes: inout [LayerMagnitude]?) -> HopActivations? {
        let c = config, b = tape.sequences
        var grad: HopActivations
        if let head = tape.head {
            let clock = SpanClock.model.start()
            defer { SpanClock.model.stop(clock) }
            var dlogits = Tensor(zeros: [head.normed.rows, c.vocab])
            SoftmaxCrossEntropy.backward(dloss: lossScale, targets: head.targets, saved: head.loss, dlogits: &dlogits)
            var dnormed = Tensor(zeros: head.normed.shape)
            Matmul.backwardInput(dlogits, w: p["head.weight"], dx: &dnormed)
            g.modify("head.weight") { Matmul.backwardWeight(dlogits, x: head.normed, dw: &$0) }
            var do_ = Tensor(zeros: head.o.shape)
            var dgain: Tensor? = Tensor(zeros: [c.hidden])
            RMSNorm.backward(dnormed, x: head.o, gain: p["final_norm.gain"], saved: head.norm, dx: &do_, dgain: &dgain)
            g.modify("final_norm.gain") { $0.add(dgain!) }
            if c.usesDepthAttention {
                // the blocks' gradients start here: written, not accumulated into zero fills (bitwise the same)
                var dsources = head.sources.map { src in
                    Tensor(shape: src.shape, data: [Float](unsafeUninitializedCapacity: src.count) { $1 = src.count })
                }
                var dq = Tensor(zeros: [c.hidden])
                SpanClock.depth.measure {
                    DepthAttention.backward(do_, query: p[queryNames[c.layers + 1]], sources: head.sources,
                                            saved: head.depth!, dsources: &dsources, dquery: &dq, accumulate: false)
                }
                g.modify(queryNames[c.layers + 1]) { $0.add(dq) }
                grad = HopActivations(blocks: dsources)
            } else {
                grad = HopActivations(hidden: do_)
            }
        } else {
            guard let gradOutput else { preconditionFailure("chunk \(index) needs the gradient of its output") }
            grad = gradOutput
        }
        for rec in tape.layers.reversed() {
            let clock = SpanClock.model.start()
            defer { SpanClock.model.stop(clock) }
            let l = rec.layer
            if c.usesDepthAttention {
                if c.endsBlock(l) {
                    precondition(grad.partial == nil)
                    grad.partial = grad.blocks.removeLast()  // b_n = b_n^S: its gradient is the last partial's
                }
                var dh: Tensor
                do {  // dv's scope ends before depth attention adds into the partial's gradient, which it shares (no copy)
                    let dv = grad.partial!  // partial^i = partial^{i-1} + v_l: v_l and partial^{i-1} share the gradient
                    if !rec.hadPartial { grad.partial = nil }
                    // dh is written, not accumulated: no zero fill (bitwise the same as into zeros)
                    dh = Tensor(shape: dv.shape, data: [Float](unsafeUninitializedCapacity: dv.count) { $1 = dv.count })
                    Sublayer.backward(layer: l, dv, saved: rec.sublayer, batch: b, config: c, parameters: p,
                                      gradients: &g, dh: &dh, accumulate: false)
                    magnitudes?.append(LayerMagnitude(layer: l, inputRMS: rec.sublayer.input.rms,
                                                      outputRMS: rec.output.rms, gradientRMS: dv.rms))
                }
                if let partial = grad.partial { grad.blocks.append(partial); grad.partial = nil }
                var dq = Tensor(zeros: [c.hidden])
                SpanClock.depth.measure {
                    DepthAttention.backward(dh, query: p[queryNames[l]], sources: rec.sources, saved: rec.depth!,
                                            dsources: &grad.blocks, dquery: &dq)
                }
                g.modify(queryNames[l]) { $0.add(dq) }
                if rec.hadPartial { grad.partial = grad.blocks.removeLast() }
            } else {
                let dv = grad.hidden!  // h_{l+1} = h_l + v_l
                Sublayer.backward(layer: l, dv, saved: rec.sublayer, batch: b, config: c, parameters: p,
                                  gradients: &g, dh: &grad.hidden!)
                magnitudes?.append(LayerMagnitude(layer: l, inputRMS: rec.sublayer.input.rms,
                                                          outputRMS: rec.output.rms, gradientRMS: dv.rms))
            }
        }
        guard isFirst else { return grad }
        let clock = SpanClock.model.start()
        defer { SpanClock.model.stop(clock) }
        let dv0 = c.usesDepthAttention ? grad.blocks[0] : grad.hidden!
        precondition(!c.usesDepthAttention || (grad.blocks.count == 1 && grad.partial == nil))
        let tokens = tape.tokens!
        g.modify("embed.weight") { Embedding.backward(dv0, ids: tokens, dtable: &$0) }
        let positions = (0..<tokens.count).map { Int32($0 % c.seq) }
        g.modify("pos.weight") { Embedding.backward(dv0, ids: positions, dtable: &$0) }
        return nil
    }
}
