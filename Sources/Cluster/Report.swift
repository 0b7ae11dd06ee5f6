import Model
import Foundation
import Wire
import Pipeline

/// Tables and JSON for runs, comparisons and predictions.
public enum Report {
    /// "1,234,567".
    public static func grouped(_ n: Int) -> String {
        let s = String(abs(n))
        var out = ""
        for (i, ch) in s.reversed().enumerated() {
            if i > 0 && i % 3 == 0 { out.append(",") }
            out.append(ch)
        }
        return (n < 0 ? "-" : "") + String(out.reversed())
    }

    public static func human(_ n: Int) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var v = Double(n), i = 0
        while v >= 1024 && i < units.count - 1 { v /= 1024; i += 1 }
        return i == 0 ? "\(n) B" : String(format: "%.2f %@", v, units[i])
    }

    static func table(_ header: [String], _ rows: [[String]], rightAlign: Set<Int> = []) -> String {
        var widths = header.map(\.count)
        for r in rows { for (i, c) in r.enumerated() { widths[i] = max(widths[i], c.count) } }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { i, c in
                let pad = String(repeating: " ", count: widths[i] - c.count)
                return rightAlign.contains(i) ? pad + c : c + pad
            }.joined(separator: "  ").trimmingCharacters(in: .whitespaces)
        }
        return ([line(header), widths.map { String(repeating: "-", count: $0) }.joined(separator: "  ")] + rows.map(line)).joined(separator: "\n")
    }

    public static func describe(_ t: Topology) -> String {
        let residual = t.residual == .block ? "block(N=\(t.blocks))" : t.residual.rawValue
        return "\(t.name): \(t.mode.rawValue) mode, \(t.ranks) ranks × \(t.virtualStages) virtual, \(t.schedule.rawValue), L=\(t.layers), \(residual), cache \(t.cache.rawValue), m=\(t.microbatches) × b=\(t.microbatchSize), s=\(t.seq), d=\(t.hidden), \(t.steps) step\(t.steps == 1 ? "" : "s"), \(t.transport.rawValue)"
    }

    /// The per-link table of one run: measured beside predicted, per direction and kind.
    public static func linkTable(_ r: VariantResult) -> String {
        let keys = Set(r.measuredLinks.keys).union(r.prediction.links.keys).sorted()
        let rows = keys.map { k -> [String] in
            let m = r.measuredLinks[k] ?? 0, p = r.prediction.links[k] ?? 0
            return ["\(k.src)→\(k.dst)", k.direction.rawValue, k.kind.rawValue, grouped(m), grouped(p), m == p ? "=" : "≠"]
        }
        var out = table(["link", "direction", "kind", "measured B/step", "predicted B/step", ""], rows, rightAlign: [3, 4])
        out += "\n\npayload per step: forward \(grouped(r.forwardPayloadBytesPerStep)) B, backward \(grouped(r.backwardPayloadBytesPerStep)) B, total \(human(r.payloadBytesPerStep)); frame headers \(grouped(r.headerBytesPerStep)) B (\(String(format: "%.3f", 100 * Double(r.headerBytesPerStep) / Double(max(1, r.payloadBytesPerStep))))% overhead)"
        out += "\ntensors per hop (one microbatch, forward): \(r.tensorsPerHop.map(String.init).joined(separator: " "))"
        out += "\npeak cached bytes per rank: \(r.peakCachedBytes.map(grouped).joined(separator: " / "))"
        out += "\n" + (r.matchesPrediction ? "measured == predicted on every link (payload, headers, tensors per hop, cache peaks)" : "MISMATCH:\n  " + r.mismatches.joined(separator: "\n  "))
        return out
    }

    /// Per rank: compute seconds and seconds blocked at receives (in all, and the mean and largest per step), so
    /// a straggler shows as one rank's compute and its neighbours' waiting.
    public static func waitTable(_ r: VariantResult) -> String {
        let rows = r.waitSeconds.indices.map { i -> [String] in
            let steps = r.waitSecondsPerStep[i]
            let perStep = steps.isEmpty ? ["-", "-"]
                : [String(format: "%.4f", steps.reduce(0, +) / Double(steps.count)), String(format: "%.4f", steps.max() ?? 0)]
            return [String(i), String(format: "%.4f", r.computeSeconds[i]), String(format: "%.4f", r.waitSeconds[i])] + perStep
        }
        return "time per rank (seconds; waiting = blocked at receives):\n"
            + table(["rank", "compute", "waiting", "waiting/step mean", "waiting/step max"], rows, rightAlign: [1, 2, 3, 4])
    }

    static func variantName(_ t: Topology) -> String {
        switch t.residual {
        case .standard: return "standard"
        case .full: return "full"
        case .block: return "block(\(t.blocks))"
        }
    }

    /// One row per variant: the comparison table of `attnres compare`.
    public static func compareTable(_ results: [VariantResult]) -> String {
        let baseline = results.first { $0.topology.residual == .standard }?.payloadBytesPerStep
        let rows = results.map { r -> [String] in
            let ratio = baseline.map { String(format: "%.2f×", Double(r.payloadBytesPerStep) / Double($0)) } ?? "-"
            return [variantName(r.topology), r.topology.residual == .standard ? "-" : r.topology.cache.rawValue,
                    grouped(r.forwardPayloadBytesPerStep), grouped(r.backwardPayloadBytesPerStep),
                    String(r.tensorsPerHop.max() ?? 0), grouped(r.peakCachedBytes.max() ?? 0), ratio,
                    r.matchesPrediction ? "yes" : "NO", String(format: "%.3f%%", 100 * Double(r.headerBytesPerStep) / Double(max(1, r.payloadBytesPerStep)))]
        }
        return table(["residual", "cache", "fwd B/step", "bwd B/step", "peak tensors/hop", "peak cache B/rank", "vs standard", "measured=predicted", "header overhead"],
                     rows, rightAlign: [2, 3, 4, 5, 6, 8])
    }

    /// The analytical view of `attnres predict`.
    public static func predictionTable(_ ps: [(Topology, TrafficPrediction)]) -> String {
        let baseline = ps.first { $0.0.residual == .standard }?.1.payloadBytesPerStep
        let rows = ps.map { t, p -> [String] in
            [variantName(t), t.residual == .standard ? "-" : t.cache.rawValue, grouped(p.forwardPayloadBytesPerStep),
             grouped(p.backwardPayloadBytesPerStep), human(p.payloadBytesPerStep), String(p.peakTensorsPerHop),
             human(p.peakCachedBytes.max() ?? 0),
             baseline.map { String(format: "%.2f×", Double(p.payloadBytesPerStep) / Double($0)) } ?? "-"]
        }
        return table(["residual", "cache", "fwd B/step", "bwd B/step", "total/step", "peak tensors/hop", "peak cache/rank", "vs standard"], rows, rightAlign: [2, 3, 4, 5, 6, 7])
    }
}

