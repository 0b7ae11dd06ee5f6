import Foundation
import Model
import Pipeline

/// A topology value `attnres sweep` can vary; each names the topology key and the flag that set it.
public enum SweepAxis: String, CaseIterable, Sendable, Codable {
    case layers, blocks, ranks, virtual, microbatches, hidden

    public var flag: String { "--\(rawValue)" }

    /// Sets this axis to `value` in `o`.
    public func apply(_ value: Int, to o: inout Overrides) {
        switch self {
        case .layers: o.layers = value
        case .blocks: o.blocks = value
        case .ranks: o.ranks = value
        case .virtual: o.virtualStages = value
        case .microbatches: o.microbatches = value
        case .hidden: o.hidden = value
        }
    }

    func value(in t: Topology) -> Int {
        switch self {
        case .layers: return t.layers
        case .blocks: return t.blocks
        case .ranks: return t.ranks
        case .virtual: return t.virtualStages
        case .microbatches: return t.microbatches
        case .hidden: return t.hidden
        }
    }
}

/// Why a sweep cannot be built, naming the flag or the point.
public enum SweepError: Error, CustomStringConvertible, Equatable {
    case badValues(flag: String, text: String, problem: String)
    case noAxis
    case tooManyAxes([String])
    case tooManyPoints(Int)
    case point(String, problem: String)

    public var description: String {
        switch self {
        case .badValues(let flag, let text, let problem): return "\(flag) '\(text)': \(problem)"
        case .noAxis: return "sweep needs an axis: give one or two of --layers, --blocks, --ranks, --virtual, --microbatches, --hidden a list (8,16,32) or a range (8..128:x2)"
        case .tooManyAxes(let flags): return "sweep takes one or two axes, got \(flags.count): \(flags.joined(separator: ", ")) (give the others one value)"
        case .tooManyPoints(let n): return "sweep of \(n) points is more than \(Sweep.maxPoints): narrow an axis"
        case .point(let name, let problem): return "sweep point \(name): \(problem)"
        }
    }
}

/// The values of one axis flag: `8,16,32`, a range `2..6` (step 1), `2..10:+2` (step 2) or `8..128:x2` (×2), or
/// several of these joined by commas; sorted, duplicates dropped.
public enum SweepValues {
    public static func parse(_ text: String, flag: String) throws -> [Int] {
        func bad(_ problem: String) -> SweepError { .badValues(flag: flag, text: text, problem: problem) }
        var out: Set<Int> = []
        for item in text.split(separator: ",", omittingEmptySubsequences: false).map({ $0.trimmingCharacters(in: .whitespaces) }) {
            guard !item.isEmpty else { throw bad("empty item (expected 8,16,32 or 8..128:x2)") }
            if let v = Int(item) {
                guard v >= 1 else { throw bad("\(v) is not ≥ 1") }
                out.insert(v)
                continue
            }
            let parts = item.split(separator: ":", maxSplits: 1).map(String.init)
            let bounds = parts[0].components(separatedBy: "..")
            guard bounds.count == 2, let lo = Int(bounds[0]), let hi = Int(bounds[1]) else {
                throw bad("'\(item)' is neither an integer nor a range A..B, A..B:+K or A..B:xK")
            }
            guard lo >= 1, lo <= hi else { throw bad("range \(lo)..\(hi) needs 1 ≤ A ≤ B") }
            var step = "+1"
            if parts.count == 2 { step = parts[1] }
            guard let k = Int(step.dropFirst()), k >= 1, step.first == "+" || step.first == "x" else {
                throw bad("step '\(step)' must be +K or xK with K ≥ 1")
            }
            if step.first == "x" {
                guard k >= 2 else { throw bad("a geometric step needs K ≥ 2, got x\(k)") }
                var v = lo
                while v <= hi { out.insert(v); let (n, o) = v.multipliedReportingOverflow(by: k); if o { break }; v = n }
            } else {
                guard (hi - lo) / k < Sweep.maxPoints else { throw bad("more than \(Sweep.maxPoints) values") }
                for v in stride(from: lo, through: hi, by: k) { out.insert(v) }
            }
            guard out.count <= Sweep.maxPoints else { throw bad("more than \(Sweep.maxPoints) values") }
        }
        return out.sorted()
    }
}

/// What one sweep point measured on real worker processes.
public struct SweepMeasurement: Codable, Sendable, Equatable {
    public var payloadBytesPerStep: Int
    public var peakCacheBytes: Int
    /// Measured == predicted on every link, the cache peaks, tensors per hop and headers (`VariantResult`).
    public var matchesPredicted: Bool
    public var mismatches: [String]

    enum CodingKeys: String, CodingKey {
        case payloadBytesPerStep = "payload_bytes_per_step", peakCacheBytes = "peak_cache_bytes"
        case matchesPredicted = "matches_predicted", mismatches
    }

    public init(_ r: VariantResult) {
        payloadBytesPerStep = r.payloadBytesPerStep
        peakCacheBytes = r.peakCachedBytes.max() ?? 0
        matchesPredicted = r.matchesPrediction
        mismatches = r.mismatches
    }
}

