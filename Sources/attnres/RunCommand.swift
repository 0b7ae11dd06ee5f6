import ArgumentParser
import Cluster
import Foundation
import Numerics
import Pipeline
import Logging


/// Options of commands that launch a local cluster.
struct ClusterOptions: ParsableArguments {
    @Option(name: .customLong("fault"), help: "Inject a fault: kill:RANK@STEP, freeze:RANK@STEP, stall:RANK@STEP (4 s busy), never-join:RANK, kill-after-save:RANK@STEP (SIGKILL once its checkpoint file of that step is written) or slow:RANK×F (every compute action F times as long; also slow:RANKxF) (repeatable).")
    var faults: [String] = []

    @Option(parsing: .unconditional, help: "Seconds to wait for every worker to join (more than 0, at most a day).")
    var joinTimeout: Double = 5

    @Option(parsing: .unconditional, help: "Seconds of silence after which a worker is declared frozen (more than 0, at most a day).")
    var silenceTimeout: Double = 3

    @Option(parsing: .unconditional, help: "Seconds a worker may stay alive without finishing a step before the run stops naming it (0 = no limit, else more than 0, at most a day).")
    var progressTimeout: Double = 600

    @Option(parsing: .unconditional, help: "Seconds to bind every inbox and prove every data link (a firewall that drops a data port fails here, naming the ranks; 0 = no limit, else more than 0, at most a day).")
    var setupTimeout: Double = 120

    @Option(help: "Write the report as JSON to this file.")
    var json: String?

    @Flag(help: "Log the coordinator's phases (joins, links) to standard error.")
    var verbose = false

    /// Resolves the topology (in the BLAS kernel `attnres train` uses, so compute runs agree bit for bit with it:
    /// docs/model.md) and starts a local cluster for it with every data link proven.
    /// `before`: the command's own checks of the resolved topology, run before any process starts.
    func startCluster(_ topology: TopologyOptions, outputs: [OutputPath] = [], resume: String? = nil,
                      before: (Topology) throws -> Void = { _ in }) throws -> (Topology, Coordinator) {
        BLASKernel.reexecWithPreferredKernelIfNeeded()
        let resolved = try topology.resolve()
        try before(resolved)
        let (t, coordinator) = try makeCoordinator(resolved: resolved, spawnLocal: true, logLevel: verbose ? .info : .warning,
                                                   outputs: outputs, resume: resume)
        try coordinator.start()
        return (t, coordinator)
    }

    /// The topology and a coordinator bound for it; `spawnLocal` false waits for workers started elsewhere.
    /// Every option is checked first (see `check`), so a bad one fails before any process starts.
    func makeCoordinator(_ topology: TopologyOptions, spawnLocal: Bool, logLevel: Logger.Level, outputs: [OutputPath] = [],
                         resume: String? = nil) throws -> (Topology, Coordinator) {
        BLASKernel.reexecWithPreferredKernelIfNeeded()
        return try makeCoordinator(resolved: try topology.resolve(), spawnLocal: spawnLocal, logLevel: logLevel, outputs: outputs, resume: resume)
    }

    /// As `makeCoordinator(_:…)` for a topology already resolved (a sweep point, a smoke check).
    func makeCoordinator(resolved t: Topology, spawnLocal: Bool, logLevel: Logger.Level, outputs: [OutputPath] = [],
                         resume: String? = nil) throws -> (Topology, Coordinator) {
        BLASKernel.reexecWithPreferredKernelIfNeeded()
        let faults = try check(t, outputs: outputs, resume: resume)
        var logger = Logger(label: "attnres.coordinator") { StreamLogHandler.standardError(label: $0) }
        logger.logLevel = logLevel
        Coordinator.interruptOnSignals()
        let coordinator = try Coordinator(topology: t, faults: faults, joinTimeout: joinTimeout,
                                          silenceTimeout: silenceTimeout, spawnLocal: spawnLocal, logger: logger)
        coordinator.progressTimeout = progressTimeout > 0 ? progressTimeout : nil
        coordinator.setupTimeout = setupTimeout > 0 ? setupTimeout : nil
        return (t, coordinator)
    }