/// The JSON written by `--json` (keys in snake_case).
public struct ReportJSON: Codable {
    public struct Link: Codable { var src: Int, dst: Int, direction: String, kind: String, payloadBytes: Int }
    public struct Predicted: Codable {
        var payloadBytesPerStep: Int, forwardPayloadBytesPerStep: Int, backwardPayloadBytesPerStep: Int
        var headerBytesPerStep: Int, tensorsPerHop: [Int], peakTensorsPerHop: Int, peakCachedBytesPerRank: [Int], links: [Link]
    }
    public struct Measured: Codable {
        var payloadBytesPerStep: Int, forwardPayloadBytesPerStep: Int, backwardPayloadBytesPerStep: Int
        var headerBytesPerStep: Int, tensorsPerHop: [Int], peakCachedBytesPerRank: [Int], links: [Link]
        var matchesPredicted: Bool, mismatches: [String], seconds: Double, waitSecondsPerRank: [Double]
        /// `[rank][step]`: seconds each rank was blocked at receives in each step.
        var waitSecondsPerRankPerStep: [[Double]]
        var computeSecondsPerRank: [Double]
        var bubble: Bubble?
    }
    public struct Bubble: Codable {
        var measuredPerRank: [Double]?
        var theoreticalPerRank: [Double]
    }
    public struct Run: Codable {
        var name: String, mode: String, residual: String, blocks: Int?, cache: String, steps: Int
        var ranks: Int, virtual: Int, schedule: String, layers: Int, microbatches: Int, microbatchSize: Int, seq: Int, hidden: Int
        var predicted: Predicted
        var measured: Measured?
    }
    public var workers: [WorkerInfo]?
    public var runs: [Run]
    /// Compute mode: per-step mean losses of the (first) run.
    public var losses: [Float]?
    /// The step number before `losses[0]` (non-zero after --resume).
    public var firstStep: Int?
    /// CURVE runs: links authenticated and encrypted, and the connections refused for an unknown key.
    public var security: Security?
    public struct Security: Codable {
        public var curve: Bool
        /// Every refused connection (a refused worker makes two: its control and heartbeat sockets).
        public var refusedConnections: Int
        /// Each refused (address, key) once.
        public var refused: [ZAPHandler.Refusal]
    }

