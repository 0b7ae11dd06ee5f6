import ArgumentParser
import Cluster
import Foundation
import Model
import Numerics
import Pipeline
import Wire

/// `attnres bench`: benchmarks, separate from tests; each prints ratios against a baseline measured in the same run.
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Benchmarks (ratios against baselines measured in the same run).",
        subcommands: [BenchWire.self, BenchModel.self, BenchPipeline.self, BenchSimulate.self])
}

struct BenchWire: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "wire",
        abstract: "The worker data path (encode, send, receive, decode) vs a raw libzmq PUSH/PULL loop, over ipc and tcp.",
        discussion: "Goal: ≥ 0.95 of raw libzmq at 1 MiB and above. Median of alternating trials; build with -c release.")

    @Option(help: "Tensor sizes in bytes.") var sizes: [Int] = [64 << 10, 1 << 20, 8 << 20]
    @Option(help: "Trials per size and side.") var trials = 15
    @Option(help: "Bytes moved per trial.") var bytesPerTrial = 1 << 30
    @Option(help: "ipc and/or tcp.") var transport: [TransportKind] = [.ipc, .tcp]
    @Flag(help: "Also run the data path over CURVE (encrypted, ZAP-authenticated) links: its throughput as a ratio to plain.") var curve = false

    func validate() throws {
        try WireBenchmark.check(transports: transport, sizes: sizes, trials: trials, bytesPerTrial: bytesPerTrial)
    }

    func run() throws {
        let progress = Progress()
        let rows = try WireBenchmark.run(transports: transport, sizes: sizes, trials: trials, bytesPerTrial: bytesPerTrial, curve: curve) { progress.update($0) }
        progress.finish()
        print("attnres bench wire — libzmq \(ZContext.version), \(ProcessInfo.processInfo.activeProcessorCount) cores, \(trials) trials of \(Report.human(bytesPerTrial)) per cell, median")
        print("command: \(CommandLine.arguments.joined(separator: " "))")
        print("")
        print("transport  tensor     raw libzmq GB/s (min-max)  attnres data path GB/s (min-max)  ratio (median of paired trials)"
              + (curve ? "  CURVE data path GB/s (min-max)  CURVE ÷ plain" : ""))
        for r in rows {
            var extra = ""
            if let c = r.curveGBps, let spread = r.curveSpread, let ratio = r.curveRatio {
                extra = "  " + String(format: "%5.2f (%.2f-%.2f)", c, spread.lowerBound, spread.upperBound).padding(toLength: 30, withPad: " ", startingAt: 0)
                    + "  " + String(format: "%5.3f", ratio)
            }
            let size = Report.human(r.bytes).padding(toLength: 10, withPad: " ", startingAt: 0)
            let raw = String(format: "%5.2f (%.2f-%.2f)", r.rawGBps, r.rawSpread.lowerBound, r.rawSpread.upperBound)
            let ours = String(format: "%5.2f (%.2f-%.2f)", r.oursGBps, r.oursSpread.lowerBound, r.oursSpread.upperBound)
            print("\(r.transport.rawValue.padding(toLength: 9, withPad: " ", startingAt: 0))  \(size) \(raw.padding(toLength: 25, withPad: " ", startingAt: 0))  \(ours.padding(toLength: 32, withPad: " ", startingAt: 0))  \(String(format: "%5.3f", r.ratio))" + (extra.isEmpty ? "" : "                         " + extra))
        }
        let big = rows.filter { $0.bytes >= 1 << 20 }
        if let worst = big.map(\.ratio).min() {
            print(String(format: "\nworst ratio at ≥ 1 MiB: %.3f (goal ≥ 0.95): %@", worst, worst >= 0.95 ? "met" : "NOT met"))
        }
    }
}

struct BenchPipeline: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pipeline",
        abstract: "Compute-mode step time on worker processes vs the single-process train step, same model, same run.",
        discussion: "Default: 2 ranks, 1F1B, the train defaults (L=8, d=64, 4 × 2 sequences of 32). Build with -c release.")

    @OptionGroup var topology: TopologyOptions
    @Option(help: "Timed steps per side (after one warm-up step).") var timedSteps = 30

    /// The most timed steps: a benchmark of more runs for days, and the count plus the warm-up must fit an Int.
    static let mostTimedSteps = 1_000_000

    func validate() throws {
        guard timedSteps >= 1, timedSteps <= Self.mostTimedSteps else {
            throw RunOptionError(flag: "--timed-steps", value: "\(timedSteps)", problem: "must be in 1…\(Self.mostTimedSteps)")
        }
    }

    func run() throws {
        BLASKernel.reexecWithPreferredKernelIfNeeded()
        var o = topology.overrides
        o.mode = .compute
        o.ranks = o.ranks ?? 2; o.virtualStages = o.virtualStages ?? 1
        o.schedule = o.schedule ?? (o.virtualStages! > 1 ? .interleaved1F1B : .oneFOneB)
        o.layers = o.layers ?? 8; o.blocks = o.blocks ?? 4; o.microbatches = o.microbatches ?? 4; o.steps = timedSteps
        let t = try o.resolve(path: topology.topology)
        let config = TrainConfig(model: t.modelConfig, microbatches: t.microbatches, microbatchSize: t.microbatchSize,
                                 steps: timedSteps + 1, seed: UInt64(t.seed), learningRate: t.learningRate)
        var trainer = try Trainer(config: config, data: BatchSource.synthetic(seq: t.seq, vocab: t.vocab, seed: UInt64(t.seed)))
        _ = trainer.step()
        let start = Date()
        for _ in 0..<timedSteps { _ = trainer.step() }
        let single = Date().timeIntervalSince(start) / Double(timedSteps)
        Coordinator.interruptOnSignals()
        let coordinator = try Coordinator(topology: t)
        defer { coordinator.shutdown() }
        try coordinator.start()
        var warm = t; warm.steps = 1
        _ = try coordinator.run(warm)
        let result = try coordinator.run(t)
        coordinator.shutdown()
        let pipelined = result.seconds / Double(timedSteps)
        print("attnres bench pipeline — \(Report.describe(t)); BLAS kernel \(ProcessInfo.processInfo.environment[BLASKernel.variable] ?? "auto")")
        print("command: \(CommandLine.arguments.joined(separator: " "))")
        print(String(format: "single-process train step: %.2f ms; %d-rank pipeline step: %.2f ms; ratio %.2f×", single * 1000, t.ranks, pipelined * 1000, pipelined / single))
        print("(one process uses one core; the pipeline overlaps \(t.ranks) ranks on \(ProcessInfo.processInfo.activeProcessorCount) cores but pays messages and bubbles)")
    }
}
