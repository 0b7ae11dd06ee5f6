import Foundation

/// A self-contained SVG of layer statistics: three panels (input RMS, output RMS, gradient RMS against layer, log
/// scale), one line per (residual, step). No plotting library: the project writes the SVG itself.
public enum LayerStatsChart {
    /// The SVG document for `table`, restricted to `steps` when given.
    public static func svg(_ table: LayerStatsTable, title: String) -> String {
        let series = Dictionary(grouping: table.rows) { "\($0.residual) step \($0.step)" }
        let keys = series.keys.sorted()
        let palette = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
        let panels: [(String, (LayerMagnitude) -> Float)] = [("input RMS (h_l)", { $0.inputRMS }),
                                                             ("output RMS (f_l(h_l))", { $0.outputRMS }),
                                                             ("gradient RMS (∂L/∂f_l)", { $0.gradientRMS })]
        let pw = 300.0, ph = 220.0, left = 60.0, top = 50.0, gap = 70.0
        let width = left + Double(panels.count) * (pw + gap), height = top + ph + 60 + Double(keys.count) * 16
        var s = """
        <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" font-family="sans-serif" font-size="11">
        <rect width="100%" height="100%" fill="white"/>
        <text x="\(left)" y="22" font-size="14">\(escape(title))</text>\n
        """
        // Clamped as the parser bounds a row's layer, so a table built in code cannot overflow the axis arithmetic.
        let maxLayer = Double(min(max(table.rows.map(\.magnitude.layer).max() ?? 1, 1), LayerStatsTable.largestLayer))
        for (pi, panel) in panels.enumerated() {
            let x0 = left + Double(pi) * (pw + gap)
            let values = table.rows.map { Double(panel.1($0.magnitude)) }.filter { $0 > 0 && $0.isFinite }
            let lo = log10(values.min() ?? 1e-3), hi = log10(values.max() ?? 1)
            let (ymin, ymax) = (floor(lo), max(ceil(hi), floor(lo) + 1))
            func px(_ layer: Int) -> Double { x0 + (Double(layer) - 1) / max(1, maxLayer - 1) * pw }
            func py(_ v: Float) -> Double { top + ph - (log10(Double(max(v, 1e-30))) - ymin) / (ymax - ymin) * ph }
            s += "<rect x=\"\(x0)\" y=\"\(top)\" width=\"\(pw)\" height=\"\(ph)\" fill=\"none\" stroke=\"#888\"/>\n"
            s += "<text x=\"\(x0)\" y=\"\(top - 8)\">\(escape(panel.0))</text>\n"
            var e = ymin
            while e <= ymax {
                let y = top + ph - (e - ymin) / (ymax - ymin) * ph
                s += "<line x1=\"\(x0)\" x2=\"\(x0 + pw)\" y1=\"\(y)\" y2=\"\(y)\" stroke=\"#eee\"/>"
                s += "<text x=\"\(x0 - 5)\" y=\"\(y + 4)\" text-anchor=\"end\">1e\(Int(e))</text>\n"
                e += 1
            }
            for l in stride(from: 1, through: Int(maxLayer), by: max(1, Int(maxLayer) / 8)) {
                s += "<text x=\"\(px(l))\" y=\"\(top + ph + 14)\" text-anchor=\"middle\">\(l)</text>\n"
            }
            s += "<text x=\"\(x0 + pw / 2)\" y=\"\(top + ph + 30)\" text-anchor=\"middle\">layer l</text>\n"
            for (ki, key) in keys.enumerated() {
                let pts = series[key]!.sorted { $0.magnitude.layer < $1.magnitude.layer }
                    .map { "\(px($0.magnitude.layer)),\(py(panel.1($0.magnitude)))" }.joined(separator: " ")
                let dash = key.hasPrefix("standard") ? "" : " stroke-dasharray=\"5,3\""
                s += "<polyline points=\"\(pts)\" fill=\"none\" stroke=\"\(palette[ki % palette.count])\" stroke-width=\"1.5\"\(dash)/>\n"
            }
        }
        for (ki, key) in keys.enumerated() {
            let y = top + ph + 50 + Double(ki) * 16
            s += "<line x1=\"\(left)\" x2=\"\(left + 24)\" y1=\"\(y - 4)\" y2=\"\(y - 4)\" stroke=\"\(palette[ki % palette.count])\" stroke-width=\"2\"/>"
            s += "<text x=\"\(left + 30)\" y=\"\(y)\">\(escape(key))</text>\n"
        }
        return s + "</svg>\n"
    }

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;")
    }
}
