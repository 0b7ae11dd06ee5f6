import Foundation
import Model
import Pipeline

/// Where a simulation's costs come from: a datasheet profile or a calibrated trace.
public struct StepTimeCosts: Sendable {
    public var compute: ComputeCosts
    public var link: LinkCost
    public var overrides: [StepCosts.LinkID: LinkCost]
    public var sendOverhead: Double
    public var receiveOverhead: Double = 0
    /// Per-rank send overheads of a calibration run and its rank count (used for pipelines of as many ranks).
    public var sendOverheadByRank: (ranks: Int, seconds: [Double])?
    /// Per-byte send and receive costs and the per-action overhead (`StepCosts`), 0 from a datasheet.
    public var sendSecondsPerByte = 0.0, receiveSecondsPerByte = 0.0, actionOverhead = 0.0
    /// A calibration run's spread of durations: the step time is then the median of `spreadReplays` replays that
    /// draw from it (nil from a datasheet: every action takes its typical value).
    public var spread: DurationSpread?
    public var spreadReplays = 31
    /// What the costs are (for the report): the profile's name or the calibration trace.
    public var origin: String
    /// Ranks whose compute takes this many times as long (`--fault slow:R×F`); absent ranks run at 1×.
    public var computeScale: [Int: Double] = [:]

    public init(compute: ComputeCosts, link: LinkCost, overrides: [StepCosts.LinkID: LinkCost] = [:], sendOverhead: Double = 0, origin: String) {
        self.compute = compute; self.link = link; self.overrides = overrides; self.sendOverhead = sendOverhead; self.origin = origin
    }

    public init(_ h: HardwareProfile) {
        self.init(compute: h.compute, link: h.link, overrides: h.overrides, origin: "hardware \(h.name)")
    }

    public init(_ c: Calibration) {
        self.init(compute: c.compute, link: c.link, sendOverhead: c.sendOverhead, origin: "calibrated on \(c.source)")
        receiveOverhead = c.receiveOverhead
        sendOverheadByRank = (c.ranks, c.sendOverheadByRank)
        sendSecondsPerByte = c.sendSecondsPerByte
        receiveSecondsPerByte = c.receiveSecondsPerByte
        actionOverhead = c.actionOverhead
        spread = c.spread
    }

    /// The step costs of topology `t` (its model, pipeline and hop plan); `twoPhase` prices depth attention as
    /// inference's two-phase path. The one place training and inference take every cost from.
    public func stepCosts(_ t: Topology, twoPhase: Bool = false) -> StepCosts {
        var c = compute.stepCosts(ChunkWork(model: t.modelConfig, layout: t.layout, microbatchSize: t.microbatchSize, twoPhase: twoPhase),
                          plan: HopPlan(layout: t.layout, residual: t.residualConfig), activationBytes: t.trafficConfig.activationBytes,
                          link: link, overrides: overrides, sendOverhead: sendOverhead, receiveOverhead: receiveOverhead)
        if let byRank = sendOverheadByRank, byRank.ranks == t.ranks { c.sendOverheadByRank = byRank.seconds }
        if !computeScale.isEmpty { c.computeScaleByRank = (0..<t.ranks).map { computeScale[$0] ?? 1 } }
        c.sendSecondsPerByte = sendSecondsPerByte
        c.receiveSecondsPerByte = receiveSecondsPerByte
        c.actionOverhead = actionOverhead
        return c
    }
}

/// One simulated variant.
public struct SimulatedVariant: Sendable {
    public let topology: Topology
    public let simulation: StepTimeSimulation
    /// The predicted step: with a spread, the median over replays that draw every duration from it (the bubble,
    /// exposed communication and critical path are the typical-duration replay's); else the replay's own.
    public private(set) var stepSeconds: Double
    /// Step time ÷ the standard residual's on the same pipeline, minus one (nil when standard was not simulated).
    public var overheadVsStandard: Double?
    /// Inference only: depth attention priced as the two-phase path (nil for training).
    public private(set) var twoPhase: Bool?
    /// Each chunk's forward and backward in parts (for the simulated trace's `model_us` and `depth_us`).
    public private(set) var parts: (forward: [ComputeCosts.Parts], backward: [ComputeCosts.Parts]) = ([], [])

