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
        for path in inputs { table.rows += try LayerStatsTable(csv: InputFile.text(path)).rows }
        if let steps {
            let keep = Set(steps.split(separator: ",").compactMap { Int($0) })
            table.rows = table.rows.filter { keep.contains($0.step) }
        }
        try LayerStatsChart.svg(table, title: title).write(toFile: output, atomically: true, encoding: .utf8)
    }
}