/// One variant at one combination of axis values: its topology, the analytical model's numbers and, when run,
/// the measurement.
public struct SweepPoint: Sendable {
    public let topology: Topology
    /// Payload bytes per step over every link (forward and backward).
    public let predictedPayloadBytesPerStep: Int
    /// The largest peak of cached bytes over the ranks.
    public let predictedPeakCacheBytes: Int
    public var measured: SweepMeasurement?

    /// "block(8)/cross-stage" or "full/none": the series a point belongs to (before any second axis).
    public var variant: String { "\(Report.variantName(topology))/\(topology.cache.rawValue)" }
}

/// `attnres sweep`: one or two axes × every variant (standard; full and block × none, cross-stage, received-only),
/// every point predicted; the command runs the ones to measure. Pure: no process is started here.
public struct Sweep: Sendable {
    /// A guard against a typo that would predict millions of points.
    public static let maxPoints = 10_000
    /// The swept axes in order: the first is the plots' x axis, the second (if any) splits the series.
    public let axes: [(axis: SweepAxis, values: [Int])]
    public var points: [SweepPoint]

    /// Builds every point from `base` (a parsed, not yet validated topology) with `fixed` overrides and the axes'
    /// values; each point is validated as its own topology (`holdsTensors(point, predicted payload bytes per step)`:
    /// whether it will run on processes, so it must fit in memory),
    /// and an invalid one is an error naming it. Points that differ only in an axis their residual ignores (blocks
    /// for standard and full) appear once.
    public init(base: Topology, fixed: Overrides, axes: [(axis: SweepAxis, values: [Int])],
                holdsTensors: (Topology, Int) -> Bool = { _, _ in false }) throws {
        guard !axes.isEmpty else { throw SweepError.noAxis }
        guard axes.count <= 2 else { throw SweepError.tooManyAxes(axes.map(\.axis.flag)) }
        self.axes = axes
        let combinations = axes.reduce([[Int]]([[]])) { acc, a in acc.flatMap { prefix in a.values.map { prefix + [$0] } } }
        guard combinations.count * 7 <= Sweep.maxPoints else { throw SweepError.tooManyPoints(combinations.count * 7) }
        var points: [SweepPoint] = []
        var seen: Set<String> = []
        for combination in combinations {
            var o = fixed
            for (a, v) in zip(axes, combination) { a.axis.apply(v, to: &o) }
            let (t, set) = o.apply(to: base)
            for var v in comparisonVariants(of: t) {
                if v.residual != .block { v.blocks = min(v.blocks, v.layers) }
                let name = zip(axes, combination).map { "\($0.axis.rawValue)=\($1)" }.joined(separator: " ") + " \(Report.variantName(v))/\(v.cache.rawValue)"
                let identity = "\(v.residual) \(v.residual == .block ? v.blocks : 0) \(v.cache) \(v.layers) \(v.ranks) \(v.virtualStages) \(v.microbatches) \(v.hidden)"
                guard seen.insert(identity).inserted else { continue }
                do {
                    try v.validate(overridden: set, holdsTensors: false)
                    let p = try TrafficPrediction(v.trafficConfig)
                    // A point that will run must also fit this machine's memory (a predicted one need not).
                    if holdsTensors(v, p.payloadBytesPerStep) { try v.validate(overridden: set, holdsTensors: true) }
                    points.append(SweepPoint(topology: v, predictedPayloadBytesPerStep: p.payloadBytesPerStep,
                                             predictedPeakCacheBytes: p.peakCachedBytes.max() ?? 0))
                } catch {
                    throw SweepError.point(name, problem: "\(error)")
                }
            }
        }
        self.points = points
    }

    /// The axis values of a point, in axis order.
    public func coordinates(_ p: SweepPoint) -> [Int] { axes.map { $0.axis.value(in: p.topology) } }

    /// Measured == predicted for every measured point (true when nothing was measured).
    public var measuredMatch: Bool { points.allSatisfy { $0.measured?.matchesPredicted ?? true } }

    // MARK: outputs

    static let csvHeader = ["layers", "blocks", "ranks", "virtual", "microbatches", "hidden", "residual", "cache",
                            "predicted_payload_bytes_per_step", "predicted_peak_cache_bytes",
                            "measured_payload_bytes_per_step", "measured_peak_cache_bytes", "measured_matches_predicted"]