    public init(_ t: Topology, costs: StepTimeCosts, keepSpans: Bool) throws {
        topology = t
        twoPhase = nil
        let program = try t.makeScheduleProgram(), step = costs.stepCosts(t)
        simulation = try StepTimeSimulation(program, costs: step, keepSpans: keepSpans)
        parts = (step.forwardParts, step.backwardParts)
        stepSeconds = try SimulatedVariant.spreadStep(simulation, costs: costs, step: step, actions: program.actionCount) {
            try StepTimeSimulation(program, costs: $0, keepSpans: false)
        }
    }

    /// The median step of `costs.spreadReplays` replays drawing from `costs.spread` (seeds 1, 2, …), fewer for
    /// large steps (at most about 2·10⁷ actions in all); the typical replay's step without a spread.
    static func spreadStep(_ typical: StepTimeSimulation, costs: StepTimeCosts, step: StepCosts, actions: Int,
                           replay: (StepCosts) throws -> StepTimeSimulation) throws -> Double {
        guard let spread = costs.spread, !spread.isEmpty else { return typical.stepSeconds }
        let replays = max(1, min(costs.spreadReplays, 20_000_000 / max(actions, 1)))
        var steps: [Double] = []
        for seed in 1...replays {
            var c = step
            c.spread = spread
            c.spread!.seed = UInt64(seed)
            steps.append(try replay(c).stepSeconds)
        }
        return CalibrationMath.median(steps)
    }

    /// Simulates every variant of `compare` (standard first) and sets each beside standard.
    public static func all(_ t: Topology, costs: StepTimeCosts, keepSpans: Bool) throws -> [SimulatedVariant] {
        var out = try comparisonVariants(of: t).map { try SimulatedVariant($0, costs: costs, keepSpans: keepSpans) }
        let base = out[0].stepSeconds
        for i in out.indices { out[i].overheadVsStandard = base > 0 ? out[i].stepSeconds / base - 1 : nil }
        return out
    }
}

/// Tables, JSON and Chrome trace of simulated steps.
public enum StepTimeReport {
    public static func seconds(_ s: Double) -> String {
        if s >= 1 { return String(format: "%.3f s", s) }
        if s >= 1e-3 { return String(format: "%.3f ms", s * 1e3) }
        return String(format: "%.1f µs", s * 1e6)
    }

    static func variantName(_ t: Topology) -> (String, String) {
        let r = t.residual == .block ? "block(\(t.blocks))" : t.residual.rawValue
        return (r, t.residual == .standard ? "-" : t.cache.rawValue)
    }

    static func variantName(_ v: SimulatedVariant) -> (String, String) {
        let (r, c) = variantName(v.topology)
        guard let two = v.twoPhase, v.topology.residual != .standard else { return (r, c) }
        return (r + (two ? " two-phase" : " one-pass"), c)
    }

    /// The per-variant table (like `compare`'s): step time, overhead, bubble range, the most exposed link.
    public static func table(_ runs: [SimulatedVariant]) -> String {
        var rows = [["residual", "cache", "step", "vs standard", "bubble per rank", "exposed comm (worst link)", "critical path compute/comm"]]
        for v in runs {
            let s = v.simulation
            let (r, c) = variantName(v)
            let worst = s.exposedComm.max { $0.seconds < $1.seconds }
            let split = s.criticalPathSplit
            rows.append([r, c, seconds(v.stepSeconds), v.overheadVsStandard.map { String(format: "%+.2f%%", 100 * $0) } ?? "-",
                         s.bubble.map { String(format: "%.1f%%", 100 * $0) }.joined(separator: " "),
                         worst.map { "\(seconds($0.seconds)) \($0.src)→\($0.dst) \($0.direction.rawValue)" } ?? "-",
                         split.map { "\(seconds($0.compute)) / \(seconds($0.communication))" } ?? "-"])
        }
        return render(rows)
    }

