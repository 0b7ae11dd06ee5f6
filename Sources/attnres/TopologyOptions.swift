import Model
import ArgumentParser
import Cluster
import Pipeline

extension CachePolicy: ExpressibleByArgument {}
extension ScheduleKind: ExpressibleByArgument {}
extension RunMode: ExpressibleByArgument {}
extension TransportKind: ExpressibleByArgument {}

/// The topology argument and the flags that override it; shared by run, compare, predict, schedule and train.
/// Numbers parse unconditionally, so `--ranks -1` reaches validation as `--ranks=-1` does (a clear range error)
/// instead of reading as a missing value followed by an unknown option.
struct TopologyOptions: ParsableArguments {
    @Argument(help: "Topology YAML file (default: the embedded local-4x2; train: its own defaults, see its help).")
    var topology: String?

    @Option(parsing: .unconditional, help: "Pipeline ranks P (worker processes; train: ignored).") var ranks: Int?
    @Option(parsing: .unconditional, help: "Virtual stages V per rank (train: ignored).") var virtual: Int?
    @Option(parsing: .unconditional, help: "Sublayers L.") var layers: Int?
    @Option(parsing: .unconditional, help: "Blocks N (block residual).") var blocks: Int?
    @Option(help: "standard | full | block") var residual: ResidualKind?
    @Option(help: "none | cross-stage | received-only (train: ignored)") var cache: CachePolicy?
    @Option(help: "gpipe | 1f1b | interleaved-1f1b (train: ignored)") var schedule: ScheduleKind?
    @Option(parsing: .unconditional, help: "Microbatches per step m.") var microbatches: Int?
    @Option(parsing: .unconditional, help: "Sequences per microbatch b.") var microbatchSize: Int?
    @Option(parsing: .unconditional, help: "Sequence length s.") var seq: Int?
    @Option(parsing: .unconditional, help: "Hidden size d.") var hidden: Int?
    @Option(parsing: .unconditional, help: "Attention heads.") var heads: Int?
    @Option(parsing: .unconditional, help: "Training steps.") var steps: Int?
    @Option(help: "shape | compute (train: ignored, always compute)") var mode: RunMode?
    @Option(help: "ipc | tcp (train: ignored)") var transport: TransportKind?
    @Option(parsing: .unconditional, help: "Seed.") var seed: Int?
    @Option(parsing: .unconditional, help: "Vocabulary size (compute mode).") var vocab: Int?
    @Option(parsing: .unconditional, help: "AdamW learning rate (compute mode).") var lr: Float?

    /// The flags that place the model on a pipeline, which a single-process run has no use for, as typed.
    var pipelineFlagsGiven: [String] {
        [("--ranks", ranks != nil), ("--virtual", virtual != nil), ("--cache", cache != nil), ("--schedule", schedule != nil),
         ("--mode", mode != nil), ("--transport", transport != nil)].filter(\.1).map(\.0)
    }

    var overrides: Overrides {
        var o = Overrides()
        o.ranks = ranks; o.virtualStages = virtual; o.layers = layers; o.blocks = blocks
        o.residual = residual; o.cache = cache; o.schedule = schedule; o.microbatches = microbatches
        o.microbatchSize = microbatchSize; o.seq = seq; o.hidden = hidden; o.heads = heads
        o.steps = steps; o.mode = mode; o.transport = transport; o.seed = seed
        o.vocab = vocab; o.learningRate = lr
        return o
    }

    /// The validated topology; `holdsTensors` false for commands that start no process (predict, schedule).
    func resolve(holdsTensors: Bool = true) throws -> Topology { try overrides.resolve(path: topology, holdsTensors: holdsTensors) }
}

/// Errors the CLI reports before any process starts.
struct UsageError: Error, CustomStringConvertible {
    let description: String
}
