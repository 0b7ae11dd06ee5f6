import Model
import ArgumentParser
import Cluster
import Pipeline

struct Predict: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Compute the traffic analytically, at any scale, without starting processes.",
        discussion: """
        From a topology or from flags alone, e.g.
          attnres predict topologies/paper-scale.yaml
          attnres predict --ranks 4 --virtual 2 --layers 32 --blocks 8 --paper-accounting
        """)

    @OptionGroup var topology: TopologyOptions
    @Option(help: "Write the predictions as JSON.") var json: String?
    @Flag(help: "Print the paper's Eq. 7 / Eq. 8 block counts beside our exact ones.") var paperAccounting = false

    func run() throws {
        let t = try topology.resolve(holdsTensors: false)
        try OutputPath.check([OutputPath("--json", json, .file)])
        let variants = comparisonVariants(of: t)
        let predictions = try variants.map { ($0, try TrafficPrediction($0.trafficConfig)) }
        print(Report.describe(t))
        print("")
        print(Report.predictionTable(predictions))
        let selected = try TrafficPrediction(t.trafficConfig)
        print("\nselected variant (\(t.residual.rawValue), cache \(t.cache.rawValue)):")
        print("  tensors per hop (one microbatch, forward): \(selected.tensorsPerHop.map(String.init).joined(separator: " "))")
        print("  peak cached bytes per rank: \(selected.peakCachedBytes.map(Report.grouped).joined(separator: " / "))")
        print("  payload per step: \(Report.grouped(selected.payloadBytesPerStep)) B; frame headers \(Report.grouped(selected.headerBytesPerStep)) B")
        if paperAccounting {
            let kind = t.residual == .standard ? ResidualKind.block : t.residual
            print("")
            print(PaperView.render(PaperAccounting(layout: t.layout, residual: kind, blocks: t.blocks), topology: t, kind: kind))
        }
        if let json { try RunOptionChecks.writing(json, flag: "--json") { try ReportJSON(predictions: predictions).write(to: json) } }
    }
}

enum PaperView {
    static func render(_ a: PaperAccounting, topology t: Topology, kind: ResidualKind) -> String {
        let bytes = t.trafficConfig.activationBytes
        func f(_ x: Double) -> String { x == x.rounded() ? String(Int(x)) : String(format: "%.2f", x) }
        var lines = ["paper accounting (\(kind.rawValue), block transmissions per microbatch, one direction; N_p = \(f(a.blocksPerChunk)) blocks per chunk, one block = \(Report.grouped(bytes)) B):"]
        lines.append("  Eq. 7 naive   C(C−1)/2·N_p              = \(f(a.eq7Naive))")
        lines.append("  Eq. 8 cached  P(P−1)/2·N_p + (V−1)P²·N_p = \(f(a.eq8Cached))")
        for c in CachePolicy.allCases {
            lines.append("  exact, cache \(c.rawValue.padding(toLength: 13, withPad: " ", startingAt: 0)): \(a.exactWithoutEmbedding[c]!) without b_0, \(a.exact[c]!) with b_0; hops into virtual stages ≥ 2 carry \(a.laterVirtualStages[c]!)")
        }
        lines.append("  partial sums b_n^i (every policy, not in Eq. 7/8): \(a.partials)")
        let naive = a.laterVirtualStages[.none]!
        lines.append("  caching saves, on hops into virtual stages ≥ 2: received-only \(naive - a.laterVirtualStages[.receivedOnly]!), cross-stage \(naive - a.laterVirtualStages[.crossStage]!) block transmissions")
        return lines.joined(separator: "\n")
    }
}

struct ScheduleCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "schedule",
        abstract: "Print the schedule as a rank × time-slot grid (2F0 = chunk 2, forward, microbatch 0).",
        discussion: "Unit-time forward and backward; the grid is checked for deadlocks by executing every rank's list in memory.")

    @OptionGroup var topology: TopologyOptions
    @Flag(help: "Also print each rank's full action list, communication included.") var actions = false

    func run() throws {
        let t = try topology.resolve(holdsTensors: false)
        let s = try t.makeSchedule()
        let sim = try ScheduleSimulation(s)
        print("\(t.schedule.rawValue): \(t.ranks) ranks × \(t.virtualStages) virtual, \(t.microbatches) microbatches, \(t.layout.chunks) chunks")
        print(ScheduleGrid.render(slots: sim.slots, makespan: sim.makespan, mark: nil))
        print(String(format: "makespan %d slots; bubble %.1f%% (theory for unit times: (p−1)/(v·m+p−1) = %.1f%%)", sim.makespan,
                     100 * sim.bubbleFraction, 100 * Double(t.ranks - 1) / Double(t.virtualStages * t.microbatches + t.ranks - 1)))
        if actions {
            for (r, list) in s.actions.enumerated() { print("rank \(r): " + list.map(\.description).joined(separator: " ")) }
        }
    }
}
