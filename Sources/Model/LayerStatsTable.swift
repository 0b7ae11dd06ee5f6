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

    /// Why a stats file could not be read.
    public enum ParseError: Error, CustomStringConvertible {
        case badHeader(String), badRow(line: Int, text: String)
        public var description: String {
            switch self {
            case let .badHeader(h): return "stats CSV: expected header '\(LayerStatsTable.header)', found '\(h)'"
            case let .badRow(l, t): return "stats CSV line \(l): cannot parse '\(t)'"
            }
        }
    }

    /// Parses CSV written by `csv`.
    public init(csv text: String) throws {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: true)
        guard let first = lines.first, first == Self.header else { throw ParseError.badHeader(String(lines.first ?? "")) }
        for (i, line) in lines.dropFirst().enumerated() {
            let f = line.split(separator: ",").map(String.init)
            guard f.count == 6, let step = Int(f[1]), let layer = Int(f[2]), let a = Float(f[3]), let b = Float(f[4]),
                  let c = Float(f[5]) else { throw ParseError.badRow(line: i + 2, text: String(line)) }
            rows.append(Row(residual: f[0], step: step,
                            magnitude: LayerMagnitude(layer: layer, inputRMS: a, outputRMS: b, gradientRMS: c)))
        }
    }
}
