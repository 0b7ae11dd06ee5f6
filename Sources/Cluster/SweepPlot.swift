import Foundation

/// One line of a plot: the predicted points (drawn as a line with dots) and any measured points (rings on it).
public struct PlotSeries: Sendable {
    public var name: String
    public var predicted: [(x: Double, y: Double)]
    public var measured: [(x: Double, y: Double)]

    public init(name: String, predicted: [(x: Double, y: Double)], measured: [(x: Double, y: Double)]) {
        self.name = name; self.predicted = predicted; self.measured = measured
    }

    /// The least-squares slope of log y against log x over the predicted points with y > 0: the exponent k of
    /// y ∝ x^k (1 = linear growth, 0 = flat). Nil with fewer than two distinct x.
    public var slope: Double? {
        let pts = predicted.filter { $0.x > 0 && $0.y > 0 }.map { (log10($0.x), log10($0.y)) }
        guard Set(pts.map(\.0)).count >= 2 else { return nil }
        let mx = pts.map(\.0).reduce(0, +) / Double(pts.count), my = pts.map(\.1).reduce(0, +) / Double(pts.count)
        let sxy = pts.reduce(0) { $0 + ($1.0 - mx) * ($1.1 - my) }, sxx = pts.reduce(0) { $0 + ($1.0 - mx) * ($1.0 - mx) }
        return sxy / sxx
    }

    /// The slope to two decimals, "–" when there is none; a rounding residue below 0.005 prints as 0.00, not -0.00.
    public var formattedSlope: String { slope.map { String(format: "%.2f", abs($0) < 0.005 ? 0 : $0) } ?? "–" }
}

/// One log-log panel of a sweep plot. `id` names it in the SVG (`data-panel`), so tests and tools can find it.
public struct PlotPanel: Sendable {
    public var id: String, title: String, yLabel: String
    public var series: [PlotSeries]
    public init(id: String, title: String, yLabel: String, series: [PlotSeries]) {
        self.id = id; self.title = title; self.yLabel = yLabel; self.series = series
    }
}

