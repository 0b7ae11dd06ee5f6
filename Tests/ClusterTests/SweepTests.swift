import Foundation
import XCTest
@testable import Cluster
@testable import Pipeline

/// `attnres sweep`: axis values, the O(L·d) vs O(N·d) slopes, the outputs, and plots that render and show the
/// CSV's numbers where they say.
final class SweepTests: XCTestCase {
    func testAxisValuesParseListsAndRanges() throws {
        XCTAssertEqual(try SweepValues.parse("8,16,32", flag: "--layers"), [8, 16, 32])
        XCTAssertEqual(try SweepValues.parse("8..128:x2", flag: "--layers"), [8, 16, 32, 64, 128])
        XCTAssertEqual(try SweepValues.parse("2..6", flag: "--ranks"), [2, 3, 4, 5, 6])
        XCTAssertEqual(try SweepValues.parse("2..10:+4,3", flag: "--ranks"), [2, 3, 6, 10])
        XCTAssertEqual(try SweepValues.parse("54", flag: "--layers"), [54])
        for bad in ["", "8,,16", "0", "8..4", "8..x", "8..128:x1", "8..128:*2", "-3"] {
            XCTAssertThrowsError(try SweepValues.parse(bad, flag: "--layers"), bad) {
                XCTAssertTrue("\($0)".hasPrefix("--layers '\(bad)'"), "\($0)")
            }
        }
    }

    func sweep(_ axes: [(SweepAxis, [Int])], fixed: Overrides = Overrides()) throws -> Sweep {
        try Sweep(base: try Topology.load(path: nil).0, fixed: fixed, axes: axes.map { ($0.0, $0.1) })
    }

    /// Full AttnRes grows linearly in L (slope → 1 as L ≫ the fixed standard hops), block is flat in L at fixed N.
    func testFullGrowsWithDepthAndBlockStaysFlat() throws {
        var o = Overrides()
        o.blocks = 8
        let s = try sweep([(.layers, [8, 16, 32, 64, 128])], fixed: o)
        XCTAssertEqual(s.points.count, 5 * 7)
        for panel in s.panels() {
            for series in panel.series {
                if series.name.hasPrefix("block") || series.name.hasPrefix("standard") {
                    if let slope = series.slope { XCTAssertEqual(slope, 0, accuracy: 1e-9, "\(panel.id) \(series.name)") }
                } else if panel.id == "bytes" || !series.name.hasSuffix("/none") {
                    XCTAssertGreaterThan(series.slope!, 0.85, "\(panel.id) \(series.name)")
                    XCTAssertLessThan(series.slope!, 1.05, "\(panel.id) \(series.name)")
                }
            }
        }
        // Between the last two depths full/cross-stage bytes grow by almost exactly the depth ratio.
        let full = s.points.filter { $0.variant == "full/cross-stage" }.map(\.predictedPayloadBytesPerStep)
        XCTAssertEqual(Double(full[4]) / Double(full[3]), 2, accuracy: 0.05)
    }

    /// A second axis splits the block series by its value; standard and full, which ignore blocks, stay one series each.
    func testSecondAxisSplitsTheSeries() throws {
        let s = try sweep([(.layers, [8, 16, 32]), (.blocks, [2, 4])])
        XCTAssertEqual(s.points.count, 3 * (1 + 3 + 3 * 2))
        let names = s.panels()[0].series.map(\.name)
        XCTAssertEqual(names, ["standard/none", "full/none", "full/cross-stage", "full/received-only",
                               "block/none blocks=2", "block/cross-stage blocks=2", "block/received-only blocks=2",
                               "block/none blocks=4", "block/cross-stage blocks=4", "block/received-only blocks=4"])
        XCTAssertTrue(s.panels()[0].series.allSatisfy { $0.predicted.map(\.x) == [8, 16, 32] }, "every series spans the first axis")
        XCTAssertTrue(s.csv().contains("\n8,,4,2,8,64,full,none,"), "blocks is empty for residuals without blocks:\n\(s.csv())")
    }

    func testBadSweepsNameTheProblem() throws {
        XCTAssertThrowsError(try sweep([])) { XCTAssertEqual($0 as? SweepError, .noAxis) }
        XCTAssertThrowsError(try sweep([(.layers, [8, 16]), (.blocks, [2, 4]), (.hidden, [8, 16])])) {
            XCTAssertEqual($0 as? SweepError, .tooManyAxes(["--layers", "--blocks", "--hidden"]))
        }
        // L = 4 cannot fill 4 × 2 chunks: the error names the point and the key.
        XCTAssertThrowsError(try sweep([(.layers, [4, 8])])) {
            XCTAssertTrue("\($0)".hasPrefix("sweep point layers=4 "), "\($0)")
            XCTAssertTrue("\($0)".contains("model.layers (set by --layers)"), "\($0)")
        }
    }