    /// Checks the timeouts, the faults (against `t`), the output paths (`--json` and the command's own) and the
    /// checkpoint to resume from; returns the parsed faults.
    func check(_ t: Topology, outputs: [OutputPath], resume: String?) throws -> [Fault] {
        try RunOptionChecks.timeout(joinTimeout, flag: "--join-timeout")
        try RunOptionChecks.timeout(silenceTimeout, flag: "--silence-timeout")
        if progressTimeout != 0 { try RunOptionChecks.timeout(progressTimeout, flag: "--progress-timeout") }
        if setupTimeout != 0 { try RunOptionChecks.timeout(setupTimeout, flag: "--setup-timeout") }
        let parsed = try parseFaults(faults)
        for f in parsed { try f.validate(against: t) }
        try OutputPath.check(outputs + [OutputPath("--json", json, .file)])
        if let resume { try Checkpoint.checkResumable(directory: resume, topology: t) }
        return parsed
    }
}

/// An output option of a command: its flag, its value (nil = not given) and whether it names a file or a directory.
struct OutputPath {
    let flag: String, path: String?, kind: RunOptionChecks.OutputKind
    init(_ flag: String, _ path: String?, _ kind: RunOptionChecks.OutputKind) { self.flag = flag; self.path = path; self.kind = kind }

    /// Checks every given path (see `RunOptionChecks.output`).
    static func check(_ outputs: [OutputPath]) throws {
        for o in outputs { if let path = o.path { try RunOptionChecks.output(path, flag: o.flag, kind: o.kind) } }
    }
}

/// Parses `--fault` values (the coordinator's and the worker's alike).
func parseFaults(_ arguments: [String]) throws -> [Fault] {
    try arguments.map { f in
        guard let fault = Fault(argument: f) else {
            throw UsageError(description: "--fault '\(f)': expected kill:RANK@STEP, freeze:RANK@STEP, stall:RANK@STEP, never-join:RANK, kill-after-save:RANK@STEP or slow:RANK×FACTOR")
        }
        return fault
    }
}

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Launch a local cluster (one worker process per rank) and print the per-link traffic table.",
        discussion: """
        The coordinator starts `attnres worker` processes, proves every ZeroMQ data link, runs the schedule for \
        the topology's steps and prints measured payload bytes per link beside the analytical model.

        Examples:
          attnres run                                  # embedded local-4x2
          attnres run topologies/gpipe-4.yaml --json out.json
          attnres run --residual full --cache none --steps 1
        """)

    @OptionGroup var topology: TopologyOptions
    @OptionGroup var cluster: ClusterOptions
    @OptionGroup var checkpoints: CheckpointOptions
    @Option(help: "Write a Chrome trace-event timeline (open it in Perfetto or chrome://tracing).")
    var trace: String?
    @Option(help: "Write an SVG timeline of the last step's compute tracks (bubbles are the gaps).")
    var traceSvg: String?

    func run() throws {
        let progress = Progress()
        progress.update("starting the workers")
        let outputs = checkpoints.outputs + [OutputPath("--trace", trace, .file), OutputPath("--trace-svg", traceSvg, .file)]
        let (t, coordinator) = try cluster.startCluster(topology, outputs: outputs, resume: checkpoints.resume, before: checkpoints.check)
        defer { coordinator.shutdown() }
        var moved = 0
        let perStep = try TrafficPrediction(t.trafficConfig).payloadBytesPerStep
        let result = try checkpoints.run(coordinator, t, trace: trace != nil || traceSvg != nil) { step, loss in
            moved += perStep
            progress.update("step \(step)/\(t.steps)" + (loss.map { String(format: ", loss %.4f", $0) } ?? ""),
                            fraction: Double(step) / Double(t.steps), bytes: moved)
        }
        progress.finish()
        coordinator.shutdown()
        print(Report.describe(t))
        print("workers: " + coordinator.workers.values.sorted { $0.rank < $1.rank }.map { "rank \($0.rank) pid \($0.pid)" }.joined(separator: ", "))
        print("")
        print(Report.linkTable(result))
        print("")
        print(Report.waitTable(result))
        if let line = coordinator.securityLine { print(line) }
        if let records = result.trace {
            if let trace { try RunOptionChecks.writing(trace, flag: "--trace") { try ChromeTrace.write(records, ranks: t.ranks, to: trace, topology: t) } }
            if let traceSvg {
                let svg = ChromeTrace.svg(records, ranks: t.ranks, title: Report.describe(t) + " — step \(t.steps)", step: t.steps - 1)
                try RunOptionChecks.writing(traceSvg, flag: "--trace-svg") { try AtomicFile.write(Array(svg.utf8), to: traceSvg) }
            }
            let m = result.measuredBubble ?? []
            print("\nbubble per rank: measured " + m.map { String(format: "%.1f%%", 100 * $0) }.joined(separator: " ")
                  + "; schedule theory (unit-time F and B) " + result.theoreticalBubble.map { String(format: "%.1f%%", 100 * $0) }.joined(separator: " "))
        }
        if !result.losses.isEmpty {
            print("\nlosses: " + result.losses.enumerated().map { String(format: "%d:%.6f", result.firstStep + $0.offset + 1, $0.element) }.joined(separator: " "))
        }
        if let path = cluster.json {
            var report = ReportJSON(workers: coordinator.workers.values.sorted { $0.rank < $1.rank }, results: [result])
            report.security = coordinator.securityReport
            try RunOptionChecks.writing(path, flag: "--json") { try report.write(to: path) }
        }
        guard result.matchesPrediction else { throw ExitCode(3) }
    }
}


