import ArgumentParser
import Cluster
import Foundation
import Logging
import Numerics
import Pipeline

struct SweepCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sweep",
        abstract: "Sweep one or two axes over every variant: predicted (and measured) bytes per step and cache peaks, as table, CSV, JSON and SVG.",
        discussion: """
        An axis is a flag given several values: a list (8,16,32), a range (2..6, 2..10:+2) or a geometric range \
        (8..128:x2). Axes: --layers --blocks --ranks --virtual --microbatches --hidden; a flag with one value is a \
        fixed setting. The first axis is the plots' x axis; a second splits the series. Every point runs every \
        variant (standard; full and block × none, cross-stage, received-only) in shape mode.

        Every point is predicted. --measure also runs every point on real worker processes (one cluster per rank \
        count, reused across its points) and checks measured == predicted; --measure-up-to BYTES runs only the \
        points whose predicted payload per step is at most BYTES. Exit status 3 when a measured point differs.

        Examples:
          attnres sweep --layers 8..128:x2 --blocks 8 --svg sweep.svg --csv sweep.csv
          attnres sweep --layers 8,16,32 --blocks 2,4,8 --measure --json sweep.json
          attnres sweep topologies/paper-scale.yaml --layers 18,36,54 --blocks 9
        """)

    @Argument(help: "Topology YAML file (default: the embedded local-4x2).") var topology: String?
    @Option(help: "Sublayers L: one value, a list or a range.") var layers: String?
    @Option(help: "Blocks N (block residual): one value, a list or a range.") var blocks: String?
    @Option(help: "Pipeline ranks P: one value, a list or a range.") var ranks: String?
    @Option(help: "Virtual stages V per rank: one value, a list or a range.") var virtual: String?
    @Option(help: "Microbatches per step m: one value, a list or a range.") var microbatches: String?
    @Option(help: "Hidden size d: one value, a list or a range.") var hidden: String?
    @Option(help: "gpipe | 1f1b | interleaved-1f1b | interleaved-1f1b-torch (default: as the topology, or natural for V)") var schedule: ScheduleKind?
    @Option(parsing: .unconditional, help: "Megatron's microbatch group N for interleaved-1f1b.") var microbatchGroup: Int?
    @Option(parsing: .unconditional, help: "Sequences per microbatch b.") var microbatchSize: Int?
    @Option(parsing: .unconditional, help: "Sequence length s.") var seq: Int?
    @Option(parsing: .unconditional, help: "Attention heads.") var heads: Int?
    @Option(parsing: .unconditional, help: "Steps each measured point runs.") var steps: Int?
    @Option(help: "ipc | tcp") var transport: TransportKind?
    @Flag(help: "Run every point on real worker processes and check measured == predicted.") var measure = false
    @Option(parsing: .unconditional, help: "Run only the points whose predicted payload per step is at most this many bytes.")
    var measureUpTo: Int?
    @Option(help: "Write the points as CSV to this file.") var csv: String?
    @Option(help: "Write log-log plots (bytes per step, peak cache per rank vs the first axis) as SVG to this file.") var svg: String?
    @OptionGroup var cluster: ClusterOptions

    func run() throws {
        BLASKernel.reexecWithPreferredKernelIfNeeded()
        var (base, _) = try Topology.load(path: topology)
        base.mode = .shape
        var fixed = Overrides()
        fixed.schedule = schedule; fixed.microbatchGroup = microbatchGroup; fixed.microbatchSize = microbatchSize
        fixed.seq = seq; fixed.heads = heads; fixed.steps = steps; fixed.transport = transport
        var axes: [(axis: SweepAxis, values: [Int])] = []
        for (axis, text) in [(SweepAxis.layers, layers), (.blocks, blocks), (.ranks, ranks), (.virtual, virtual),
                             (.microbatches, microbatches), (.hidden, hidden)] {
            guard let text else { continue }
            let values = try SweepValues.parse(text, flag: axis.flag)
            if values.count == 1 { axis.apply(values[0], to: &fixed) } else { axes.append((axis, values)) }
        }
        if let measureUpTo, measureUpTo < 0 { throw UsageError(description: "--measure-up-to \(measureUpTo): must be ≥ 0 bytes") }
        let limit: Int? = measure ? Int.max : measureUpTo
        var sweep = try Sweep(base: base, fixed: fixed, axes: axes) { _, bytes in limit.map { bytes <= $0 } ?? false }
        try OutputPath.check([OutputPath("--csv", csv, .file), OutputPath("--svg", svg, .file), OutputPath("--json", cluster.json, .file)])
        if let limit { try measurePoints(&sweep, limit: limit) }

        let first = sweep.points[0].topology
        print("attnres sweep over \(sweep.axes.map(\.axis.rawValue).joined(separator: " × ")): \(first.name), "
              + "\(sweep.axes.contains { $0.axis == .ranks } ? "P swept" : "P=\(first.ranks)"), "
              + "\(sweep.axes.contains { $0.axis == .virtual } ? "V swept" : "V=\(first.virtualStages)"), "
              + "m=\(first.microbatches) × b=\(first.microbatchSize), s=\(first.seq), d=\(first.hidden), \(sweep.points.count) points")
        print("")
        print(sweep.table())
        let panels = sweep.panels()
        print("\nfitted slopes of log y vs log \(sweep.axes[0].axis.rawValue):")
        for panel in panels {
            print("  \(panel.id): " + panel.series.map { "\($0.name) \($0.formattedSlope)" }.joined(separator: ", "))
        }
        if let csv { try AtomicFile.write(Array(sweep.csv().utf8), to: csv) }
        if let json = cluster.json { try sweep.json().write(to: URL(fileURLWithPath: json)) }
        if let svg {
            let picture = sweep.svg(title: "attnres sweep: \(first.name), \(first.ranks) ranks × \(first.virtualStages) virtual, m=\(first.microbatches), "
                                    + "b=\(first.microbatchSize), s=\(first.seq), d=\(first.hidden)", panels: panels)
            try AtomicFile.write(Array(picture.utf8), to: svg)
        }
        let measured = sweep.points.filter { $0.measured != nil }
        if !measured.isEmpty {
            let bad = measured.filter { !$0.measured!.matchesPredicted }
            print("\nmeasured \(measured.count) of \(sweep.points.count) points: " + (bad.isEmpty ? "measured == predicted on every one" : "\(bad.count) MISMATCH"))
            for p in bad { print("  \(sweep.coordinates(p)) \(p.variant): " + p.measured!.mismatches.joined(separator: "; ")) }
            guard bad.isEmpty else { throw ExitCode(3) }
        }
    }

    /// Runs the points to measure on real worker processes: one cluster per rank count, reused across its points,
    /// its frame limit set from the largest of them.
    func measurePoints(_ sweep: inout Sweep, limit: Int) throws {
        let progress = Progress()
        defer { progress.finish() }
        let chosen = sweep.points.indices.filter { sweep.points[$0].predictedPayloadBytesPerStep <= limit }
        let totalSteps = chosen.reduce(0) { $0 + sweep.points[$1].topology.steps }
        var stepsDone = 0, moved = 0, pointsDone = 0
        for ranks in Set(chosen.map { sweep.points[$0].topology.ranks }).sorted() {
            let group = chosen.filter { sweep.points[$0].topology.ranks == ranks }
            let largest = group.max { sweep.points[$0].topology.largestDataFrameBytes < sweep.points[$1].topology.largestDataFrameBytes }!
            let (_, coordinator) = try cluster.makeCoordinator(resolved: sweep.points[largest].topology, spawnLocal: true,
                                                               logLevel: cluster.verbose ? .info : .warning)
            defer { coordinator.shutdown() }
            progress.update("starting \(ranks) workers", fraction: Double(stepsDone) / Double(max(1, totalSteps)), bytes: moved)
            try coordinator.start()
            for i in group {
                let t = sweep.points[i].topology
                let perStep = sweep.points[i].predictedPayloadBytesPerStep
                let name = "point \(pointsDone + 1)/\(chosen.count) \(sweep.coordinates(sweep.points[i])) \(sweep.points[i].variant)"
                let result = try coordinator.run(t) { step, _ in
                    stepsDone += 1
                    moved += perStep
                    progress.update(name + ", step \(step)/\(t.steps)", fraction: Double(stepsDone) / Double(max(1, totalSteps)), bytes: moved)
                }
                sweep.points[i].measured = SweepMeasurement(result)
                pointsDone += 1
            }
            coordinator.shutdown()
        }
    }
}
