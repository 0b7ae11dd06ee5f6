import ArgumentParser
import Cluster
import Foundation
import Model
import Numerics

/// `attnres bench model`: (a) train step of full and block vs standard, (b) inference forward two-phase vs one-pass
/// vs standard, (c) sgemm GFLOP/s of every OpenBLAS kernel (child processes, results checked), (d) train step vs
/// PyTorch on CPU. Ratios come from one run; the header records machine and command.
struct BenchModel: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "model",
        abstract: "Benchmark the model: AttnRes overhead in training and inference, BLAS kernels, PyTorch.",
        discussion: """
        Benchmarks are not tests: they print medians and ratios measured in the same run. PyTorch is installed \
        with pip for (d) only when missing (skip it with --no-torch).
        """)

    @Option(help: "Number of sublayers L.") var layers: Int = 8
    @Option(help: "Model width d.") var hidden: Int = 64
    @Option(help: "Attention heads.") var heads: Int = 4
    @Option(help: "Sequence length.") var seq: Int = 32
    @Option(help: "Vocabulary size.") var vocab: Int = 256
    @Option(help: "Blocks N for the block residual.") var blocks: Int = 4
    @Option(help: "Microbatches per step.") var microbatches: Int = 4
    @Option(name: .customLong("microbatch-size"), help: "Sequences per microbatch.") var microbatchSize: Int = 2
    @Option(help: "Timed repetitions per measurement.") var repetitions: Int = 30
    @Flag(name: .customLong("no-torch"), help: "Skip the PyTorch comparison.") var noTorch = false
    @Flag(name: .customLong("no-kernels"), help: "Skip the per-kernel sgemm comparison.") var noKernels = false
    @Option(help: "Also write all results as JSON to this file.") var json: String?
    @Flag(name: .customLong("sgemm-child"), help: .hidden) var sgemmChild = false

    static let kernels = ["Prescott", "Nehalem", "Sandybridge", "Haswell", "Zen", "SkylakeX", "Cooperlake"]
    static let sgemmShapes = [(64, 64, 256), (64, 256, 64), (512, 512, 512)]

    /// The most timed repetitions: a median of more adds nothing but hours.
    static let mostRepetitions = 100_000

    /// Every size is checked as `train` checks its own (`Topology.validateModel`, naming the flag), against a
    /// third of the memory because (a) and (d) hold a trainer of each of the three residual kinds at once.
    func validate() throws {
        guard repetitions >= 1, repetitions <= Self.mostRepetitions else {
            throw RunOptionError(flag: "--repetitions", value: "\(repetitions)", problem: "must be in 1…\(Self.mostRepetitions)")
        }
        if sgemmChild { return }
        for kind in ResidualKind.allCases {
            let c = config(kind)
            var t = Train.topology(of: c, source: "bench model")
            t.steps = 1
            let flags = ["model.layers": "--layers", "model.hidden": "--hidden", "model.heads": "--heads", "model.seq": "--seq",
                         "model.vocab": "--vocab", "residual.blocks": "--blocks", "pipeline.microbatches": "--microbatches",
                         "pipeline.microbatch_size": "--microbatch-size"]
            try t.validateModel(overridden: flags, memoryBytes: TopologyFootprint.physicalMemory / ResidualKind.allCases.count)
        }
        if let json { try OutputPath.check([OutputPath("--json", json, .file)]) }
    }

    func config(_ kind: ResidualKind) -> TrainConfig {
        TrainConfig(model: ModelConfig(layers: layers, hidden: hidden, heads: heads, seq: seq, vocab: vocab,
                                       residual: kind, blocks: blocks),
                    microbatches: microbatches, microbatchSize: microbatchSize, steps: 1_000_000, seed: 1)
    }

    func run() throws {
        if sgemmChild {  // runs under the OPENBLAS_CORETYPE the parent chose; prints one JSON line per shape
            for (m, k, n) in Self.sgemmShapes {
                let r = SgemmBenchmark.measure(m: m, k: k, n: n)
                print(String(decoding: try JSONEncoder().encode(r), as: UTF8.self))
            }
            return
        }
        BLASKernel.reexecWithPreferredKernelIfNeeded()
        var report: [String: Any] = [:]
        let header = "# attnres bench model | \(BLASKernel.cpuModel()), \(ProcessInfo.processInfo.activeProcessorCount) cores"
            + " | OpenBLAS kernel in use: \(BLAS.coreName) (1 thread) | \(ISO8601DateFormatter().string(from: Date()))\n"
            + "# command: \(CommandLine.arguments.joined(separator: " "))\n"
            + "# model: L=\(layers) d=\(hidden) H=\(heads) s=\(seq) vocab=\(vocab) N=\(blocks) "
            + "batch=\(microbatches)x\(microbatchSize), medians of \(repetitions) | load average before: \(loadAverage())"
        print(header)
        report["machine"] = ["cpu": BLASKernel.cpuModel(), "cores": ProcessInfo.processInfo.activeProcessorCount,
                             "blas_kernel": BLAS.coreName, "command": CommandLine.arguments.joined(separator: " ")]

        // (a) train step
        var train: [String: Double] = [:]
        let trainTimes = try ModelBenchmark.trainSteps(ResidualKind.allCases.map(config), repetitions: repetitions)
        for (kind, ms) in zip(ResidualKind.allCases, trainTimes) { train[kind.rawValue] = ms }
        let std = train["standard"]!
        print("\n(a) train step (forward+backward+AdamW), ms    standard \(f(std))   full \(f(train["full"]!)) "
              + "(\(f(train["full"]! / std, 3))x)   block \(f(train["block"]!)) (\(f(train["block"]! / std, 3))x)   "
              + "[goal block ≤ 1.04x]")
        report["train_ms"] = train

        // (b) inference forward of one microbatch
        var inf: [String: Double] = [:]
        var variants: [(String, TrainConfig, Inference.Mode)] = [("standard", config(.standard), .onePass)]
        for kind in [ResidualKind.block, .full] {
            for mode in Inference.Mode.allCases { variants.append(("\(kind.rawValue)-\(mode.rawValue)", config(kind), mode)) }
        }
        let infTimes = try ModelBenchmark.inference(variants.map { ($0.1, $0.2) }, repetitions: repetitions * 5)
        for (v, ms) in zip(variants, infTimes) { inf[v.0] = ms }
        let istd = inf["standard"]!
        print("(b) inference forward, ms    standard \(f(istd))")
        for key in ["block-twoPhase", "block-onePass", "full-twoPhase", "full-onePass"] {
            print("      \(key.padding(toLength: 15, withPad: " ", startingAt: 0)) \(f(inf[key]!))  (\(f(inf[key]! / istd, 3))x standard)")
        }
        print("      [goal block two-phase ≤ 1.02x standard]")
        report["inference_ms"] = inf

        // (c) sgemm per kernel
        if !noKernels {
            print("(c) sgemm GFLOP/s, single thread, per OpenBLAS kernel (child processes, 3 interleaved rounds, median;"
                  + " max error vs naive checked)")
            let requested = ["(autodetect)"] + Self.kernels
            var runs = [[SgemmBenchmark.Result]](repeating: [], count: requested.count)
            for _ in 0..<3 {
                for (i, kernel) in requested.enumerated() {
                    runs[i] += try sgemmChild(kernel: kernel == "(autodetect)" ? nil : kernel)
                }
            }
            var rows: [[String: Any]] = []
            for (i, kernel) in requested.enumerated() {
                let byShape = Dictionary(grouping: runs[i]) { "\($0.m)x\($0.k)x\($0.n)" }
                let medians = Self.sgemmShapes.map { (m, k, n) -> (String, Double) in
                    let key = "\(m)x\(k)x\(n)"
                    let g = (byShape[key] ?? []).map(\.gflops).sorted()
                    return (key, g.isEmpty ? 0 : g[g.count / 2])
                }
                let cells = medians.map { "\($0.0): \(f($0.1, 1))" }.joined(separator: "  ")
                let ok = !runs[i].isEmpty && runs[i].allSatisfy { $0.relativeError < 1e-5 }
                let loaded = runs[i].first?.kernel ?? "?"
                print("      \(kernel.padding(toLength: 13, withPad: " ", startingAt: 0)) → \(loaded.padding(toLength: 11, withPad: " ", startingAt: 0)) \(cells)  \(ok ? "results ok" : "WRONG RESULTS")")
                rows.append(["requested": kernel, "loaded": loaded, "ok": ok,
                             "gflops": Dictionary(uniqueKeysWithValues: medians.map { ($0.0, $0.1) })])
            }
            report["sgemm"] = rows
        }

        // (d) PyTorch, against our step on one BLAS thread (the default) and on two (bitwise the same results)
        if !noTorch {
            BLAS.setThreads(2)
            let twoThreads = try ModelBenchmark.trainSteps(ResidualKind.allCases.map(config), repetitions: repetitions)
            BLAS.setThreads(1)
            var ours2: [String: Double] = [:]
            for (kind, ms) in zip(ResidualKind.allCases, twoThreads) { ours2[kind.rawValue] = ms }
            report["train_ms_2_blas_threads"] = ours2
            report["torch"] = try torchComparison(ours: train, ours2: ours2)
        }
        if let json {
            let data = try JSONSerialization.data(withJSONObject: report, options: [.prettyPrinted, .sortedKeys])
            try RunOptionChecks.writing(json, flag: "--json") { try data.write(to: URL(fileURLWithPath: json)) }
        }
    }

    func loadAverage() -> String {
        guard let text = try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8) else { return "n/a" }
        return text.split(separator: " ").prefix(3).joined(separator: " ")
    }

    func f(_ x: Double, _ digits: Int = 2) -> String { String(format: "%.\(digits)f", x) }

    func sgemmChild(kernel: String?) throws -> [SgemmBenchmark.Result] {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        p.arguments = ["bench", "model", "--sgemm-child"]
        var env = ProcessInfo.processInfo.environment
        env[BLASKernel.variable] = kernel
        p.environment = env
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return String(decoding: data, as: UTF8.self).split(separator: "\n").compactMap {
            try? JSONDecoder().decode(SgemmBenchmark.Result.self, from: Data($0.utf8))
        }
    }

    func python(_ args: [String]) -> (Int32, String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3"] + args
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        guard (try? p.run()) != nil else { return (-1, "") }
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    func torchComparison(ours: [String: Double], ours2: [String: Double]) throws -> [String: Any] {
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("scripts/torch_reference.py").path
        if python(["-c", "import torch"]).0 != 0 {
            print("(d) installing torch with pip for the comparison …")
            _ = python(["-m", "pip", "install", "-q", "torch"])
        }
        guard python(["-c", "import torch"]).0 == 0, FileManager.default.fileExists(atPath: script) else {
            print("(d) PyTorch comparison skipped: torch not installable or \(script) missing")
            return ["skipped": true]
        }
        var result: [String: Any] = [:]
        print("(d) train step vs PyTorch CPU (same model, AdamW, scaled_dot_product_attention), ms, same thread count"
                  + " (ours: OpenBLAS threads) [goal ≤ 1.0x]")
        for kind in ResidualKind.allCases {
            var cells: [String] = []
            for threads in [1, 2] {
                let (status, out) = python([script, "bench", "--layers", "\(layers)", "--hidden", "\(hidden)",
                                            "--heads", "\(heads)", "--seq", "\(seq)", "--vocab", "\(vocab)",
                                            "--blocks", "\(blocks)", "--microbatches", "\(microbatches)",
                                            "--microbatch-size", "\(microbatchSize)", "--residual", kind.rawValue,
                                            "--steps", "\(repetitions)", "--threads", "\(threads)"])
                guard status == 0, let obj = try? JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any],
                      let ms = obj["ms_per_step"] as? Double else { cells.append("torch(\(threads)t) failed"); continue }
                result["\(kind.rawValue)-\(threads)threads"] = ms
                result["version"] = obj["torch"]
                let mine = threads == 1 ? ours[kind.rawValue]! : ours2[kind.rawValue]!
                cells.append("torch \(threads)t \(f(ms)) vs ours \(threads)t \(f(mine)) → \(f(mine / ms, 3))x")
            }
            print("      \(kind.rawValue.padding(toLength: 9, withPad: " ", startingAt: 0)) " + cells.joined(separator: "   "))
        }
        return result
    }
}