    /// The real command: a two-point-per-variant sweep, part of it measured on worker processes; the SVG renders
    /// with rsvg-convert, its dots are the CSV's numbers at the places the panel's axes give, and the JSON matches.
    func testMeasuredSweepWritesPlotsThatShowTheCSV() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("attnres-sweep-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let csv = dir.appendingPathComponent("s.csv").path, svg = dir.appendingPathComponent("s.svg").path
        let json = dir.appendingPathComponent("s.json").path, png = dir.appendingPathComponent("s.png").path
        // 10 MB per step: standard, block and the smaller full points run; the largest full points are predicted only.
        let r = try CLIProcess.run(["sweep", "--layers", "8,16,32", "--blocks", "4", "--ranks", "2", "--virtual", "2", "--hidden", "32",
                                    "--steps", "1", "--measure-up-to", "3000000", "--csv", csv, "--svg", svg, "--json", json])
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains("fitted slopes"), r.stdout)
        XCTAssertEqual(r.stderr, "", "nothing but the report when standard error is not a terminal")
        CLIProcess.assertNoOrphans()

        let rows = try String(contentsOfFile: csv, encoding: .utf8).split(separator: "\n").map { $0.split(separator: ",", omittingEmptySubsequences: false).map(String.init) }
        XCTAssertEqual(rows[0], Sweep.csvHeader)
        let body = rows.dropFirst()
        XCTAssertEqual(body.count, 3 * 7)
        let measured = body.filter { !$0[10].isEmpty }
        XCTAssertGreaterThan(measured.count, 10)
        XCTAssertLessThan(measured.count, body.count, "some points stay predicted only")
        for row in measured { XCTAssertEqual(row[10], row[8], "\(row)"); XCTAssertEqual(row[11], row[9], "\(row)"); XCTAssertEqual(row[12], "true") }

        let render = try CLIProcess.runTool("rsvg-convert", [svg, "-o", png])
        XCTAssertEqual(render.status, 0, "rsvg-convert (Debian's librsvg2-bin, installed by make deps): \(render.stderr)")
        XCTAssertGreaterThan((try? FileManager.default.attributesOfItem(atPath: png)[.size] as? Int) ?? 0, 1000)

        let text = try String(contentsOfFile: svg, encoding: .utf8)
        for (panel, column, measuredColumn) in [("bytes", 8, 10), ("cache", 9, 11)] {
            let g = try XCTUnwrap(Self.panel(panel, in: text))
            let dots = Self.circles(in: g.body)
            let expected = body.filter { Int($0[column])! > 0 }
            XCTAssertEqual(dots.filter { $0.kind == "predicted" }.count, expected.count, panel)
            XCTAssertEqual(dots.filter { $0.kind == "measured" }.count, measured.filter { Int($0[measuredColumn])! > 0 }.count, panel)
            for row in expected {
                let series = (row[6] == "block" ? "block(\(row[1]))" : row[6]) + "/" + row[7]
                let dot = try XCTUnwrap(dots.first { $0.kind == "predicted" && $0.series == series && $0.x == Int(row[0]) }, "\(panel) \(row)")
                XCTAssertEqual(dot.y, Int(row[column]), "\(panel) \(row)")
                // The dot's position, read back through the panel's axes, is the CSV's value.
                XCTAssertEqual(g.value(px: dot.cx), Double(row[0])!, accuracy: Double(row[0])! * 0.01, "\(panel) \(row)")
                XCTAssertEqual(g.value(py: dot.cy), Double(row[column])!, accuracy: Double(row[column])! * 0.01, "\(panel) \(row)")
            }
        }

