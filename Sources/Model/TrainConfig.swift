/// Everything that determines a training run besides the data: the model, the batch shape, the schedule of steps
/// and the optimizer. The cluster fills it from its topology file; `attnres train` from flags.
///
/// Defaults (chosen to train in seconds on 2 cores): 8 layers, hidden 64, 4 heads, seq 32, vocab 256, block
/// residual with 4 blocks, 4 microbatches of 2 sequences, 50 steps, seed 1, learning rate 3e-3.
public struct TrainConfig: Equatable, Codable, Sendable {
    public var model: ModelConfig
    /// Microbatches m per optimizer step.
    public var microbatches: Int
    /// Sequences b per microbatch.
    public var microbatchSize: Int
    /// Optimizer steps.
    public var steps: Int
    /// The one seed behind init and batch sampling.
    public var seed: UInt64
    /// AdamW learning rate (constant).
    public var learningRate: Float

    public init(model: ModelConfig = ModelConfig(), microbatches: Int = 4, microbatchSize: Int = 2, steps: Int = 50,
                seed: UInt64 = 1, learningRate: Float = 3e-3) {
        self.model = model; self.microbatches = microbatches; self.microbatchSize = microbatchSize
        self.steps = steps; self.seed = seed; self.learningRate = learningRate
    }

    /// Checks the model and the batch shape.
    public func validate() throws {
        try model.validate()
        for (name, v) in [("microbatches", microbatches), ("microbatch_size", microbatchSize)] where v < 1 {
            throw ModelConfigError.notPositive(field: name, value: v)
        }
        if steps < 0 { throw ModelConfigError.notPositive(field: "steps", value: steps) }
    }
}
