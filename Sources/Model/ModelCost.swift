/// Arithmetic (FLOPs) and compulsory memory traffic (bytes) of a train step and of an inference forward, counted from
/// the model's definition (DESIGN §3), so a measured overhead of AttnRes can be read against the overhead the method
/// itself implies: `attnres bench model` prints block ÷ standard of both beside each measured time ratio.
///
/// Counting rules (docs/benchmarks-model.md, "The floor"): a product [m, k]·[k, p] is 2mkp FLOPs and reads both
/// operands and writes the result once; its backward is the two products dX = dY·Wᵀ and dW += Xᵀ·dY (accumulators are
/// read and written). An elementwise op over e elements costs a fixed number of FLOPs per element (exp and tanh count
/// as one) and reads/writes each operand once. Depth attention reads its K sources once per call (logits and
/// weighted sum fused per token), the partial's key statistics cost 2·d per token, a completed block's once per
/// forward. AdamW reads parameter, gradient and both moments and writes three of them. Integer work, allocation and
/// call overheads are not counted: the floor is what any implementation of the same model must do.
public struct Cost: Sendable, Equatable {
    /// Floating-point operations.
    public var flops: Double
    /// Bytes read plus bytes written (Float32 elements).
    public var bytes: Double

    public init(flops: Double = 0, bytes: Double = 0) { self.flops = flops; self.bytes = bytes }

    public static func + (a: Cost, b: Cost) -> Cost { Cost(flops: a.flops + b.flops, bytes: a.bytes + b.bytes) }
    public static func += (a: inout Cost, b: Cost) { a = a + b }
    public static func * (k: Double, a: Cost) -> Cost { Cost(flops: k * a.flops, bytes: k * a.bytes) }

    /// [m, k]·[k, p].
    static func product(_ m: Int, _ k: Int, _ p: Int) -> Cost {
        let flops: Int = 2 * m * k * p, elements: Int = m * k + k * p + m * p
        return Cost(flops: Double(flops), bytes: Double(4 * elements))
    }

    /// Backward of [m, k]·[k, p]: dX [m, k] += dY·Wᵀ and dW [k, p] += Xᵀ·dY.
    static func productBackward(_ m: Int, _ k: Int, _ p: Int) -> Cost {
        let flops: Int = 4 * m * k * p
        let dx: Int = m * p + k * p + 2 * m * k, dw: Int = m * k + m * p + 2 * k * p
        return Cost(flops: Double(flops), bytes: Double(4 * (dx + dw)))
    }

    /// An elementwise op over `count` elements, `flops` per element, reading `reads` and writing `writes` tensors.
    static func elementwise(_ count: Int, flops: Double, reads: Int, writes: Int) -> Cost {
        let elements: Int = count * (reads + writes)
        return Cost(flops: flops * Double(count), bytes: Double(4 * elements))
    }
}

/// The cost model of one model configuration (see `Cost` for the counting rules).
public struct ModelCost: Sendable {
    public let config: ModelConfig
    public init(config: ModelConfig) { self.config = config }

    /// One optimizer step: `microbatches` forward + backward passes of `sequences` sequences each, then AdamW.
    public func trainStep(microbatches: Int, sequences: Int) -> Cost {
        let n = sequences * config.seq
        var perMicrobatch = embedding(n, backward: true) + head(n, loss: true, backward: true)
        for l in 1...config.layers {
            perMicrobatch += sublayer(l, n, backward: true) + residual(l, n, backward: true)
        }
        if let partition = config.partition {  // completed blocks' key statistics, once per forward
            perMicrobatch += Double(partition.blocks + 1) * Cost.elementwise(n * config.hidden, flops: 2, reads: 1, writes: 0)
        }
        let parameters = Double(ParameterNames.all(config: config).reduce(0) { $0 + $1.shape.reduce(1, *) })
        let adamW = Cost(flops: 14 * parameters, bytes: 4 * 8 * parameters)  // 4 read, 3 written, gradient zeroed
        return Double(microbatches) * perMicrobatch + adamW
    }

    /// One inference forward of `sequences` sequences to the logits, with depth attention evaluated in `mode`.
    public func inference(sequences: Int, mode: Inference.Mode) -> Cost {
        let n = sequences * config.seq, d = config.hidden
        var cost = embedding(n, backward: false) + head(n, loss: false, backward: false)
        for l in 1...config.layers { cost += sublayer(l, n, backward: false) }
        guard let partition = config.partition else {
            for l in 1...config.layers { cost += residual(l, n, backward: false) }
            return cost
        }
        let blockRstd = Cost.elementwise(n * d, flops: 2, reads: 1, writes: 0)
        switch mode {
        case .onePass:
            for l in 1...config.layers { cost += residual(l, n, backward: false) }
            cost += Double(partition.blocks + 1) * blockRstd
        case .twoPhase:
            for blockIndex in 1...partition.blocks {
                let first = partition.firstLayer(ofBlock: blockIndex), last = partition.lastLayer(ofBlock: blockIndex)
                let s = last - first + 1, k = blockIndex  // b_0 … b_{n-1}
                // the keys of the newest completed block, normalised and appended once; phase 1: one product of the
                // block's S queries with all K·n keys, then per-token max, exp and sum of its logits
                cost += Cost.elementwise(n * d, flops: 3, reads: 1, writes: 1)
                cost += Cost.product(s, d, k * n) + Cost.elementwise(s * k * n, flops: 3, reads: 1, writes: 1)
                for l in first...last {
                    let partial = l != first
                    // phase 2: one pass over the K values (and the partial, whose logit and statistics cost 4·d per
                    // token) writing h
                    cost += Cost.elementwise(n * d, flops: 2 * Double(k), reads: k, writes: 1)
                    if partial {
                        cost += Cost.elementwise(n * d, flops: 6, reads: 1, writes: 0)
                        cost += Cost.elementwise(n * d, flops: 1, reads: 2, writes: 1)  // partial += v
                    }
                }
            }
            cost += depthAttention(sources: partition.blocks + 1, cachedKeys: partition.blocks + 1, n, backward: false)
            cost += blockRstd
        }
        return cost
    }