/// Log-log SVG panels stacked vertically, with a legend per panel giving each series' fitted slope. Every plotted
/// point carries its values (`data-series`, `data-x`, `data-y`) and every panel its x axis (`data-x-axis`) and axis
/// mapping (`data-lx0` …: the
/// log10 bounds and the pixels they map to), so a reader can check that a dot sits where its numbers say.
/// Series whose values are all 0 (no cache) cannot sit on a log axis: the legend lists them as 0.
public enum SweepPlot {
    static let width = 980.0, panelHeight = 380.0, left = 90.0, plotWidth = 560.0, top = 50.0, plotHeight = 290.0
    static let palette = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]

    public static func svg(title: String, xLabel: String, panels: [PlotPanel]) -> String {
        let height = 40 + panelHeight * Double(panels.count)
        var out = """
        <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" viewBox="0 0 \(Int(width)) \(Int(height))" font-family="sans-serif" font-size="12">
        <rect width="100%" height="100%" fill="white"/>
        <text x="\(Int(width / 2))" y="22" text-anchor="middle" font-size="14">\(escape(title))</text>

        """
        for (i, panel) in panels.enumerated() { out += render(panel, xLabel: xLabel, originY: 30 + panelHeight * Double(i)) }
        return out + "</svg>\n"
    }

    static func render(_ panel: PlotPanel, xLabel: String, originY: Double) -> String {
        let all = panel.series.flatMap { $0.predicted + $0.measured }
        let xs = all.map(\.x).filter { $0 > 0 }, ys = all.map(\.y).filter { $0 > 0 }
        var lx0 = log10(xs.min() ?? 1), lx1 = log10(xs.max() ?? 10)
        if lx1 - lx0 < 1e-9 { lx0 -= 0.5; lx1 += 0.5 }
        let ly0 = floor(log10(ys.min() ?? 1)), ly1 = max(ly0 + 1, ceil(log10(ys.max() ?? 10)))
        let px0 = left, px1 = left + plotWidth, py0 = originY + top + plotHeight, py1 = originY + top
        func px(_ x: Double) -> Double { px0 + (log10(x) - lx0) / (lx1 - lx0) * (px1 - px0) }
        func py(_ y: Double) -> Double { py0 + (log10(y) - ly0) / (ly1 - ly0) * (py1 - py0) }
        func f(_ v: Double) -> String { String(format: "%.2f", v) }
        var s = "<g class=\"panel\" data-panel=\"\(panel.id)\" data-x-axis=\"\(escape(xLabel))\" data-lx0=\"\(lx0)\" data-lx1=\"\(lx1)\" data-ly0=\"\(ly0)\" data-ly1=\"\(ly1)\" "
            + "data-px0=\"\(px0)\" data-px1=\"\(px1)\" data-py0=\"\(py0)\" data-py1=\"\(py1)\">\n"
        s += "<text x=\"\(f(px0))\" y=\"\(f(originY + 30))\" font-size=\"13\">\(escape(panel.title))</text>\n"
        s += "<rect x=\"\(f(px0))\" y=\"\(f(py1))\" width=\"\(f(plotWidth))\" height=\"\(f(plotHeight))\" fill=\"none\" stroke=\"#444\"/>\n"
        // y grid at every decade, x ticks at every swept value.
        for d in Int(ly0)...Int(ly1) {
            let y = py(pow(10, Double(d)))
            s += "<line x1=\"\(f(px0))\" x2=\"\(f(px1))\" y1=\"\(f(y))\" y2=\"\(f(y))\" stroke=\"#ddd\"/>"
            s += "<text x=\"\(f(px0 - 6))\" y=\"\(f(y + 4))\" text-anchor=\"end\">1e\(d)</text>\n"
        }
        for x in Set(xs).sorted() {
            let xp = px(x)
            s += "<line x1=\"\(f(xp))\" x2=\"\(f(xp))\" y1=\"\(f(py0))\" y2=\"\(f(py1))\" stroke=\"#eee\"/>"
            s += "<text x=\"\(f(xp))\" y=\"\(f(py0 + 16))\" text-anchor=\"middle\">\(x == x.rounded() ? String(Int(x)) : String(x))</text>\n"
        }
        s += "<text x=\"\(f((px0 + px1) / 2))\" y=\"\(f(py0 + 34))\" text-anchor=\"middle\">\(escape(xLabel)) (log scale)</text>\n"
        s += "<text transform=\"translate(\(f(px0 - 62)),\(f((py0 + py1) / 2))) rotate(-90)\" text-anchor=\"middle\">\(escape(panel.yLabel)) (log scale)</text>\n"
        var legendY = py1 + 6
        for (i, series) in panel.series.enumerated() {
            let color = palette[i % palette.count]
            let name = escape(series.name)
            let positive = series.predicted.filter { $0.x > 0 && $0.y > 0 }
            let legend: String
            if positive.isEmpty {
                legend = "\(name): 0 (not on a log axis)"
            } else {
                legend = "\(name): slope \(series.formattedSlope)"
                let line = positive.map { "\(f(px($0.x))),\(f(py($0.y)))" }.joined(separator: " ")
                s += "<polyline class=\"series\" data-series=\"\(name)\" data-slope=\"\(series.slope.map { String($0) } ?? "")\" points=\"\(line)\" fill=\"none\" stroke=\"\(color)\" stroke-width=\"1.6\"/>\n"
                for p in positive {
                    s += "<circle class=\"predicted\" data-series=\"\(name)\" data-x=\"\(Int(p.x))\" data-y=\"\(Int(p.y))\" cx=\"\(f(px(p.x)))\" cy=\"\(f(py(p.y)))\" r=\"2.5\" fill=\"\(color)\"/>\n"
                }
                for p in series.measured where p.x > 0 && p.y > 0 {
                    s += "<circle class=\"measured\" data-series=\"\(name)\" data-x=\"\(Int(p.x))\" data-y=\"\(Int(p.y))\" cx=\"\(f(px(p.x)))\" cy=\"\(f(py(p.y)))\" r=\"5\" fill=\"none\" stroke=\"\(color)\" stroke-width=\"1.4\"/>\n"
                }
            }
            legendY += 16
            s += "<line x1=\"\(f(px1 + 16))\" x2=\"\(f(px1 + 36))\" y1=\"\(f(legendY - 4))\" y2=\"\(f(legendY - 4))\" stroke=\"\(color)\" stroke-width=\"2\"/>"
            s += "<text class=\"legend\" x=\"\(f(px1 + 42))\" y=\"\(f(legendY))\">\(legend)</text>\n"
        }
        legendY += 20
        s += "<text x=\"\(f(px1 + 16))\" y=\"\(f(legendY))\" fill=\"#555\">line + dots: predicted; rings: measured</text>\n"
        return s + "</g>\n"
    }

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
            .replacingOccurrences(of: "\"", with: "&quot;")
    }
}