struct Compare: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run every residual variant on real worker processes and compare their traffic.",
        discussion: """
        Variants: standard; full and block, each with cache none, cross-stage and received-only. All run on the \
        same worker processes, one after the other. Prints forward and backward payload per step, peak tensors \
        per hop, peak cached bytes per rank, the ratio to standard and whether measured equals predicted.
        """)

    @OptionGroup var topology: TopologyOptions
    @OptionGroup var cluster: ClusterOptions

    func run() throws {
        let progress = Progress()
        let (t, coordinator) = try cluster.startCluster(topology)
        defer { coordinator.shutdown() }
        var results: [VariantResult] = []
        let variants = comparisonVariants(of: t)
        var moved = 0
        for (i, v) in variants.enumerated() {
            let name = "variant \(i + 1)/\(variants.count) \(v.residual.rawValue)/\(v.cache.rawValue)"
            let perStep = try TrafficPrediction(v.trafficConfig).payloadBytesPerStep
            progress.update(name, fraction: Double(i) / Double(variants.count), bytes: moved)
            results.append(try coordinator.run(v) { step, _ in
                moved += perStep
                progress.update(name + ", step \(step)/\(v.steps)", fraction: (Double(i) + Double(step) / Double(v.steps)) / Double(variants.count),
                                bytes: moved)
            })
        }
        progress.finish()
        try reportComparison(t, coordinator: coordinator, results: results, json: cluster.json)
    }
}

/// Prints the comparison table (and any mismatch), writes the JSON, and fails when measured ≠ predicted.
func reportComparison(_ t: Topology, coordinator: Coordinator, results: [VariantResult], json: String?) throws {
    coordinator.shutdown()
    print(Report.describe(t))
    print("")
    print(results.count == 1 ? Report.linkTable(results[0]) : Report.compareTable(results))
    if let line = coordinator.securityLine { print(line) }
    for r in results where !r.matchesPrediction && results.count > 1 {
        print("\nMISMATCH in \(r.topology.residual.rawValue)/\(r.topology.cache.rawValue):\n  " + r.mismatches.joined(separator: "\n  "))
    }
    if let json {
        var report = ReportJSON(workers: coordinator.workers.values.sorted { $0.rank < $1.rank }, results: results)
        report.security = coordinator.securityReport
        try RunOptionChecks.writing(json, flag: "--json") { try report.write(to: json) }
    }
    guard results.allSatisfy(\.matchesPrediction) else { throw ExitCode(3) }
}