    /// v_0 = E[x] + Pos (and the scatter-add of its gradient into both tables).
    func embedding(_ n: Int, backward: Bool) -> Cost {
        let d = config.hidden
        let forward = Cost.elementwise(n * d, flops: 1, reads: 2, writes: 1)
        return backward ? forward + 2 * Cost.elementwise(n * d, flops: 1, reads: 2, writes: 1) : forward
    }

    /// Output attention (block/full), final RMSNorm, head product and (training) softmax cross-entropy.
    func head(_ n: Int, loss: Bool, backward: Bool) -> Cost {
        let d = config.hidden, v = config.vocab
        var cost = rmsNorm(n, backward: backward) + Cost.product(n, d, v)
        if loss { cost += Cost.elementwise(n * v, flops: 4, reads: 1, writes: 1) }
        if backward { cost += Cost.elementwise(n * v, flops: 2, reads: 1, writes: 1) + Cost.productBackward(n, d, v) }
        if let partition = config.partition, loss || backward {
            let k = partition.blocks + 1
            cost += depthAttention(sources: k, cachedKeys: k, n, backward: backward)
        }
        return cost
    }

    /// RMSNorm with gain over [n, d] (forward: squares, sum, two scalings; backward reads dy, x and accumulates dx).
    func rmsNorm(_ n: Int, backward: Bool) -> Cost {
        let d = config.hidden
        let forward = Cost.elementwise(n * d, flops: 4, reads: 1, writes: 1)
        return backward ? forward + Cost.elementwise(n * d, flops: 8, reads: 3, writes: 1) : forward
    }

    /// Sublayer l (PreNorm attention or MLP) on n tokens.
    func sublayer(_ l: Int, _ n: Int, backward: Bool) -> Cost {
        let d = config.hidden, s = config.seq, heads = config.heads, dh = d / heads, b = n / s
        var cost = rmsNorm(n, backward: backward)
        if config.isAttention(l) {
            let scores = b * heads * s * s
            cost += 4 * Cost.product(n, d, d)
            cost += Double(2 * b * heads) * Cost.product(s, dh, s) + Cost.elementwise(scores, flops: 4, reads: 1, writes: 1)
            if backward {
                cost += 4 * Cost.productBackward(n, d, d)
                cost += Double(2 * b * heads) * Cost.productBackward(s, dh, s)
                cost += Cost.elementwise(scores, flops: 4, reads: 2, writes: 1)
            }
        } else {
            cost += Cost.product(n, d, 4 * d) + Cost.elementwise(4 * n * d, flops: 8, reads: 1, writes: 1)
                + Cost.product(n, 4 * d, d)
            if backward {
                cost += Cost.productBackward(n, d, 4 * d) + Cost.elementwise(4 * n * d, flops: 10, reads: 2, writes: 1)
                    + Cost.productBackward(n, 4 * d, d)
            }
        }
        return cost
    }

    /// The residual connection of layer l: h += v (standard), or depth attention over the layer's sources plus the
    /// partial update (block/full).
    func residual(_ l: Int, _ n: Int, backward: Bool) -> Cost {
        let d = config.hidden
        guard let partition = config.partition else {
            // standard: h += v; in backward the gradient of h passes through unchanged (accumulated by RMSNorm's dx)
            return Cost.elementwise(n * d, flops: 1, reads: 2, writes: 1)
        }
        let blockIndex = partition.block(ofLayer: l), hasPartial = l != partition.firstLayer(ofBlock: blockIndex)
        let k = blockIndex + (hasPartial ? 1 : 0)
        var cost = depthAttention(sources: k, cachedKeys: blockIndex, n, backward: backward)
        if hasPartial { cost += Cost.elementwise(n * d, flops: 1, reads: 2, writes: 1) }  // partial += v
        return cost
    }

    /// One depth attention over k sources of [n, d], `cachedKeys` of whose key statistics come from the per-forward
    /// cache (the partial's are computed here). Forward: logits 2·d, weighted sum 2·d per source and token, one read of
    /// every source. Backward: dα 2·d, the value and key paths 8·d per source and token; reads sources and dh, reads
    /// and writes each source's gradient.
    func depthAttention(sources k: Int, cachedKeys: Int, _ n: Int, backward: Bool) -> Cost {
        let d = config.hidden, uncached = k - min(k, cachedKeys)
        let forwardFlops: Int = n * (4 * k * d + 4 * k + 2 * d * uncached), forwardElements: Int = (k + 1) * n * d
        var cost = Cost(flops: Double(forwardFlops), bytes: Double(4 * forwardElements))
        if backward {
            let flops: Int = n * (10 * k * d + 4 * k), elements: Int = (3 * k + 1) * n * d
            cost += Cost(flops: Double(flops), bytes: Double(4 * elements))
        }
        return cost
    }
}
