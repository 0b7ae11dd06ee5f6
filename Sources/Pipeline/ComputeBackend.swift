import Model
import Numerics

/// Why compute mode stopped.
public enum ComputeFailure: Error, CustomStringConvertible, Equatable {
    /// The loss of a microbatch is not a number (diverged training, or a poisoned parameter).
    case lossIsNaN(step: Int, microbatch: Int)

    public var description: String {
        switch self {
        case let .lossIsNaN(step, m): return "loss is NaN at step \(step) (microbatch \(m))"
        }
    }
}

/// Compute mode's backend: the real model, split into the chunks one rank owns, with their parameters, gradients
/// and AdamW state. Chunk 0 embeds the microbatch's tokens and the last chunk computes its loss, exactly as the
/// single-process `Transformer` composes the same chunks, so the pipeline reproduces it.
public struct ComputeBackend: ChunkBackend {
    public typealias Value = Tensor

    public let config: ModelConfig
    public let layout: Layout
    public let rank: Int
    public let microbatches: Int
    public let microbatchSize: Int
    public let chunks: [Int: ModelChunk]
    public private(set) var parameters: [Int: ParameterSet] = [:]
    public private(set) var gradients: [Int: ParameterSet] = [:]
    public private(set) var optimizers: [Int: AdamW] = [:]
    /// Tokens and targets, on the ranks of the first and the last chunk.
    let data: BatchSource?
    var batch: [Microbatch] = []
    var tapes: [Int: [Int: ChunkTape]] = [:]
    var losses: [Int: Float] = [:]
    /// 1-based optimizer step being computed (the batch's step, as `attnres train` numbers it).
    public private(set) var globalStep = 0

    public init(config: ModelConfig, layout: Layout, rank: Int, microbatches: Int, microbatchSize: Int, seed: UInt64,
                learningRate: Float) throws {
        try config.validate()
        BLAS.configureDeterministic()
        self.config = config
        self.layout = layout
        self.rank = rank
        self.microbatches = microbatches
        self.microbatchSize = microbatchSize
        var chunks: [Int: ModelChunk] = [:]
        for c in layout.chunks(onRank: rank) {
            let chunk = ModelChunk(config: config, layout: layout.chunkLayout, index: c)
            chunks[c] = chunk
            let p = ParameterSet(initializing: chunk.parameterSpecs, seed: seed, layers: config.layers)
            parameters[c] = p
            gradients[c] = p.zerosLike()
            optimizers[c] = AdamW(parameters: p, learningRate: learningRate)
        }
        self.chunks = chunks
        let needsData = chunks[0] != nil || chunks[layout.chunks - 1] != nil
        data = needsData ? BatchSource.synthetic(seq: config.seq, vocab: config.vocab, seed: seed) : nil
    }

    /// Replaces parameters and optimizer state (a resumed checkpoint).
    public mutating func restore(parameters: [Int: ParameterSet], optimizers: [Int: AdamW]) {
        self.parameters = parameters
        self.optimizers = optimizers
    }

    /// Prepares 1-based optimizer step `t`: its batch on the ranks that read tokens or targets.
    public mutating func begin(globalStep t: Int) {
        globalStep = t
        losses = [:]
        if let data { batch = data.batch(step: t, microbatches: microbatches, microbatchSize: microbatchSize) }
    }

    /// Applies AdamW to every chunk of the rank and returns the step's mean loss on the rank of the last chunk,
    /// summed in microbatch order exactly as the single-process `Transformer` does.
    public mutating func finishStep() -> Float? {
        precondition(tapes.values.allSatisfy(\.isEmpty), "a forward tape without its backward")
        for c in chunks.keys {
            optimizers[c]!.update(&parameters[c]!, gradients: gradients[c]!)
            gradients[c]!.zeroAll()
        }
        guard chunks[layout.chunks - 1] != nil else { return nil }
        let scale = 1 / Float(microbatches)
        var loss: Float = 0
        for m in 0..<microbatches { loss += losses[m]! * scale }
        return loss
    }

    var rows: Int { microbatchSize * config.seq }

    public mutating func forward(chunk c: Int, microbatch m: Int, input: HopActivations?) throws -> HopActivations? {
        // Middle chunks need only the microbatch's size; tokens and targets live on the first and last chunk.
        let mb = batch.isEmpty ? Microbatch(tokens: [], targets: [], sequences: microbatchSize) : batch[m]
        let f = chunks[c]!.forward(input, microbatch: mb, parameters: parameters[c]!)
        tapes[c, default: [:]][m] = f.tape
        if let loss = f.loss {
            guard !loss.isNaN else { throw ComputeFailure.lossIsNaN(step: globalStep, microbatch: m) }
            losses[m] = loss
        }
        return f.output
    }

    public mutating func backward(chunk c: Int, microbatch m: Int, gradOutput: HopActivations?) throws -> HopActivations? {
        let tape = tapes[c]!.removeValue(forKey: m)!
        return chunks[c]!.backward(tape, gradOutput: gradOutput, lossScale: 1 / Float(microbatches),
                                   parameters: parameters[c]!, gradients: &gradients[c]!)
    }

    public func zeroGradient(_ role: TensorRole, microbatch: Int, hop: Int) -> Tensor {
        Tensor(zeros: [rows, config.hidden])
    }

    public func accumulate(_ sum: inout Tensor, _ contribution: Tensor, role: TensorRole, microbatch: Int) throws {
        sum.add(contribution)
    }

    public func byteCount(_ value: Tensor) -> Int { value.count * 4 }
}
