import Model
import Pipeline

/// Command-line values that override a topology file (the same flags on run, compare, predict, schedule).
public struct Overrides: Sendable {
    public var ranks: Int?, virtualStages: Int?, layers: Int?, blocks: Int?
    public var residual: ResidualKind?, cache: CachePolicy?, schedule: ScheduleKind?
    public var microbatches: Int?, microbatchSize: Int?, seq: Int?, hidden: Int?, heads: Int?
    public var steps: Int?, mode: RunMode?, transport: TransportKind?, seed: Int?, vocab: Int?, learningRate: Float?

    public init() {}

    /// Applies the overrides; returns the topology and which key each flag set (for error messages).
    public func apply(to base: Topology) -> (Topology, [String: String]) {
        var t = base
        var set: [String: String] = [:]
        func take<T>(_ v: T?, _ key: String, _ flag: String, _ assign: (T) -> Void) {
            if let v { assign(v); set[key] = flag }
        }
        take(ranks, "pipeline.ranks", "--ranks") { t.ranks = $0 }
        take(virtualStages, "pipeline.virtual", "--virtual") { t.virtualStages = $0 }
        take(layers, "model.layers", "--layers") { t.layers = $0 }
        take(residual, "residual.kind", "--residual") { t.residual = $0 }
        take(blocks, "residual.blocks", "--blocks") { t.blocks = $0 }
        take(cache, "cache", "--cache") { t.cache = $0 }
        take(schedule, "pipeline.schedule", "--schedule") { t.schedule = $0 }
        take(microbatches, "pipeline.microbatches", "--microbatches") { t.microbatches = $0 }
        take(microbatchSize, "pipeline.microbatch_size", "--microbatch-size") { t.microbatchSize = $0 }
        take(seq, "model.seq", "--seq") { t.seq = $0 }
        take(hidden, "model.hidden", "--hidden") { t.hidden = $0 }
        take(heads, "model.heads", "--heads") { t.heads = $0 }
        take(steps, "steps", "--steps") { t.steps = $0 }
        take(mode, "mode", "--mode") { t.mode = $0 }
        take(transport, "transport", "--transport") { t.transport = $0 }
        take(seed, "seed", "--seed") { t.seed = $0 }
        take(vocab, "model.vocab", "--vocab") { t.vocab = $0 }
        take(learningRate, "lr", "--lr") { t.learningRate = $0 }
        // Changing ranks or virtual stages without naming a schedule picks the natural one.
        if schedule == nil, ranks != nil || virtualStages != nil {
            if t.virtualStages >= 2 { t.schedule = .interleaved1F1B } else if t.schedule == .interleaved1F1B { t.schedule = .oneFOneB }
        }
        if residual == .block, blocks == nil, t.blocks > t.layers { t.blocks = t.layers }
        return (t, set)
    }

    /// Loads `path` (nil = embedded default), applies the overrides and validates the result; `holdsTensors` as in
    /// `Topology.validate` (false for commands that start no process).
    public func resolve(path: String?, holdsTensors: Bool = true) throws -> Topology {
        let (base, _) = try Topology.load(path: path)
        let (t, set) = apply(to: base)
        try t.validate(overridden: set, holdsTensors: holdsTensors)
        return t
    }
}
