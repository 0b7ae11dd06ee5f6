import Foundation

/// Per-layer magnitudes recorded during training (issue item 6, the PreNorm-dilution evidence): for chosen steps,
/// the RMS of each layer's input, output and output gradient, as CSV with one row per (residual, step, layer).
public struct LayerStatsTable: Sendable, Equatable {
    /// One CSV row.
    public struct Row: Sendable, Equatable {
        public var residual: String
        public var step: Int
        public var magnitude: LayerMagnitude
    }
    public var rows: [Row] = []
    public static let header = "residual,step,layer,input_rms,output_rms,grad_rms"

    public init(rows: [Row] = []) { self.rows = rows }

    /// Appends the magnitudes of one step.
    public mutating func record(residual: ResidualKind, step: Int, _ mags: [LayerMagnitude]) {
        for m in mags { rows.append(Row(residual: residual.rawValue, step: step, magnitude: m)) }
    }

    /// CSV text with `header` first.
    public var csv: String {
        var s = Self.header + "\n"
        for r in rows {
            let m = r.magnitude
            s += "\(r.residual),\(r.step),\(m.layer),\(m.inputRMS),\(m.outputRMS),\(m.gradientRMS)\n"
        }
        return s
    }

    /// The largest layer number a row may give: far beyond any model here, and small enough that a chart's axis
    /// arithmetic (layer as a Double, back to an Int) cannot overflow.
    public static let largestLayer = 1 << 24

    /// Why a stats file could not be read: the file, the line (1-based) and, for a value, its column.
    public enum ParseError: Error, CustomStringConvertible, Equatable {
        case badHeader(file: String, found: String)
        case badRow(file: String, line: Int, fields: Int, text: String)
        case badValue(file: String, line: Int, column: String, value: String, problem: String)
        case noRows(file: String)
        public var description: String {
            switch self {
            case let .badHeader(f, h): return "\(f):1: expected the header '\(LayerStatsTable.header)', found '\(clip(h))'"
            case let .badRow(f, l, n, t): return "\(f):\(l): expected 6 comma-separated fields, found \(n): '\(clip(t))'"
            case let .badValue(f, l, c, v, p): return "\(f):\(l): column \(c): '\(clip(v))' \(p)"
            case let .noRows(f): return "\(f): no data rows after the header (nothing to plot)"
            }
        }
        func clip(_ s: String) -> String { QuotedValue.clip(s) }
    }

    /// Parses CSV written by `csv`; `file` names the source in errors. Every value is checked: step ≥ 1, layer in
    /// 1…`largestLayer`, each RMS a finite number ≥ 0 (an RMS cannot be negative; NaN or infinity is a diverged
    /// run, and a chart of it says nothing). A file with only its header is an error too.
    public init(csv text: String, file: String = "stats CSV") throws {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map { $0.hasSuffix("\r") ? $0.dropLast() : $0 }
        guard let first = lines.first, first == Self.header else {
            throw ParseError.badHeader(file: file, found: String(lines.first ?? ""))
        }
        let columns = Self.header.split(separator: ",").map(String.init)
        for (i, line) in lines.enumerated().dropFirst() where !line.isEmpty {
            let n = i + 1
            let f = line.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
            guard f.count == columns.count else { throw ParseError.badRow(file: file, line: n, fields: f.count, text: String(line)) }
            func bad(_ c: Int, _ problem: String) -> ParseError {
                .badValue(file: file, line: n, column: columns[c], value: f[c], problem: problem)
            }
            guard !f[0].isEmpty else { throw bad(0, "is empty; give the residual kind") }
            guard let step = Int(f[1]) else { throw bad(1, "is not an integer") }
            guard step >= 1 else { throw bad(1, "must be ≥ 1") }
            guard let layer = Int(f[2]) else { throw bad(2, "is not an integer") }
            guard layer >= 1, layer <= Self.largestLayer else { throw bad(2, "must be in 1…\(Self.largestLayer)") }
            var rms: [Float] = []
            for c in 3...5 {
                guard let v = Float(f[c]) else { throw bad(c, "is not a number") }
                guard v.isFinite else { throw bad(c, v.isNaN ? "is NaN" : "is not finite (a float32 RMS is at most \(Float.greatestFiniteMagnitude))") }
                guard v >= 0 else { throw bad(c, "is negative; an RMS is ≥ 0") }
                rms.append(v)
            }
            rows.append(Row(residual: f[0], step: step,
                            magnitude: LayerMagnitude(layer: layer, inputRMS: rms[0], outputRMS: rms[1], gradientRMS: rms[2])))
        }
        guard !rows.isEmpty else { throw ParseError.noRows(file: file) }
    }
}
