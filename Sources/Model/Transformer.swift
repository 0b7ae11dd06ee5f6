import Numerics

/// The whole model in one process: the chunks of a `ChunkLayout` composed in order (forward 0 … C-1, backward
/// C-1 … 0), one microbatch at a time. With C = 1 it is the reference; any C gives bitwise-identical results,
/// which is what lets the pipeline (next issue) be checked against it.
public struct Transformer: Sendable {
    public let config: ModelConfig
    public let chunks: [ModelChunk]

    /// Throws when the config is invalid or has fewer layers than chunks.
    public init(config: ModelConfig, chunks chunkCount: Int = 1) throws {
        try config.validate()
        let layout = try ChunkLayout(layers: config.layers, chunks: chunkCount)
        self.config = config
        self.chunks = (0..<chunkCount).map { ModelChunk(config: config, layout: layout, index: $0) }
    }

    /// Initial parameters of every chunk (deterministic from the seed, per parameter name).
    public func initialParameters(seed: UInt64) -> ParameterSet {
        var p = ParameterSet()
        for c in chunks { p.merge(ParameterSet(initializing: c.parameterSpecs, seed: seed, layers: config.layers)) }
        return p
    }

    /// Mean loss of one microbatch, forward only.
    public func loss(_ mb: Microbatch, parameters p: ParameterSet) -> Float {
        var act: HopActivations? = nil
        for c in chunks {
            let f = c.forward(act, microbatch: mb, parameters: p)
            if let loss = f.loss { return loss }
            act = f.output
        }
        preconditionFailure("the last chunk returns the loss")
    }

    /// Loss of a global batch (mean of the microbatch means) and its gradients, accumulated into `gradients`
    /// microbatch by microbatch in order 0 … m-1 (the order every pipeline schedule keeps per chunk).
    public func lossAndGradients(_ microbatches: [Microbatch], parameters p: ParameterSet,
                                 gradients g: inout ParameterSet) -> Float {
        var ignored: [LayerMagnitude]? = nil
        return lossAndGradients(microbatches, parameters: p, gradients: &g, magnitudes: &ignored)
    }

    /// As above; when `magnitudes` is non-nil, also returns per-layer RMS averaged over the microbatches.
    public func lossAndGradients(_ microbatches: [Microbatch], parameters p: ParameterSet,
                                 gradients g: inout ParameterSet, magnitudes: inout [LayerMagnitude]?) -> Float {
        let scale = 1 / Float(microbatches.count)
        var total: Float = 0
        var sums = [LayerMagnitude]()
        for mb in microbatches {
            var tapes: [ChunkTape] = []
            var act: HopActivations? = nil
            for c in chunks {
                let f = c.forward(act, microbatch: mb, parameters: p)
                tapes.append(f.tape)
                act = f.output
                if let loss = f.loss { total += loss * scale }
            }
            var grad: HopActivations? = nil
            var mags: [LayerMagnitude]? = magnitudes == nil ? nil : []
            for c in chunks.reversed() {
                grad = c.backward(tapes[c.index], gradOutput: grad, lossScale: scale, parameters: p, gradients: &g,
                                  magnitudes: &mags)
            }
            if let mags {
                let ordered = mags.sorted { $0.layer < $1.layer }
                if sums.isEmpty { sums = ordered.map { LayerMagnitude(layer: $0.layer, inputRMS: 0, outputRMS: 0, gradientRMS: 0) } }
                for i in ordered.indices {
                    sums[i].inputRMS += ordered[i].inputRMS * scale
                    sums[i].outputRMS += ordered[i].outputRMS * scale
                    sums[i].gradientRMS += ordered[i].gradientRMS * scale
                }
            }
        }
        if magnitudes != nil { magnitudes = sums }
        return total
    }
}
