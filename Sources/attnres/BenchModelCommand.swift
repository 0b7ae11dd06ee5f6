import ArgumentParser
import Cluster
import Foundation
import Model
import Numerics

/// `attnres bench model`: (a) train step of full and block vs standard, (b) inference forward two-phase vs one-pass
/// vs standard, (c) sgemm GFLOP/s of every OpenBLAS kernel (child processes, results checked), (d) train step and
/// inference vs PyTorch and JAX on CPU. Ratios come from one run; the header records machine and command. Beside every
/// AttnRes ratio stands its floor, the ratio of FLOPs and of bytes moved computed from the model (`ModelCost`).
struct BenchModel: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "model",
        abstract: "Benchmark the model: AttnRes overhead in training and inference, BLAS kernels, PyTorch and JAX.",
        discussion: """
        Benchmarks are not tests: they print medians and ratios measured in the same run, each AttnRes ratio beside \
        its floor (FLOPs and bytes moved, block ÷ standard, from the model). PyTorch and JAX are installed with pip \
        for (d) only when missing (skip them with --no-torch).
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
    @Flag(name: .customLong("no-torch"), help: "Skip the PyTorch and JAX comparison.") var noTorch = false
    @Option(name: .customLong("peer-steps"), help: "Timed train steps per peer run (inference: 5× as many).")
    var peerSteps: Int = 10
    @Flag(name: .customLong("peer-two-threads"),
          help: "Also compare the train step on 2 threads (ours: 2 OpenBLAS threads, bitwise the same results).")
    var peerTwoThreads = false
    @Flag(name: .customLong("no-kernels"), help: "Skip the per-kernel sgemm comparison.") var noKernels = false
    @Option(help: "Also write all results as JSON to this file.") var json: String?
    @Flag(name: .customLong("sgemm-child"), help: .hidden) var sgemmChild = false
    @Option(help: ArgumentHelp("""
        Run only this variant, --repetitions times, and print its checksum instead of timings: for instruction counts \
        under `valgrind --tool=callgrind`, one process per variant (\(ModelBenchmark.ProfileVariant.allCases.map(\.rawValue)
            .joined(separator: ", "))).
        """, valueName: "variant"))
    var profile: ModelBenchmark.ProfileVariant?

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
        if let profile {
            let kind = ResidualKind(rawValue: profile.residual)!
            let checksum = try ModelBenchmark.profile(profile, config: config(kind), repetitions: repetitions)
            print("profile \(profile.rawValue) × \(repetitions) | depth kernel \(DepthKernel.current) | OpenBLAS "
                  + "\(BLAS.coreName) | checksum \(checksum)")
            return
        }
        var report: [String: Any] = [:]
        let header = "# attnres bench model | \(BLASKernel.cpuModel()), \(ProcessInfo.processInfo.activeProcessorCount) cores"
            + " | OpenBLAS kernel in use: \(BLAS.coreName) (1 thread) | depth-attention kernel: \(DepthKernel.current)"
            + " | \(ISO8601DateFormatter().string(from: Date()))\n"
            + "# command: \(CommandLine.arguments.joined(separator: " "))\n"
            + "# model: L=\(layers) d=\(hidden) H=\(heads) s=\(seq) vocab=\(vocab) N=\(blocks) "
            + "batch=\(microbatches)x\(microbatchSize), medians of \(repetitions) | load average before: \(loadAverage())"
        print(header)
        report["machine"] = ["cpu": BLASKernel.cpuModel(), "cores": ProcessInfo.processInfo.activeProcessorCount,
                             "blas_kernel": BLAS.coreName, "depth_kernel": DepthKernel.current.rawValue, "command": CommandLine.arguments.joined(separator: " ")]

        // (a) train step
        var train: [String: Double] = [:]
        let trainTimings = try ModelBenchmark.trainStepTimings(ResidualKind.allCases.map(config), repetitions: repetitions)
        var trainMin: [String: Double] = [:]
        for (kind, t) in zip(ResidualKind.allCases, trainTimings) { train[kind.rawValue] = t.median; trainMin[kind.rawValue] = t.minimum }
        let std = train["standard"]!
        let trainCost = Dictionary(uniqueKeysWithValues: ResidualKind.allCases.map { kind in
            (kind.rawValue, ModelCost(config: config(kind).model).trainStep(microbatches: microbatches,
                                                                            sequences: microbatchSize))
        })
        print("\n(a) train step (forward+backward+AdamW), ms    standard \(f(std))   full \(f(train["full"]!)) "
              + "(\(f(train["full"]! / std, 3))x)   block \(f(train["block"]!)) (\(f(train["block"]! / std, 3))x)   "
              + "[goal block ≤ \(f(trainGoal))x]")
        print("      floor (÷ standard, from the model):   "
              + ["full", "block"].map { "\($0) \(floorCell(trainCost[$0]!, trainCost["standard"]!))" }.joined(separator: "   "))
        print("      minimum of \(repetitions) rounds (less disturbed by other load):   block ÷ standard "
              + "\(f(trainMin["block"]! / trainMin["standard"]!, 3))x   full ÷ standard \(f(trainMin["full"]! / trainMin["standard"]!, 3))x")
        let depthCalls = DepthKernel.available.map { kernel in
            (kernel, DepthAttentionProfile.measure(config(.block).model, microbatches: microbatches,
                                                   sequences: microbatchSize, repetitions: repetitions, kernel: kernel))
        }
        print("      depth attention alone (block: the step's calls replayed on fixed tensors), ms per step, per kernel:")
        for (kernel, t) in depthCalls {
            print("        \(kernel.rawValue.padding(toLength: 9, withPad: " ", startingAt: 0)) key statistics \(f(t.keyStatistics, 3))"
                  + "   forward \(f(t.forward, 3))   backward \(f(t.backward, 3))   total \(f(t.total, 3))"
                  + " (\(f(100 * t.total / std, 1)) % of standard's step)\(kernel == DepthKernel.current ? "   [in use]" : "")")
        }
        report["depth_attention_ms"] = Dictionary(uniqueKeysWithValues: depthCalls.map { (kernel, t) in
            (kernel.rawValue, ["key_statistics": t.keyStatistics, "forward": t.forward, "backward": t.backward])
        })
        report["train_ms"] = train
        report["train_min_ms"] = trainMin
        report["train_floor"] = trainCost.mapValues { ["flops": $0.flops, "bytes": $0.bytes] }

        // (b) inference forward of one microbatch
        var inf: [String: Double] = [:]
        var variants: [(String, TrainConfig, Inference.Mode)] = [("standard", config(.standard), .onePass)]
        for kind in [ResidualKind.block, .full] {
            for mode in Inference.Mode.allCases { variants.append(("\(kind.rawValue)-\(mode.rawValue)", config(kind), mode)) }
        }
        let infTimings = try ModelBenchmark.inferenceTimings(variants.map { ($0.1, $0.2) }, repetitions: repetitions * 5)
        var infMin: [String: Double] = [:]
        for (v, t) in zip(variants, infTimings) { inf[v.0] = t.median; infMin[v.0] = t.minimum }
        let istd = inf["standard"]!
        var infCost: [String: Cost] = [:]
        for (name, c, mode) in variants {
            infCost[name] = ModelCost(config: c.model).inference(sequences: microbatchSize, mode: mode)
        }
        print("(b) inference forward (one microbatch), ms    standard \(f(istd))")
        for key in ["block-twoPhase", "block-onePass", "full-twoPhase", "full-onePass"] {
            print("      \(key.padding(toLength: 15, withPad: " ", startingAt: 0)) \(f(inf[key]!))  (\(f(inf[key]! / istd, 3))x standard)"
                  + "   " + floorCell(infCost[key]!, infCost["standard"]!))
        }
        let twoOverOne = inf["block-twoPhase"]! / inf["block-onePass"]!
        print("      block two-phase ÷ one-pass \(f(twoOverOne, 3))x   [goals block two-phase ≤ \(f(inferenceGoal))x standard, "
              + "two-phase ≤ 1.01x one-pass]")
        print("      minimum of \(repetitions * 5) rounds:   block two-phase ÷ standard "
              + "\(f(infMin["block-twoPhase"]! / infMin["standard"]!, 3))x   two-phase ÷ one-pass "
              + "\(f(infMin["block-twoPhase"]! / infMin["block-onePass"]!, 3))x")
        report["inference_ms"] = inf
        report["inference_min_ms"] = infMin
        report["inference_floor"] = infCost.mapValues { ["flops": $0.flops, "bytes": $0.bytes] }

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
            var ours2: [String: Double] = [:]
            if peerTwoThreads {
                BLAS.setThreads(2)
                let twoThreads = try ModelBenchmark.trainSteps(ResidualKind.allCases.map(config), repetitions: repetitions)
                BLAS.setThreads(1)
                for (kind, ms) in zip(ResidualKind.allCases, twoThreads) { ours2[kind.rawValue] = ms }
                report["train_ms_2_blas_threads"] = ours2
            }
            report["peers"] = peerComparison(ours: train, ours2: ours2, oursInference: inf)
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

    /// The goals of docs/benchmarks-model.md: block ≤ 1.04× standard (train) and two-phase ≤ 1.04× (inference) at
    /// d = 64; ≤ 1.02× for both from d = 256 up, where depth attention is a smaller share of the work.
    var trainGoal: Double { hidden >= 256 ? 1.02 : 1.04 }
    var inferenceGoal: Double { hidden >= 256 ? 1.02 : 1.04 }

    /// "floor: FLOPs 1.019x, bytes 1.203x" of a variant against standard.
    func floorCell(_ c: Cost, _ standard: Cost) -> String {
        "[floor: FLOPs \(f(c.flops / standard.flops, 3))x, bytes \(f(c.bytes / standard.bytes, 3))x]"
    }

    /// A peer framework's script under scripts/ (torch_reference.py, jax_reference.py).
    func script(_ name: String) -> String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("scripts/\(name)").path
    }

    /// Makes `module` importable, installing `package` with pip when it is missing; false when that fails.
    func ensurePython(module: String, package: String) -> Bool {
        if python(["-c", "import \(module)"]).0 == 0 { return true }
        print("(d) installing \(package) with pip for the comparison …")
        _ = python(["-m", "pip", "install", "-q", package])
        return python(["-c", "import \(module)"]).0 == 0
    }

    /// Runs one peer benchmark script and returns its JSON object (nil when it fails).
    func peerRun(_ scriptName: String, residual: ResidualKind, threads: Int) -> [String: Any]? {
        let (status, out) = python([script(scriptName), "bench", "--layers", "\(layers)", "--hidden", "\(hidden)",
                                    "--heads", "\(heads)", "--seq", "\(seq)", "--vocab", "\(vocab)",
                                    "--blocks", "\(blocks)", "--microbatches", "\(microbatches)",
                                    "--microbatch-size", "\(microbatchSize)", "--residual", residual.rawValue,
                                    "--steps", "\(peerSteps)", "--threads", "\(threads)"])
        guard status == 0, let line = out.split(separator: "\n").last,
              let obj = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else { return nil }
        return obj
    }

    /// (d) The same model, batch and optimizer in PyTorch (eager, `scaled_dot_product_attention`) and JAX (jitted),
    /// on the same number of threads as ours: train step at 1 thread (and 2 with `--peer-two-threads`), inference
    /// forward of one microbatch at 1 thread (ours: two-phase for AttnRes). Ratios are ours ÷ theirs; goal ≤ 1.0×.
    func peerComparison(ours: [String: Double], ours2: [String: Double], oursInference: [String: Double]) -> [String: Any] {
        var peers: [(name: String, script: String)] = []
        if ensurePython(module: "torch", package: "torch"), FileManager.default.fileExists(atPath: script("torch_reference.py")) {
            peers.append(("torch", "torch_reference.py"))
        } else {
            print("(d) PyTorch comparison skipped: torch not installable or scripts/torch_reference.py missing")
        }
        if ensurePython(module: "jax", package: "jax"), FileManager.default.fileExists(atPath: script("jax_reference.py")) {
            peers.append(("jax", "jax_reference.py"))
        } else {
            print("(d) JAX comparison skipped: jax not installable or scripts/jax_reference.py missing")
        }
        guard !peers.isEmpty else { return ["skipped": true] }
        var result: [String: Any] = [:]
        var rows: [(String, String)] = []  // (train line, inference line) per residual kind
        for kind in ResidualKind.allCases {
            let inferenceKey = kind == .standard ? "standard" : "\(kind.rawValue)-twoPhase"
            var trainCells = ["ours \(f(ours[kind.rawValue]!))"], trainCells2 = ["ours \(f(ours2[kind.rawValue] ?? 0))"]
            var inferenceCells = ["ours \(f(oursInference[inferenceKey]!))"]
            for peer in peers {
                for threads in peerTwoThreads ? [1, 2] : [1] {
                    guard let obj = peerRun(peer.script, residual: kind, threads: threads),
                          let trainMs = (obj["ms_per_step"] ?? obj["train_ms"]) as? Double,
                          let inferenceMs = obj["inference_ms"] as? Double else {
                        if threads == 1 { trainCells.append("\(peer.name) failed") } else { trainCells2.append("\(peer.name) failed") }
                        continue
                    }
                    result["\(peer.name)-version"] = obj[peer.name]
                    result["\(kind.rawValue)-\(peer.name)-\(threads)threads"] = ["train_ms": trainMs, "inference_ms": inferenceMs]
                    let mine = threads == 1 ? ours[kind.rawValue]! : ours2[kind.rawValue]!
                    let cell = "\(peer.name) \(f(trainMs)) → \(f(mine / trainMs, 3))x"
                    if threads == 1 {
                        trainCells.append(cell)
                        inferenceCells.append("\(peer.name) \(f(inferenceMs)) → \(f(oursInference[inferenceKey]! / inferenceMs, 3))x")
                    } else {
                        trainCells2.append(cell)
                    }
                }
            }
            let name = kind.rawValue.padding(toLength: 9, withPad: " ", startingAt: 0)
            rows.append(("      \(name) " + trainCells.joined(separator: "  ")
                            + (peerTwoThreads ? "   |   " + trainCells2.joined(separator: "  ") : ""),
                         "      \(name) " + inferenceCells.joined(separator: "  ")))
        }
        let versions = peers.map { "\($0.name) \(result["\($0.name)-version"] ?? "?")" }.joined(separator: ", ")
        print("(d) vs \(versions) on CPU, same model and batch, same thread count (ours: OpenBLAS threads; torch: "
              + "set_num_threads; JAX: CPU affinity + XLA flags), ms, ours ÷ theirs [goal ≤ 1.0x]")
        print("    train step (forward+backward+AdamW), 1 thread" + (peerTwoThreads ? "   |   2 threads" : ""))
        for row in rows { print(row.0) }
        print("    inference forward of one microbatch, 1 thread (ours: two-phase for AttnRes)")
        for row in rows { print(row.1) }
        return result
    }
}
extension ModelBenchmark.ProfileVariant: ExpressibleByArgument {}
