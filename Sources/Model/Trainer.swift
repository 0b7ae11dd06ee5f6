import Numerics

/// What one optimizer step produced.
public struct StepReport: Sendable {
    /// 1-based step number.
    public var step: Int
    /// Mean loss of the step's batch, before the update.
    public var loss: Float
    /// Per-layer magnitudes averaged over microbatches (only when requested).
    public var magnitudes: [LayerMagnitude]?
}

/// Single-process training: batch of step t → loss and gradients (chunk composition) → AdamW update.
public struct Trainer: Sendable {
    public let config: TrainConfig
    public let model: Transformer
    public let data: BatchSource
    public private(set) var parameters: ParameterSet
    public private(set) var optimizer: AdamW
    /// Steps completed so far.
    public private(set) var completedSteps = 0

    /// Builds the model, its initial parameters and the optimizer; `chunks` > 1 runs the same model chunk by chunk.
    public init(config: TrainConfig, data: BatchSource, chunks: Int = 1) throws {
        try config.validate()
        BLAS.configureDeterministic()
        AllocatorTuning.apply()
        self.config = config
        self.model = try Transformer(config: config.model, chunks: chunks)
        self.data = data
        self.parameters = model.initialParameters(seed: config.seed)
        self.optimizer = AdamW(parameters: parameters, learningRate: config.learningRate)
    }

    /// The batch of 1-based step t.
    public func batch(step t: Int) -> [Microbatch] {
        data.batch(step: t, microbatches: config.microbatches, microbatchSize: config.microbatchSize)
    }

    /// Loss and gradients of step t's batch at the current parameters, without updating anything.
    public func lossAndGradients(step t: Int) -> (Float, ParameterSet) {
        var g = parameters.zerosLike()
        let loss = model.lossAndGradients(batch(step: t), parameters: parameters, gradients: &g)
        return (loss, g)
    }

    /// Runs the next step (completedSteps + 1) and applies the update.
    public mutating func step(recordMagnitudes: Bool = false) -> StepReport {
        let t = completedSteps + 1
        var g = parameters.zerosLike()
        var mags: [LayerMagnitude]? = recordMagnitudes ? [] : nil
        let loss = model.lossAndGradients(batch(step: t), parameters: parameters, gradients: &g, magnitudes: &mags)
        optimizer.update(&parameters, gradients: g)
        completedSteps = t
        return StepReport(step: t, loss: loss, magnitudes: mags)
    }
}