    /// One row per point; blocks empty for residuals without blocks, measured columns empty when not run.
    public func csv() -> String {
        var lines = [Sweep.csvHeader.joined(separator: ",")]
        for p in points {
            let t = p.topology
            let cells: [String] = ["\(t.layers)", t.residual == .block ? "\(t.blocks)" : "", "\(t.ranks)", "\(t.virtualStages)",
                                   "\(t.microbatches)", "\(t.hidden)", t.residual.rawValue, t.cache.rawValue,
                                   "\(p.predictedPayloadBytesPerStep)", "\(p.predictedPeakCacheBytes)",
                                   p.measured.map { "\($0.payloadBytesPerStep)" } ?? "", p.measured.map { "\($0.peakCacheBytes)" } ?? "",
                                   p.measured.map { $0.matchesPredicted ? "true" : "false" } ?? ""]
            lines.append(cells.joined(separator: ","))
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// `{"axes": [...], "points": [{"layers", "blocks", "ranks", "virtual", "microbatches", "hidden", "residual",
    /// "cache", "predicted": {"payload_bytes_per_step", "peak_cache_bytes"}, "measured": {...} or null}]}`.
    public func json() throws -> Data {
        struct Predicted: Encodable {
            let payloadBytesPerStep: Int, peakCacheBytes: Int
            enum CodingKeys: String, CodingKey { case payloadBytesPerStep = "payload_bytes_per_step", peakCacheBytes = "peak_cache_bytes" }
        }
        struct Point: Encodable {
            let t: Topology, predicted: Predicted, measured: SweepMeasurement?
            enum CodingKeys: String, CodingKey { case layers, blocks, ranks, virtual, microbatches, hidden, residual, cache, schedule, predicted, measured }
            func encode(to encoder: Encoder) throws {
                var c = encoder.container(keyedBy: CodingKeys.self)
                try c.encode(t.layers, forKey: .layers)
                try c.encode(t.residual == .block ? t.blocks : nil, forKey: .blocks)
                try c.encode(t.ranks, forKey: .ranks); try c.encode(t.virtualStages, forKey: .virtual)
                try c.encode(t.microbatches, forKey: .microbatches); try c.encode(t.hidden, forKey: .hidden)
                try c.encode(t.residual.rawValue, forKey: .residual); try c.encode(t.cache.rawValue, forKey: .cache)
                try c.encode(t.schedule.rawValue, forKey: .schedule)
                try c.encode(predicted, forKey: .predicted)
                try c.encode(measured, forKey: .measured)
            }
        }
        struct Document: Encodable { let axes: [String]; let points: [Point] }
        let doc = Document(axes: axes.map(\.axis.rawValue), points: points.map {
            Point(t: $0.topology, predicted: Predicted(payloadBytesPerStep: $0.predictedPayloadBytesPerStep,
                                                        peakCacheBytes: $0.predictedPeakCacheBytes), measured: $0.measured)
        })
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys]
        return try e.encode(doc)
    }

    /// The table the command prints: one row per point.
    public func table() -> String {
        let rows = points.map { p -> [String] in
            zip(axes, coordinates(p)).map { $0.axis == .blocks && p.topology.residual != .block ? "-" : String($1) } + [p.variant, Report.grouped(p.predictedPayloadBytesPerStep), Report.grouped(p.predictedPeakCacheBytes),
                                               p.measured.map { $0.matchesPredicted ? "yes" : "NO" } ?? "-"]
        }
        let header = axes.map(\.axis.rawValue) + ["variant", "predicted B/step", "peak cache B/rank", "measured=predicted"]
        let n = axes.count
        return Report.table(header, rows, rightAlign: [n + 1, n + 2])
    }

    /// The series of the plots: one per variant (and per value of the second axis), x = the first axis.
    public func series(_ y: (SweepPoint) -> Int, measured my: (SweepMeasurement) -> Int) -> [PlotSeries] {
        var order: [String] = []
        var byName: [String: PlotSeries] = [:]
        let blocksSwept = axes.contains { $0.axis == .blocks }
        for p in points {
            let c = coordinates(p), t = p.topology
            // A swept block count is a coordinate, not part of the series name.
            var name = (blocksSwept ? t.residual.rawValue : Report.variantName(t)) + "/\(t.cache.rawValue)"
            if axes.count == 2, t.residual == .block || axes[1].axis != .blocks { name += " \(axes[1].axis.rawValue)=\(c[1])" }
            if byName[name] == nil { order.append(name); byName[name] = PlotSeries(name: name, predicted: [], measured: []) }
            // Standard and full ignore the block count: against it they are flat reference lines over every value.
            let xs = axes[0].axis == .blocks && t.residual != .block ? axes[0].values : [c[0]]
            for x in xs {
                byName[name]!.predicted.append((Double(x), Double(y(p))))
                if let m = p.measured { byName[name]!.measured.append((Double(x), Double(my(m)))) }
            }
        }
        return order.map { byName[$0]! }
    }

    /// The two standard panels: payload bytes per step and peak cached bytes per rank against the first axis.
    /// Callers may append panels of their own (a predicted step-time overhead, say) before rendering.
    public func panels() -> [PlotPanel] {
        [PlotPanel(id: "bytes", title: "payload bytes per step (all links, forward + backward)", yLabel: "bytes / step",
                   series: series({ $0.predictedPayloadBytesPerStep }, measured: { $0.payloadBytesPerStep })),
         PlotPanel(id: "cache", title: "peak cached bytes per rank (largest rank)", yLabel: "bytes",
                   series: series({ $0.predictedPeakCacheBytes }, measured: { $0.peakCacheBytes }))]
    }

    /// The SVG of `panels` (default: `panels()`), titled with the base description and the axis.
    public func svg(title: String, panels: [PlotPanel]? = nil) -> String {
        SweepPlot.svg(title: title, xLabel: axes[0].axis.rawValue, panels: panels ?? self.panels())
    }
}