        struct Doc: Decodable {
            struct Numbers: Decodable, Equatable { let payload_bytes_per_step: Int; let peak_cache_bytes: Int }
            struct Point: Decodable { let layers: Int; let blocks: Int?; let ranks: Int; let virtual: Int; let residual: String; let cache: String
                                      let predicted: Numbers; let measured: Numbers? }
            let points: [Point]
        }
        let doc = try JSONDecoder().decode(Doc.self, from: Data(contentsOf: URL(fileURLWithPath: json)))
        XCTAssertEqual(doc.points.count, body.count)
        for (p, row) in zip(doc.points, body) {
            XCTAssertEqual("\(p.layers)", row[0]); XCTAssertEqual(p.blocks.map(String.init) ?? "", row[1]); XCTAssertEqual(p.residual, row[6])
            XCTAssertEqual("\(p.predicted.payload_bytes_per_step)", row[8])
            if row[10].isEmpty { XCTAssertNil(p.measured) } else { XCTAssertEqual(p.measured, p.predicted) }
        }
        XCTAssertTrue(try String(contentsOfFile: json, encoding: .utf8).contains("\"measured\" : null"), "unmeasured points say null")
    }

    /// The plots shipped in docs/sweeps render, and every dot of each is a number of the CSV beside it, at the x of
    /// its row, placed where the panel's axes put that number.
    func testDocumentedPlotsRenderAndShowTheirCSV() throws {
        let dir = packageRoot.appendingPathComponent("docs/sweeps")
        let names = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".svg") }.sorted()
        XCTAssertEqual(names, ["layers-8-128.svg", "paper-blocks.svg", "paper-layers.svg"])
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("attnres-plot-\(UUID().uuidString).png").path
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        for name in names {
            let svg = dir.appendingPathComponent(name).path
            let render = try CLIProcess.runTool("rsvg-convert", [svg, "-o", scratch])
            XCTAssertEqual(render.status, 0, "\(name): \(render.stderr)")
            let rows = try String(contentsOfFile: svg.replacingOccurrences(of: ".svg", with: ".csv"), encoding: .utf8)
                .split(separator: "\n").map { $0.split(separator: ",", omittingEmptySubsequences: false).map(String.init) }
            let text = try String(contentsOfFile: svg, encoding: .utf8)
            for (panel, column, measuredColumn) in [("bytes", 8, 10), ("cache", 9, 11)] {
                let g = try XCTUnwrap(Self.panel(panel, in: text), name)
                let axis = try XCTUnwrap(Self.attribute("data-x-axis", g.body), name)
                let x = try XCTUnwrap(rows[0].firstIndex(of: axis), "\(name): axis \(axis)")
                let dots = Self.circles(in: g.body)
                XCTAssertFalse(dots.isEmpty, name)
                for dot in dots {
                    let col = dot.kind == "measured" ? measuredColumn : column
                    // A row without the axis value (blocks of standard, full) stands for every x.
                    XCTAssertTrue(rows.dropFirst().contains { ($0[x].isEmpty || Int($0[x]) == dot.x) && Int($0[col]) == dot.y },
                                  "\(name) \(panel): dot \(dot) is no row of the CSV")
                    XCTAssertEqual(g.value(px: dot.cx), Double(dot.x), accuracy: Double(dot.x) * 0.01, "\(name) \(dot)")
                    XCTAssertEqual(g.value(py: dot.cy), Double(dot.y), accuracy: Double(dot.y) * 0.01, "\(name) \(dot)")
                }
                let plotted = Set(dots.filter { $0.kind == "predicted" }.map(\.y))
                for row in rows.dropFirst() where Int(row[column])! > 0 { XCTAssertTrue(plotted.contains(Int(row[column])!), "\(name) \(panel): \(row) not plotted") }
            }
        }
    }

    struct Panel {
        let body: String, lx0: Double, lx1: Double, ly0: Double, ly1: Double, px0: Double, px1: Double, py0: Double, py1: Double
        func value(px: Double) -> Double { pow(10, lx0 + (px - px0) / (px1 - px0) * (lx1 - lx0)) }
        func value(py: Double) -> Double { pow(10, ly0 + (py - py0) / (py1 - py0) * (ly1 - ly0)) }
    }

    static func attribute(_ name: String, _ tag: String) -> String? {
        guard let r = tag.range(of: " \(name)=\"") else { return nil }
        return String(tag[r.upperBound...].prefix { $0 != "\"" })
    }

    static func panel(_ id: String, in svg: String) -> Panel? {
        guard let start = svg.range(of: "<g class=\"panel\" data-panel=\"\(id)\""),
              let end = svg.range(of: "</g>", range: start.upperBound..<svg.endIndex) else { return nil }
        let tag = String(svg[start.lowerBound..<(svg[start.lowerBound...].firstIndex(of: ">") ?? end.lowerBound)])
        func n(_ a: String) -> Double { Double(attribute(a, tag) ?? "") ?? .nan }
        return Panel(body: String(svg[start.lowerBound..<end.lowerBound]), lx0: n("data-lx0"), lx1: n("data-lx1"), ly0: n("data-ly0"),
                     ly1: n("data-ly1"), px0: n("data-px0"), px1: n("data-px1"), py0: n("data-py0"), py1: n("data-py1"))
    }

    static func circles(in body: String) -> [(kind: String, series: String, x: Int, y: Int, cx: Double, cy: Double)] {
        body.components(separatedBy: "<circle ").dropFirst().compactMap { tag in
            guard let kind = attribute("class", " " + tag), let series = attribute("data-series", tag), let x = attribute("data-x", tag).flatMap(Int.init),
                  let y = attribute("data-y", tag).flatMap(Int.init), let cx = attribute("cx", tag).flatMap(Double.init),
                  let cy = attribute("cy", tag).flatMap(Double.init) else { return nil }
            return (kind, series, x, y, cx, cy)
        }
    }
}
