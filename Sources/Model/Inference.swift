import Numerics

/// Forward-only evaluation for inference, with depth attention computed one-pass (one `DepthAttention` per layer,
/// reading every source every layer) or two-phase (paper §4.2: per block, one batched phase-1 product of all its
/// queries over the completed blocks, then a sequential online-softmax merge of the partial). Both give the same
/// result to float tolerance; `attnres bench model` times them against the standard residual.
public struct Inference: Sendable {
    /// How depth attention is evaluated.
    public enum Mode: String, Sendable, CaseIterable { case onePass, twoPhase }

    /// Logits and the input h_l of every sublayer (for comparing the modes layer by layer).
    public struct Result: Sendable {
        /// Head logits [b·s, vocab].
        public var logits: Tensor
        /// h_1 … h_L, each [b·s, d].
        public var layerInputs: [Tensor]
    }

    public let config: ModelConfig
    public init(config: ModelConfig) throws { try config.validate(); AllocatorTuning.apply(); self.config = config }

    /// Runs the whole model on one microbatch. `recordingLayerInputs: false` leaves `Result.layerInputs` empty: keeping
    /// them costs the standard residual a copy of h per layer (the stream is updated in place), which a benchmark
    /// must not charge to it.
    public func forward(_ mb: Microbatch, parameters p: ParameterSet, mode: Mode = .twoPhase,
                        recordingLayerInputs: Bool = true) -> Result {
        let c = config, b = mb.sequences
        var v0 = Embedding.forward(ids: mb.tokens, table: p["embed.weight"])
        v0.add(Embedding.forward(ids: (0..<(b * c.seq)).map { Int32($0 % c.seq) }, table: p["pos.weight"]))
        var inputs: [Tensor] = []
        var o: Tensor
        if !c.usesDepthAttention {
            var h = v0
            for l in 1...c.layers {
                if recordingLayerInputs { inputs.append(h) }
                h.add(Sublayer.forward(layer: l, h, batch: b, config: c, parameters: p).0)
            }
            o = h
        } else {
            var blocks = [v0]
            // Normalised keys of the completed blocks, stacked [K·n, d]. A completed block never changes, so its keys
            // are normalised once, when it completes, and appended (row-wise the same values `keys(blocks)` gives).
            // The key statistics (reciprocal RMS) of each completed block likewise serve every later one-pass layer and
            // the output attention.
            // With a C kernel (AVX2, AVX-512), phase 1 reads the blocks themselves (`phase1(queries:sources:rstd:)`) and no keys
            // are stacked.
            let stackedKeys = mode == .twoPhase && DepthKernel.current == .baseline
            var keys: [Float] = [], blockRstd: [[Float]?] = [], flatRstd: [Float] = []  // flat: phase 1's argument
            if stackedKeys { keys.reserveCapacity(c.effectiveBlocks * v0.count) }
            func completed(_ block: Tensor, last: Bool) {
                if stackedKeys && !last {
                    var rstd: [Float] = []
                    DepthAttentionTwoPhase.appendKeys(of: block, to: &keys, rstd: &rstd)
                    blockRstd.append(rstd)
                } else {
                    let rstd = DepthAttention.rstd(block)
                    blockRstd.append(rstd)
                    if mode == .twoPhase && !last { flatRstd += rstd }
                }
            }
            completed(v0, last: false)
            for n in 1...c.effectiveBlocks {
                let first = c.partition!.firstLayer(ofBlock: n), last = c.partition!.lastLayer(ofBlock: n)
                let queries = (first...last).map { p[ParameterNames.query($0)] }
                var partial: Tensor? = nil
                switch mode {
                case .onePass:
                    for (i, l) in (first...last).enumerated() {
                        let sources = partial.map { blocks + [$0] } ?? blocks
                        let h = DepthAttention.forward(query: queries[i], sources: sources, rstd: blockRstd).0
                        if recordingLayerInputs { inputs.append(h) }
                        let v = Sublayer.forward(layer: l, h, batch: b, config: c, parameters: p).0
                        if partial == nil { partial = v } else { partial!.add(v) }
                    }
                case .twoPhase:
                    let stats = stackedKeys
                        ? DepthAttentionTwoPhase.phase1(queries: queries,
                                                        keys: Tensor(shape: [keys.count / c.hidden, c.hidden], data: keys),
                                                        tokens: v0.rows)
                        : DepthAttentionTwoPhase.phase1(queries: queries, sources: blocks, rstd: flatRstd)
                    for (i, l) in (first...last).enumerated() {
                        let h = partial.map {
                            DepthAttentionTwoPhase.merge(stats[i], sources: blocks, query: queries[i], partial: $0)
                        } ?? DepthAttentionTwoPhase.normalize(stats[i], sources: blocks)
                        if recordingLayerInputs { inputs.append(h) }
                        let v = Sublayer.forward(layer: l, h, batch: b, config: c, parameters: p).0
                        if partial == nil { partial = v } else { partial!.add(v) }
                    }
                }
                blocks.append(partial!)
                completed(partial!, last: n == c.effectiveBlocks)
            }
            o = DepthAttention.forward(query: p[ParameterNames.query(c.layers + 1)], sources: blocks, rstd: blockRstd).0
        }
        let normed = RMSNorm.forward(o, gain: p["final_norm.gain"]).0
        return Result(logits: Matmul.forward(normed, p["head.weight"]), layerInputs: inputs)
    }
}