    static func render(_ rows: [[String]]) -> String {
        let widths = rows[0].indices.map { i in rows.map { $0[i].count }.max()! }
        var lines: [String] = []
        for (n, row) in rows.enumerated() {
            lines.append(row.enumerated().map { i, cell in cell.padding(toLength: widths[i], withPad: " ", startingAt: 0) }.joined(separator: "  "))
            if n == 0 { lines.append(widths.map { String(repeating: "-", count: $0) }.joined(separator: "  ")) }
        }
        return lines.joined(separator: "\n")
    }

    /// Exposed communication per link and the critical path of one variant, spelled out.
    public static func details(_ v: SimulatedVariant, pathItems: Int = 24) -> String {
        let s = v.simulation
        var lines = ["per rank: compute " + s.busySeconds.map(seconds).joined(separator: " / ") + "; blocked at receives " + s.waitSeconds.map(seconds).joined(separator: " / ")]
        lines.append("exposed communication per link (a rank waited while the message was in flight):")
        for e in s.exposedComm { lines.append("  \(e.src)→\(e.dst) \(e.direction.rawValue): \(seconds(e.seconds))") }
        if let path = s.criticalPath {
            let names = path.map { item -> String in
                switch item {
                case .compute(let sp): return "\(sp.action)@\(sp.rank)"
                case .transfer(let m): return "[\(m.src)→\(m.dst) \(m.key.direction == .forward ? "act" : "grad") hop \(m.key.hop) mb \(m.key.microbatch)]"
                }
            }
            let shown = names.count > pathItems ? names.prefix(pathItems / 2) + ["…"] + names.suffix(pathItems / 2) : names[...]
            lines.append("critical path (\(path.count) items): " + shown.joined(separator: " → "))
        }
        return lines.joined(separator: "\n")
    }

    /// `{"runs": [{"residual", "blocks", "cache", "simulated": {...}}], "costs": origin}`.
    public static func json(_ runs: [SimulatedVariant], origin: String, measured: Double? = nil) -> [String: Any] {
        var doc: [String: Any] = ["costs": origin]
        if let measured { doc["measured_step_seconds"] = measured }
        doc["runs"] = runs.map { v -> [String: Any] in
            let s = v.simulation
            var sim: [String: Any] = [
                "step_seconds": v.stepSeconds,
                "pipeline_seconds": s.pipelineSeconds,
                "bubble": s.bubble,
                "exposed_comm_seconds": s.exposedComm.map { ["src": $0.src, "dst": $0.dst, "direction": $0.direction.rawValue, "seconds": $0.seconds] },
                "events": s.events,
                "wait_seconds_per_rank": s.waitSeconds,
                "busy_seconds_per_rank": s.busySeconds,
            ]
            sim["overhead_vs_standard"] = v.overheadVsStandard ?? NSNull()
            if let split = s.criticalPathSplit { sim["critical_path"] = ["compute_seconds": split.compute, "communication_seconds": split.communication] }
            var run: [String: Any] = ["residual": v.topology.residual.rawValue, "blocks": v.topology.residual == .standard ? 0 : v.topology.modelConfig.effectiveBlocks,
                                      "cache": v.topology.cache.rawValue, "schedule": v.topology.schedule.rawValue, "simulated": sim]
            if let two = v.twoPhase { run["depth_attention"] = two ? "two-phase" : "one-pass" }
            return run
        }
        return doc
    }

    public static func writeJSON(_ runs: [SimulatedVariant], origin: String, to path: String, measured: Double? = nil) throws {
        let data = try JSONSerialization.data(withJSONObject: json(runs, origin: origin, measured: measured), options: [.prettyPrinted, .sortedKeys])
        try AtomicFile.write([UInt8](data), to: path)
    }