    static func links(_ d: [LinkKey: Int]) -> [Link] {
        d.keys.sorted().map { Link(src: $0.src, dst: $0.dst, direction: $0.direction.rawValue, kind: $0.kind.rawValue, payloadBytes: d[$0]!) }
    }

    static func run(_ t: Topology, _ p: TrafficPrediction, _ m: VariantResult?) -> Run {
        let predicted = Predicted(payloadBytesPerStep: p.payloadBytesPerStep, forwardPayloadBytesPerStep: p.forwardPayloadBytesPerStep,
                                  backwardPayloadBytesPerStep: p.backwardPayloadBytesPerStep, headerBytesPerStep: p.headerBytesPerStep,
                                  tensorsPerHop: p.tensorsPerHop, peakTensorsPerHop: p.peakTensorsPerHop,
                                  peakCachedBytesPerRank: p.peakCachedBytes, links: links(p.links))
        let measured = m.map {
            Measured(payloadBytesPerStep: $0.payloadBytesPerStep, forwardPayloadBytesPerStep: $0.forwardPayloadBytesPerStep,
                     backwardPayloadBytesPerStep: $0.backwardPayloadBytesPerStep, headerBytesPerStep: $0.headerBytesPerStep,
                     tensorsPerHop: $0.tensorsPerHop, peakCachedBytesPerRank: $0.peakCachedBytes, links: links($0.measuredLinks),
                     matchesPredicted: $0.matchesPrediction, mismatches: $0.mismatches, seconds: $0.seconds, waitSecondsPerRank: $0.waitSeconds,
                     waitSecondsPerRankPerStep: $0.waitSecondsPerStep, computeSecondsPerRank: $0.computeSeconds,
                     bubble: Bubble(measuredPerRank: $0.measuredBubble, theoreticalPerRank: $0.theoreticalBubble))
        }
        return Run(name: t.name, mode: t.mode.rawValue, residual: t.residual.rawValue, blocks: t.residual == .block ? t.blocks : (t.residual == .full ? t.layers : nil),
                   cache: t.cache.rawValue, steps: t.steps, ranks: t.ranks, virtual: t.virtualStages, schedule: t.schedule.rawValue,
                   layers: t.layers, microbatches: t.microbatches, microbatchSize: t.microbatchSize, seq: t.seq, hidden: t.hidden,
                   predicted: predicted, measured: measured)
    }

    public init(workers: [WorkerInfo], results: [VariantResult]) {
        self.workers = workers
        runs = results.map { ReportJSON.run($0.topology, $0.prediction, $0) }
        losses = results.first.flatMap { $0.losses.isEmpty ? nil : $0.losses }
        firstStep = losses == nil ? nil : results.first?.firstStep
    }

    public init(predictions: [(Topology, TrafficPrediction)]) {
        workers = nil
        runs = predictions.map { ReportJSON.run($0.0, $0.1, nil) }
    }

    public func write(to path: String) throws {
        let e = JSONEncoder()
        e.keyEncodingStrategy = .convertToSnakeCase
        e.outputFormatting = [.prettyPrinted, .sortedKeys]
        do { try e.encode(self).write(to: URL(fileURLWithPath: path)) } catch {
            throw TopologyError(file: path, key: "--json", line: nil, problem: "cannot write: \(error.localizedDescription)")
        }
    }
}

/// The variants `attnres compare` runs: standard, then full and block × every cache policy.
public func comparisonVariants(of t: Topology) -> [Topology] {
    var out: [Topology] = []
    var s = t; s.residual = .standard; s.cache = .none; out.append(s)
    for kind in [ResidualKind.full, .block] {
        for cache in CachePolicy.allCases {
            var v = t; v.residual = kind; v.cache = cache
            out.append(v)
        }
    }
    return out
}