struct WorkerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "worker",
        abstract: "Run one pipeline rank; started by a coordinator (or by hand / srun / mpirun / ssh on another host).",
        discussion: """
        Under a launcher neither flag is needed: the rank comes from SLURM_PROCID, OMPI_COMM_WORLD_RANK, PMI_RANK or \
        torchrun's RANK (set ones must agree), the launcher's world size (SLURM_NTASKS, OMPI_COMM_WORLD_SIZE, \
        PMI_SIZE, WORLD_SIZE) is checked by the coordinator against the topology's ranks, and the endpoint comes \
        from ATTNRES_COORDINATOR. Flags win over the environment (docs/multi-host.md).
          ATTNRES_COORDINATOR=tcp://10.0.0.1:5555 srun -n 4 attnres worker
          mpirun -n 4 -x ATTNRES_COORDINATOR=tcp://10.0.0.1:5555 attnres worker
        """)

    @Option(help: "The coordinator's control endpoint, e.g. tcp://10.0.0.1:5555 (default: $ATTNRES_COORDINATOR).") var join: String?
    @Option(parsing: .unconditional, help: "This worker's rank (default: from the launcher's environment).") var rank: Int?
    @Option(help: "Whose rank and world size to read: auto (every launcher's), slurm, openmpi, pmi or torchrun (that one's only).")
    var launcher: String = "auto"
    @Option(name: .customLong("fault"), help: "Fault to inject (see `attnres run --help`).") var faults: [String] = []
    @Option(help: "Exit as soon as this process (the local coordinator that started the worker) is gone; set by the coordinator.")
    var parentPid: Int32?
    @Option(help: "CURVE key directory (`attnres keys generate`): this rank's rank-R.pub/.secret and coordinator.pub are read from it.")
    var keys: String?
    @Option(parsing: .unconditional, help: "Seconds to wait to be admitted by the coordinator before exiting (more than 0, at most a day).")
    var joinTimeout: Double = 60

    func run() throws {
        let launch = try LaunchEnvironment.resolve(rank: rank, join: join, launcher: launcher == "auto" ? nil : launcher,
                                                   environment: ProcessInfo.processInfo.environment)
        BLASKernel.reexecWithPreferredKernelIfNeeded()
        try RunOptionChecks.timeout(joinTimeout, flag: "--join-timeout")
        let code = Worker.main(join: launch.endpoint, rank: launch.rank, faults: try parseFaults(faults), parent: parentPid,
                               worldSize: launch.worldSize, keysDirectory: keys, joinTimeout: joinTimeout)
        if code != 0 { throw ExitCode(code) }
    }
}

struct CoordinatorCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "coordinator",
        abstract: "Multi-host: bind the topology's coordinator endpoint and wait for workers started elsewhere.",
        discussion: """
        Start workers by hand, with srun, mpirun or ssh, on any host that reaches the endpoint:
          attnres coordinator my-cluster.yaml            # topology with coordinator: tcp://10.0.0.1:5555
          attnres worker --join tcp://10.0.0.1:5555 --rank 0   # … one per rank
          ATTNRES_COORDINATOR=tcp://10.0.0.1:5555 srun -n 4 attnres worker      # or mpirun -n 4 -x ATTNRES_COORDINATOR=…
        Use transport tcp with per-rank host addresses (docs/multi-host.md). Workers exit on their own when the coordinator goes silent.
        With `security: {curve: DIR}` in the topology, give each worker its keys: attnres worker … --keys DIR
        (docs/multi-host.md, "Authentication (CURVE)").
        """)

    @OptionGroup var topology: TopologyOptions
    @OptionGroup var cluster: ClusterOptions
    @Flag(help: "Run every residual variant (as `compare`) instead of the topology's own.") var compare = false
    @OptionGroup var checkpoints: CheckpointOptions

    func run() throws {
        if compare && checkpoints.given {
            throw UsageError(description: "--save, --checkpoint-every and --resume are for one compute run, not --compare")
        }
        BLASKernel.reexecWithPreferredKernelIfNeeded()
        let resolved = try topology.resolve()
        try checkpoints.check(resolved)
        let (t, coordinator) = try cluster.makeCoordinator(resolved: resolved, spawnLocal: false, logLevel: .info,
                                                           outputs: checkpoints.outputs, resume: checkpoints.resume)
        defer { coordinator.shutdown() }
        print("waiting for \(t.ranks) workers: attnres worker --join \(coordinator.endpoint) --rank R")
        // Scripts (scripts/attnres.sbatch, the launcher tests) read the bound endpoint from this line while the
        // coordinator waits: it must leave the stdio buffer now, not at exit.
        fflush(stdout)
        try coordinator.start()
        var steps = StepLog()
        let results = try compare
            ? comparisonVariants(of: t).map { v in try coordinator.run(v) { s, _ in steps.log(step: s, of: v) } }
            : [try checkpoints.run(coordinator, t) { s, _ in steps.log(step: s, of: t) }]
        try reportComparison(t, coordinator: coordinator, results: results, json: cluster.json)
    }
}

struct Merge: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Merge a run's per-rank checkpoint into one safetensors file of the whole model.",
        discussion: "attnres run --mode compute --steps 10 --save ckpt && attnres merge ckpt model.safetensors")

    @Argument(help: "Checkpoint directory written by --save.") var directory: String
    @Argument(help: "Output safetensors file.") var output: String

    func run() throws {
        try OutputPath.check([OutputPath("output", output, .file)])
        let n = try Checkpoint.merge(directory: directory, output: output)
        print("wrote \(n) tensors to \(output)")
    }
}
