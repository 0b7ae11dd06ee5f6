import ArgumentParser
import Cluster
import Foundation
import Model
import Numerics
import Yams

/// `attnres train`: the single-process reference training run. Parses flags (and, for now, a few keys of a topology
/// file), then delegates to `Model.Trainer`.
struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train the AttnRes transformer in one process (the reference the pipeline must match).",
        discussion: """
        Defaults train in seconds on 2 cores: 8 layers, hidden 64, 4 heads, seq 32, vocab 256, block residual \
        with 4 blocks, 4 microbatches of 2 sequences, 50 steps, seed 1, lr 3e-3. A TOPOLOGY file may set \
        model.{layers,hidden,heads,seq,vocab}, residual.{kind,blocks}, pipeline.{microbatches,microbatch_size}, \
        seed, steps and lr; flags override it.

        `train` takes the same topology flags as `run`, so one command line describes the model for both. The \
        flags that only place it on a pipeline (--ranks, --virtual, --schedule, --cache, --mode, --transport) \
        are accepted and ignored, with a note on standard error: one process trains the whole model.

        Examples:
          attnres train --residual standard --steps 200 --json out/standard.json
          attnres train --steps 10 --export out/check
          attnres train --stats out/block.csv --stats-every 50
        """)

    @OptionGroup var topology: TopologyOptions
    @Option(help: "Run the model as this many chunks (same results bit for bit; for checking).") var chunks: Int = 1
    @Option(name: .customLong("blas-threads"), help: "OpenBLAS threads (default 1: deterministic and fair to other ranks).")
    var blasThreads: Int = 1
    @Option(help: "Train on this text file instead of the synthetic language.") var data: String?
    @Option(help: "Write {\"losses\": [...], \"config\": {...}} to this file.") var json: String?
    @Option(help: "After training, write params/batch/grads safetensors and loss.json into this directory.")
    var export: String?
    @Option(help: "Write per-layer RMS of outputs and gradients to this CSV file.") var stats: String?
    @Option(name: .customLong("stats-every"), help: "Record stats every K steps (and at step 1 and the last step).")
    var statsEvery: Int = 25

    func validate() throws {
        if let seed = topology.seed, seed < 0 { throw ValidationError("--seed must be ≥ 0, got \(seed)") }
        if chunks < 1 { throw ValidationError("--chunks must be ≥ 1") }
        if blasThreads < 1 { throw ValidationError("--blas-threads must be ≥ 1") }
        if statsEvery < 1 { throw ValidationError("--stats-every must be ≥ 1") }
    }

    /// Flags over topology over defaults.
    func resolvedConfig() throws -> TrainConfig {
        var c = TrainConfig()
        if let file = topology.topology { try TopologyKeys.apply(file: file, to: &c) }
        let o = topology.overrides
        if let residual = o.residual { c.model.residual = residual }
        if let blocks = o.blocks { c.model.blocks = blocks }
        if let layers = o.layers { c.model.layers = layers }
        if let hidden = o.hidden { c.model.hidden = hidden }
        if let heads = o.heads { c.model.heads = heads }
        if let seq = o.seq { c.model.seq = seq }
        if let vocab = o.vocab { c.model.vocab = vocab }
        if let microbatches = o.microbatches { c.microbatches = microbatches }
        if let microbatchSize = o.microbatchSize { c.microbatchSize = microbatchSize }
        if let steps = o.steps { c.steps = steps }
        if let seed = o.seed { c.seed = UInt64(seed) }
        if let lr = o.learningRate { c.learningRate = lr }
        try c.validate()
        try Self.topology(of: c, source: topology.topology ?? "<train defaults>")
            .validateModel(overridden: o.apply(to: Topology()).1, corpusBytes: data == nil ? SyntheticCorpus.defaultLength : nil)
        return c
    }

    /// `c` as the topology of one process, for `Topology.validateModel`: the same value, corpus and memory rules
    /// as `run --mode compute`, so an absurd size is an error naming its key before any tensor is allocated.
    static func topology(of c: TrainConfig, source: String) -> Topology {
        var t = Topology()
        t.source = source
        t.mode = .compute
        t.layers = c.model.layers; t.hidden = c.model.hidden; t.heads = c.model.heads; t.seq = c.model.seq
        t.vocab = c.model.vocab; t.residual = c.model.residual; t.blocks = c.model.residual == .block ? c.model.blocks : 1
        t.microbatches = c.microbatches; t.microbatchSize = c.microbatchSize
        t.steps = max(1, c.steps)  // train accepts 0 steps (initialise and export only)
        t.seed = Int(clamping: c.seed); t.learningRate = c.learningRate
        return t
    }

    func run() throws {
        BLASKernel.reexecWithPreferredKernelIfNeeded()
        let config = try resolvedConfig()
        try OutputPath.check([OutputPath("--json", json, .file), OutputPath("--export", export, .directory), OutputPath("--stats", stats, .file)])
        let ignored = topology.pipelineFlagsGiven
        if !ignored.isEmpty {
            printError("train: ignoring \(ignored.joined(separator: ", ")): one process trains the whole model (no pipeline)")
        }
        let source: BatchSource
        if let data {
            let bytes = try InputFile.bytes(data)
            do { source = try BatchSource(corpus: bytes, seq: config.model.seq, vocab: config.model.vocab, seed: config.seed) }
            catch let e as BatchSource.Failure { throw UsageError(description: "--data \(data): \(e)") }
        } else {
            source = .synthetic(seq: config.model.seq, vocab: config.model.vocab, seed: config.seed)
        }
        var trainer = try Trainer(config: config, data: source, chunks: chunks)
        if blasThreads != 1 { BLAS.setThreads(blasThreads) }
        let tty = isatty(fileno(stderr)) != 0
        let m = config.model
        print("# train residual=\(m.residual.rawValue) blocks=\(m.effectiveBlocks) layers=\(m.layers) hidden=\(m.hidden) "
              + "heads=\(m.heads) seq=\(m.seq) vocab=\(m.vocab) microbatches=\(config.microbatches)x\(config.microbatchSize) "
              + "steps=\(config.steps) seed=\(config.seed) lr=\(config.learningRate) blas=\(BLAS.coreName)")
        var losses: [Float] = []
        var table = LayerStatsTable()
        let start = Date()
        for t in 1...max(1, config.steps) where config.steps > 0 {
            let record = stats != nil && (t == 1 || t == config.steps || t % statsEvery == 0)
            let r = trainer.step(recordMagnitudes: record)
            losses.append(r.loss)
            if let mags = r.magnitudes { table.record(residual: m.residual, step: t, mags) }
            if tty { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }  // clear the progress line first
            print("step \(t) loss \(r.loss)")
            if tty {
                fflush(stdout)
                let elapsed = Date().timeIntervalSince(start)
                FileHandle.standardError.write(Data(String(format: "step %d/%d  loss %.4f  %.1f ms/step  ETA %.0f s",
                                                           t, config.steps, r.loss, elapsed / Double(t) * 1000,
                                                           elapsed / Double(t) * Double(config.steps - t)).utf8))
            }
        }
        if tty { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
        if let json { try RunOptionChecks.writing(json, flag: "--json") { try writeJSON(losses: losses, config: config, to: json) } }
        if let stats { try RunOptionChecks.writing(stats, flag: "--stats") { try AtomicFile.write(Array(table.csv.utf8), to: stats) } }
        if let export { try RunOptionChecks.writing(export, flag: "--export") { try Export.write(trainer, to: URL(fileURLWithPath: export)) } }
    }

    func writeJSON(losses: [Float], config: TrainConfig, to path: String) throws {
        let m = config.model
        let object: [String: Any] = [
            "losses": losses.map(Double.init),
            "config": ["layers": m.layers, "hidden": m.hidden, "heads": m.heads, "seq": m.seq, "vocab": m.vocab,
                       "residual": m.residual.rawValue, "blocks": m.effectiveBlocks,
                       "microbatches": config.microbatches, "microbatch_size": config.microbatchSize,
                       "steps": config.steps, "seed": config.seed, "lr": Double(config.learningRate),
                       "data": data ?? "synthetic", "blas_kernel": BLAS.coreName,
                       "blas_threads": blasThreads] as [String: Any],
        ]
        let bytes = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
        try bytes.write(to: URL(fileURLWithPath: path))
    }
}

extension ResidualKind: ExpressibleByArgument {}

/// A topology file for `train`: the shared parser (unknown keys, lines and values checked as for `run`); train
/// takes its model, microbatches, seed, steps and lr, and ignores the pipeline placement.
enum TopologyKeys {
    static func apply(file: String, to c: inout TrainConfig) throws {
        let (t, _) = try Topology.load(path: file)
        c.model = t.modelConfig
        c.microbatches = t.microbatches
        c.microbatchSize = t.microbatchSize
        c.seed = UInt64(t.seed)
        c.steps = t.steps
        c.learningRate = t.learningRate
    }
}
