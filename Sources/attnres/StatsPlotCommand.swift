import ArgumentParser
import Cluster
import Foundation
import Model

/// `attnres stats-plot`: draws the per-layer magnitudes recorded by `attnres train --stats` as one SVG.
struct StatsPlot: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stats-plot",
        abstract: "Plot per-layer RMS statistics (from `train --stats`) of one or more runs into an SVG.",
        discussion: """
        Example (docs/prenorm-dilution.svg):
          attnres train --residual standard --steps 200 --stats std.csv --stats-every 100
          attnres train --residual block --steps 200 --stats block.csv --stats-every 100
          attnres stats-plot docs/prenorm-dilution.svg std.csv block.csv
        """)

    @Argument(help: "Output SVG file.") var output: String
    @Argument(help: "CSV files written by `attnres train --stats`.") var inputs: [String]
    @Option(help: "Chart title.") var title = "Per-layer RMS: standard (solid) vs AttnRes (dashed)"
    @Option(help: "Only plot these steps (comma-separated); default all.") var steps: String?

    func run() throws {
        var table = LayerStatsTable()
        try OutputPath.check([OutputPath("output", output, .file)])
        let keep = try steps.map(Self.parseSteps)
        for path in inputs { table.rows += try LayerStatsTable(csv: InputFile.text(path), file: path).rows }
        if let keep {
            let present = Set(table.rows.map(\.step))
            let missing = keep.subtracting(present).sorted()
            guard missing.isEmpty else {
                let have = present.sorted().prefix(20).map(String.init).joined(separator: ",") + (present.count > 20 ? ",…" : "")
                throw UsageError(description: "--steps \(Self.clip(steps!)): step\(missing.count == 1 ? "" : "s") "
                                 + "\(missing.prefix(20).map(String.init).joined(separator: ",")) \(missing.count == 1 ? "is" : "are") in none of "
                                 + "\(inputs.joined(separator: ", ")); they have steps \(have)")
            }
            table.rows = table.rows.filter { keep.contains($0.step) }
        }
        let svg = LayerStatsChart.svg(table, title: title)
        try RunOptionChecks.writing(output, flag: "output", { try AtomicFile.write(Array(svg.utf8), to: output) })
    }

    /// `--steps`: comma-separated step numbers ≥ 1, at least one.
    static func parseSteps(_ text: String) throws -> Set<Int> {
        let items = text.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
        var steps = Set<Int>()
        for item in items {
            guard let n = Int(item), n >= 1 else {
                throw UsageError(description: "--steps \(clip(text)): '\(clip(item))' is not a step number (an integer ≥ 1)")
            }
            steps.insert(n)
        }
        return steps
    }

    static func clip(_ s: String) -> String { QuotedValue.clip(s) }
}
