import XCTest
@testable import Model
@testable import Numerics

final class LayerStatsTests: XCTestCase {
    func testMagnitudesCoverEveryLayerAndDoNotChangeTheStep() throws {
        for kind in ResidualKind.allCases {
            let c = TrainConfig(model: Fixtures.config(kind), microbatches: 2, microbatchSize: 1, steps: 2, seed: 3)
            var a = try Trainer(config: c, data: .synthetic(seq: 4, vocab: 16, seed: 3), chunks: 2)
            var b = try Trainer(config: c, data: .synthetic(seq: 4, vocab: 16, seed: 3))
            let ra = a.step(recordMagnitudes: true), rb = b.step(recordMagnitudes: false)
            XCTAssertEqual(ra.loss, rb.loss)  // recording is observation only
            let mags = try XCTUnwrap(ra.magnitudes)
            XCTAssertEqual(mags.map(\.layer), Array(1...5))
            for m in mags { XCTAssertTrue(m.inputRMS > 0 && m.outputRMS > 0 && m.gradientRMS > 0, "\(kind) \(m)") }
        }
    }

    func testStandardInputMagnitudeIsTheResidualStream() throws {
        // For standard residuals h_{l+1} = h_l + f_l(h_l): layer 2's input RMS must equal RMS(h_1 + v_1).
        let c = Fixtures.config(.standard)
        let model = try Transformer(config: c)
        let p = model.initialParameters(seed: 1)
        let tape = model.chunks[0].forward(nil, microbatch: Fixtures.microbatches(c)[0], parameters: p).tape
        var h2 = tape.layers[0].sublayer.input
        h2.add(tape.layers[0].output)
        XCTAssertEqual(tape.layers[1].sublayer.input, h2)
    }

    func testCSVRoundTripAndErrors() throws {
        var t = LayerStatsTable()
        t.record(residual: .block, step: 7, [LayerMagnitude(layer: 1, inputRMS: 0.5, outputRMS: 0.25, gradientRMS: 1e-5),
                                             LayerMagnitude(layer: 2, inputRMS: 1.5, outputRMS: 2, gradientRMS: 3e-6)])
        XCTAssertEqual(try LayerStatsTable(csv: t.csv), t)
        XCTAssertThrowsError(try LayerStatsTable(csv: "a,b\n"))
        XCTAssertThrowsError(try LayerStatsTable(csv: LayerStatsTable.header + "\nblock,x,1,1,1,1\n"))
        let svg = LayerStatsChart.svg(t, title: "t<1>")
        XCTAssertTrue(svg.hasPrefix("<svg") && svg.contains("t&lt;1&gt;") && svg.contains("block step 7"))
        XCTAssertEqual(svg.components(separatedBy: "<polyline").count - 1, 3)  // one line per panel
    }

    /// Every value of a stats CSV is checked, and an error names the file, the line and the column.
    func testCSVValuesAreCheckedNamingFileLineAndColumn() {
        func problem(_ rows: String) -> String? {
            do { _ = try LayerStatsTable(csv: LayerStatsTable.header + "\n" + rows, file: "s.csv"); return nil } catch { return "\(error)" }
        }
        XCTAssertNil(problem("block,1,1,0,1e-30,3.4e38\n"))
        XCTAssertEqual(problem(""), "s.csv: no data rows after the header (nothing to plot)")
        XCTAssertEqual(problem("block,1,1,1,1,1\nblock,1,2,1,1\n"), "s.csv:3: expected 6 comma-separated fields, found 5: 'block,1,2,1,1'")
        XCTAssertEqual(problem("block,x,1,1,1,1\n"), "s.csv:2: column step: 'x' is not an integer")
        XCTAssertEqual(problem("block,0,1,1,1,1\n"), "s.csv:2: column step: '0' must be ≥ 1")
        XCTAssertEqual(problem("block,1,\(Int.max),1,1,1\n"), "s.csv:2: column layer: '\(Int.max)' must be in 1…\(LayerStatsTable.largestLayer)")
        XCTAssertEqual(problem("block,1,0,1,1,1\n"), "s.csv:2: column layer: '0' must be in 1…\(LayerStatsTable.largestLayer)")
        XCTAssertEqual(problem("block,1,1,inf,1,1\n")?.hasPrefix("s.csv:2: column input_rms: 'inf' is not finite"), true)
        XCTAssertEqual(problem("block,1,1,1,1e39,1\n")?.hasPrefix("s.csv:2: column output_rms: '1e39' is not finite"), true)
        XCTAssertEqual(problem("block,1,1,1,1,nan\n"), "s.csv:2: column grad_rms: 'nan' is NaN")
        XCTAssertEqual(problem("block,1,1,-1,1,1\n"), "s.csv:2: column input_rms: '-1' is negative; an RMS is ≥ 0")
        XCTAssertEqual(problem(",1,1,1,1,1\n"), "s.csv:2: column residual: '' is empty; give the residual kind")
        let long = String(repeating: "9", count: 10_000)
        XCTAssertLessThan(problem("block,\(long),1,1,1,1\n")?.count ?? 0, 400, "a huge value is quoted clipped")
    }

    /// A table built in code (not parsed) with extreme values still renders: no trap in the axis arithmetic.
    func testChartOfExtremeValuesDoesNotTrap() {
        let t = LayerStatsTable(rows: [
            .init(residual: "block", step: Int.max, magnitude: LayerMagnitude(layer: Int.max, inputRMS: .infinity, outputRMS: .nan, gradientRMS: 1)),
            .init(residual: "block", step: 1, magnitude: LayerMagnitude(layer: 1, inputRMS: 1, outputRMS: 1, gradientRMS: 1)),
        ])
        XCTAssertTrue(LayerStatsChart.svg(t, title: "x").hasSuffix("</svg>\n"))
    }

    func testFullResidualNeverCarriesAPartial() throws {
        let c = Fixtures.config(.full)
        let model = try Transformer(config: c, chunks: 5)
        let p = model.initialParameters(seed: 1)
        var act: HopActivations? = nil
        for (k, chunk) in model.chunks.dropLast().enumerated() {
            act = chunk.forward(act, microbatch: Fixtures.microbatches(c)[0], parameters: p).output
            XCTAssertNil(act!.partial)
            XCTAssertEqual(act!.blocks.count, k + 2)  // b_0 plus one block per layer so far
        }
    }
}