    /// The simulated step as the records a traced run produces, so `ChromeTrace` writes it in the same format.
    /// `parts` (per chunk, forward and backward; `SimulatedVariant.parts`) give each span its time in the model
    /// and in depth attention, in proportion, as a traced run records them (depth only where it is not 0); empty
    /// arrays leave them out.
    public static func traceRecords(_ s: StepTimeSimulation,
                                    parts: (forward: [ComputeCosts.Parts], backward: [ComputeCosts.Parts]) = ([], [])) -> [Int: [TraceRecord]] {
        var out: [Int: [TraceRecord]] = [:]
        for r in 0..<s.layout.ranks { out[r] = [] }
        for sp in s.spans ?? [] {
            let kind: TraceRecord.Kind, all: [ComputeCosts.Parts]
            if case .forward = sp.action { kind = .forward; all = parts.forward } else { kind = .backward; all = parts.backward }
            let k = sp.action.chunk
            var model: Double?, depth: Double?
            if all.indices.contains(k), all[k].total > 0 {
                let scale = (sp.end - sp.start) / all[k].total
                model = (all[k].rest + all[k].depth) * scale
                depth = all[k].depth > 0 ? all[k].depth * scale : nil
            }
            out[sp.rank]!.append(TraceRecord(kind: kind, start: sp.start, end: sp.end, step: 0, chunk: k, microbatch: sp.action.microbatch,
                                             modelSeconds: model, depthSeconds: depth))
        }
        for m in s.messages ?? [] {
            let back = m.key.direction == .backward
            out[m.src]!.append(TraceRecord(kind: .send, start: m.sent, end: m.sent + m.sendSeconds, step: 0, chunk: -1, microbatch: m.key.microbatch,
                                           hop: m.key.hop, backward: back, peer: m.dst, bytes: m.bytes))
            out[m.dst]!.append(TraceRecord(kind: .arrive, start: m.arrived, end: m.arrived, step: 0, chunk: -1, microbatch: m.key.microbatch,
                                           hop: m.key.hop, backward: back, peer: m.src, bytes: m.bytes))
        }
        for w in s.waits ?? [] {
            out[w.rank]!.append(TraceRecord(kind: .wait, start: w.start, end: w.end, step: 0, chunk: -1, microbatch: w.key.microbatch,
                                            hop: w.key.hop, backward: w.key.direction == .backward))
        }
        return out
    }
}

extension SimulatedVariant {
    /// Inference: one forward per microbatch, each rank running its chunks in order (chunk, then microbatch), so
    /// microbatches stream through the pipeline. `twoPhase` prices depth attention as `Inference`'s two-phase path.
    public init(inference t: Topology, twoPhase: Bool, costs: StepTimeCosts, keepSpans: Bool) throws {
        topology = t
        let layout = t.layout
        let order: [[Action]] = (0..<layout.ranks).map { r in
            layout.chunks(onRank: r).flatMap { c in (0..<t.microbatches).map { Action.forward(chunk: c, microbatch: $0) } }
        }
        let schedule = Schedule(kind: .gpipe, layout: layout, microbatches: t.microbatches, computeOrder: order)
        var step = costs.stepCosts(t, twoPhase: twoPhase)
        step.backward = step.backward.map { _ in 0 }
        step.optimizer = []
        simulation = try StepTimeSimulation(schedule, costs: step, keepSpans: keepSpans)
        parts = (step.forwardParts, [])
        stepSeconds = try SimulatedVariant.spreadStep(simulation, costs: costs, step: step, actions: schedule.actions.reduce(0) { $0 + $1.count }) {
            try StepTimeSimulation(schedule, costs: $0, keepSpans: false)
        }
        self.twoPhase = twoPhase
    }

    /// Standard, then full and block with one-pass and two-phase depth attention (the topology's cache policy).
    public static func inference(_ t: Topology, costs: StepTimeCosts, all: Bool) throws -> [SimulatedVariant] {
        let keep = t.layout.ranks * t.layout.virtualStages * t.microbatches <= 1 << 16
        guard all else { return [try SimulatedVariant(inference: t, twoPhase: t.residual != .standard, costs: costs, keepSpans: keep)] }
        var s = t; s.residual = .standard; s.cache = .none
        var out = [try SimulatedVariant(inference: s, twoPhase: false, costs: costs, keepSpans: keep)]
        for kind in [ResidualKind.full, .block] {
            var v = t; v.residual = kind
            for two in [false, true] { out.append(try SimulatedVariant(inference: v, twoPhase: two, costs: costs, keepSpans: keep)) }
        }
        let base = out[0].stepSeconds
        for i in out.indices { out[i].overheadVsStandard = base > 0 ? out[i].stepSeconds / base - 1 : nil }
        return out
    }
}
