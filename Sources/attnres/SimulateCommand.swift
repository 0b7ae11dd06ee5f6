import ArgumentParser
import Cluster
import Foundation
import Pipeline

struct Simulate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Predict step time: replay the schedule and hop plans with a duration per action and α-β links.",
        discussion: """
        Replays every rank's action list (the same `Schedule` and `HopPlan` that `run` executes) with compute \
        durations from the exact model's work and a device, and each message at latency + bytes / bandwidth, one \
        transfer at a time per link direction. Prints, per variant (like `compare`), step time, overhead vs \
        standard, bubble per rank, the most exposed link and the critical path. Costs come from a hardware profile \
        (--hardware, or the topology's hardware: key, which --hardware overrides) or from a real run's trace \
        (--calibrate). docs/step-time.md has the formulas.

        Examples:
          attnres simulate topologies/paper-scale.yaml --hardware topologies/hardware/h100-sxm-ndr400.yaml
          attnres run --mode compute --steps 6 --trace cal.json && attnres simulate --calibrate cal.json --microbatches 16
          attnres simulate --calibrate cal.json --measured other.json --ranks 2 --virtual 1   # prediction vs a real run
          attnres simulate --calibrate cal-1.json,cal-2.json,cal-3.json --microbatches 16     # three runs pooled
        """)

    @OptionGroup var topology: TopologyOptions
    @Option(help: "Hardware profile YAML (peak FLOP/s, achieved fraction, memory bandwidth, links).") var hardware: String?
    @Option(help: "Fit costs to a real `attnres run --mode compute --trace FILE.json` of the same model width; several runs of one configuration, comma-separated (A.json,B.json), are pooled.") var calibrate: String?
    @Option(help: "Set the prediction beside this real run's trace (its topology is simulated; overrides are ignored).") var measured: String?
    @Option(help: "Override every link's bandwidth, Gbit/s.") var linkGbit: Double?
    @Option(help: "Override every link's latency, µs.") var linkLatencyUs: Double?
    @Flag(help: "Simulate only the topology's own variant, not every variant of `compare`.") var only = false
    @Flag(help: "Inference instead of training: one forward per microbatch (one-pass depth attention).") var inference = false
    @Option(name: .customLong("fault"), help: "A straggler, as `run --fault`: slow:RANK×F (or slow:RANKxF) makes rank RANK's compute F times as long (repeatable; other faults do not apply to a simulation).")
    var faults: [String] = []
    @Option(help: "Write the per-variant results as JSON.") var json: String?
    @Option(help: "Write the simulated timeline of the topology's own variant (Chrome/Perfetto format, as `run --trace`).") var trace: String?

    func run() throws {
        try OutputPath.check([OutputPath("--json", json, .file), OutputPath("--trace", trace, .file)])
        guard hardware == nil || calibrate == nil else {
            throw UsageError(description: "--hardware and --calibrate are exclusive: costs come from one of them")
        }
        let measuredTrace = try measured.map { try MeasuredTrace(file: $0) }
        let t = try measuredTrace?.topology ?? topology.resolve(holdsTensors: false)
        // Where the costs come from: --hardware, else --calibrate, else the topology's hardware: key.
        let profile: (profile: HardwareProfile, file: String, key: String)?
        if let hardware {
            profile = (try HardwareProfile.load(path: hardware), hardware, "links")
        } else if calibrate == nil, let h = t.hardware {
            profile = (h, t.source, "hardware.links")
        } else {
            profile = nil
        }
        guard profile != nil || calibrate != nil else {
            throw UsageError(description: "give --hardware FILE, a hardware: key in the topology (\(t.source)), or --calibrate TRACE.json (where the costs come from)")
        }
        var costs: StepTimeCosts
        if let profile {
            try profile.profile.checkLinks(t.layout, file: profile.file, key: profile.key)
            costs = StepTimeCosts(profile.profile)
        } else {
            let files = calibrate!.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
            guard !files.contains(where: \.isEmpty) else { throw UsageError(description: "--calibrate '\(calibrate!)': an empty file name in the comma-separated list") }
            let runs = try files.map { try MeasuredTrace(file: $0) }
            let c = try Calibration(runs.count == 1 ? runs[0] : try MeasuredTrace(merging: runs))
            costs = StepTimeCosts(c)
            func parts(_ d: ComputeCost?, _ e: ExecutorCost?, _ ends: ComputeCosts.EndCosts?) -> String {
                (ends.map { String(format: "; head %.3g s/flop, embedding %.3g s/flop, layers %.3g s per byte of depth traffic", $0.head.secondsPerFlop,
                                     $0.embedding.secondsPerFlop, $0.layersPerDepthByte) } ?? "")
                    + (d.map { "; depth attention \(describe($0, action: false))" } ?? "")
                    + (e.map { String(format: "; executor %.1f µs + %.2f µs/tensor", $0.secondsPerAction * 1e6, $0.secondsPerTensor * 1e6) } ?? "")
            }
            print("calibrated on \(c.source): forward \(describe(c.compute.forward))\(parts(c.compute.forwardDepth, c.compute.forwardExecutor, c.compute.forwardEnds)), "
                  + "backward \(describe(c.compute.backward))\(parts(c.compute.backwardDepth, c.compute.backwardExecutor, c.compute.backwardEnds)); "
                  + "link α \(StepTimeReport.seconds(c.link.latency)), \(c.link.bandwidth.isInfinite ? "∞" : String(format: "%.2f GB/s", c.link.bandwidth / 1e9)); "
                  + "send \(StepTimeReport.seconds(c.sendOverhead)) + \(perKiB(c.sendSecondsPerByte)), "
                  + "receive \(StepTimeReport.seconds(c.receiveOverhead)) + \(perKiB(c.receiveSecondsPerByte)), "
                  + "before each compute \(StepTimeReport.seconds(c.actionOverhead)); "
                  + String(format: "fit error (rms, per chunk) forward %.1f%%, backward %.1f%%", 100 * c.residual.forward, 100 * c.residual.backward))
        }
        if let g = linkGbit {
            guard g > 0, g.isFinite else { throw UsageError(description: "--link-gbit must be a positive number, got \(g)") }
            costs.link.bandwidth = g * 1e9 / 8
            for k in costs.overrides.keys { costs.overrides[k]!.bandwidth = g * 1e9 / 8 }
        }
        if let l = linkLatencyUs {
            guard l >= 0, l.isFinite else { throw UsageError(description: "--link-latency-us must be ≥ 0, got \(l)") }
            costs.link.latency = l * 1e-6
            for k in costs.overrides.keys { costs.overrides[k]!.latency = l * 1e-6 }
        }
        for f in try parseFaults(faults) {
            guard case .slow(let r, let factor) = f else {
                throw UsageError(description: "--fault \(f): a simulation models only stragglers (slow:RANK×F)")
            }
            try f.validate(against: t)
            costs.computeScale[r] = factor
            costs.origin += ", rank \(r) compute × \(factor)"
        }
        let keepSpans = t.layout.ranks * t.layout.virtualStages * t.microbatches <= 1 << 16
        let runs: [SimulatedVariant]
        if inference {
            runs = try SimulatedVariant.inference(t, costs: costs, all: !only)
        } else {
            runs = only || measuredTrace != nil ? [try SimulatedVariant(t, costs: costs, keepSpans: keepSpans)]
                                                : try SimulatedVariant.all(t, costs: costs, keepSpans: keepSpans)
        }
        // Rates that are positive but tiny (1e-320 Gbit/s) or latencies that are huge price a step at inf or NaN
        // seconds: a table of -nan% and a JSON file that cannot be written say nothing, so stop and name the costs.
        if let bad = runs.first(where: { !$0.stepSeconds.isFinite }) {
            throw UsageError(description: "costs (\(costs.origin)) price a step of \(bad.topology.residual.rawValue)/\(bad.topology.cache.rawValue) "
                             + "at \(bad.stepSeconds) s: a rate too small or a latency or overhead too large; check those numbers")
        }
        print(Report.describe(t) + (inference ? " — inference (forward only)" : ""))
        print("costs: \(costs.origin)")
        print("")
        print(StepTimeReport.table(runs))
        let own = runs.first { $0.topology.residual == t.residual && $0.topology.cache == t.cache } ?? runs[0]
        print("")
        print("\(own.topology.residual.rawValue)/\(own.topology.cache.rawValue):")
        print(StepTimeReport.details(own))
        if let m = measuredTrace {
            let real = m.typicalStepSeconds, predicted = own.stepSeconds
            print(String(format: "\nmeasured step %@ (mean of %d typical steps), predicted %@, error %+.1f%%", StepTimeReport.seconds(real),
                         m.typicalSteps.count, StepTimeReport.seconds(predicted), 100 * (predicted / real - 1)))
            if let b = StepTimeBreakdown(m, own.simulation) { print(b.table) }
        }
        if let json { try StepTimeReport.writeJSON(runs, origin: costs.origin, to: json, measured: measuredTrace?.typicalStepSeconds) }
        if let trace {
            guard own.simulation.spans != nil else {
                throw UsageError(description: "--trace: this step has \(t.layout.chunks * t.microbatches) chunk × microbatch pairs; timelines are kept up to 65,536 (use fewer ranks, virtual stages or microbatches)")
            }
            try ChromeTrace.write(StepTimeReport.traceRecords(own.simulation, parts: own.parts), ranks: t.ranks, to: trace, topology: own.topology)
        }
    }

    private func perKiB(_ secondsPerByte: Double) -> String { String(format: "%.3g µs/KiB", secondsPerByte * 1024 * 1e6) }

    private func describe(_ c: ComputeCost, action: Bool = true) -> String {
        String(format: "%.3g s/flop + %.3g s/B + %.3g s/kernel", c.secondsPerFlop, c.secondsPerByte, c.secondsPerKernel)
            + (action ? String(format: " + %.3g s/action", c.secondsPerAction) : "")
    }
}
