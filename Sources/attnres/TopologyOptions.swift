import Model
import ArgumentParser
import Cluster
import Pipeline

extension CachePolicy: ExpressibleByArgument {}
extension ScheduleKind: ExpressibleByArgument {}
extension RunMode: ExpressibleByArgument {}
extension TransportKind: ExpressibleByArgument {}

/// The topology argument and the flags that override it; shared by run, compare, predict and schedule.
struct TopologyOptions: ParsableArguments {
    @Argument(help: "Topology YAML file (default: the embedded local-4x2).")
    var topology: String?

    @Option(help: "Pipeline ranks P (worker processes).") var ranks: Int?
    @Option(help: "Virtual stages V per rank.") var virtual: Int?
    @Option(help: "Sublayers L.") var layers: Int?
    @Option(help: "Blocks N (block residual).") var blocks: Int?
    @Option(help: "standard | full | block") var residual: ResidualKind?
    @Option(help: "none | cross-stage | received-only") var cache: CachePolicy?
    @Option(help: "gpipe | 1f1b | interleaved-1f1b") var schedule: ScheduleKind?
    @Option(help: "Microbatches per step m.") var microbatches: Int?
    @Option(help: "Sequences per microbatch b.") var microbatchSize: Int?
    @Option(help: "Sequence length s.") var seq: Int?
    @Option(help: "Hidden size d.") var hidden: Int?
    @Option(help: "Attention heads.") var heads: Int?
    @Option(help: "Training steps.") var steps: Int?
    @Option(help: "shape | compute") var mode: RunMode?
    @Option(help: "ipc | tcp") var transport: TransportKind?
    @Option(help: "Seed.") var seed: Int?
    @Option(help: "Vocabulary size (compute mode).") var vocab: Int?
    @Option(help: "AdamW learning rate (compute mode).") var lr: Float?

    var overrides: Overrides {
        var o = Overrides()
        o.ranks = ranks; o.virtualStages = virtual; o.layers = layers; o.blocks = blocks
        o.residual = residual; o.cache = cache; o.schedule = schedule; o.microbatches = microbatches
        o.microbatchSize = microbatchSize; o.seq = seq; o.hidden = hidden; o.heads = heads
        o.steps = steps; o.mode = mode; o.transport = transport; o.seed = seed
        o.vocab = vocab; o.learningRate = lr
        return o
    }

    func resolve() throws -> Topology { try overrides.resolve(path: topology) }
}

/// Errors the CLI reports before any process starts.
struct UsageError: Error, CustomStringConvertible {
    let description: String
}
