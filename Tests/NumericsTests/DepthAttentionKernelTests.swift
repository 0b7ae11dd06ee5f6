import Foundation
import XCTest
@testable import Numerics
import CKernels

/// The fast depth-attention kernels (fused per-token forward, tiled backward, tree reductions) against their plain
/// reference loops (`DepthAttentionReference.swift`), with the tolerance of docs/model.md: ‖a − b‖∞ / ‖b‖∞ ≤ 1e-5 per
/// output tensor. Shapes cover d below, at and between the SIMD widths (1, 6, 8, 16, 37, 64, 256), K = 1 … 9 and T = 1,
/// and (`testEveryKernelOnAwkwardShapes`) every combination of d ∈ {1, 7, 15, 16, 17, 33, 64, 100, 256}, K = 1 … 17 and
/// n = 1 … 5. Every test runs each kernel this CPU has (`DepthKernel.available`: the baseline Swift kernel always, the
/// AVX2 + FMA and AVX-512F ones where the CPU has them; CI's CPU may lack them, and then says so in the log).
final class DepthAttentionKernelTests: XCTestCase {
    static let tolerance: Float = 1e-5

    var kernels: [DepthKernel] {
        let k = DepthKernel.available
        for missing in DepthKernel.allCases where !k.contains(missing) {
            print("DepthAttentionKernelTests: this CPU cannot run the \(missing.rawValue) kernel; it is not tested here")
        }
        return k
    }

    func relativeError(_ a: [Float], _ b: [Float]) -> Float {
        precondition(a.count == b.count)
        var diff: Float = 0, scale: Float = 0
        for i in 0..<a.count { diff = max(diff, abs(a[i] - b[i])); scale = max(scale, abs(b[i])) }
        return diff / max(scale, .leastNormalMagnitude)
    }

    /// ‖a − b‖∞ / max(‖b‖∞, 1): for unit-scale inputs an output that cancels below 1 (a sum of K·d signed terms
    /// of order 1, e.g. h or dw at d = 1 and K = 17) is held to the tolerance in absolute terms (docs/model.md).
    func mixedError(_ a: [Float], _ b: [Float]) -> Float {
        precondition(a.count == b.count)
        var diff: Float = 0, scale: Float = 1
        for i in 0..<a.count { diff = max(diff, abs(a[i] - b[i])); scale = max(scale, abs(b[i])) }
        return diff / scale
    }

    static let shapes: [(n: Int, d: Int, k: Int)] = [
        (1, 1, 1), (3, 6, 2), (4, 8, 3), (5, 16, 4), (7, 37, 5), (64, 64, 5), (2, 256, 9), (9, 64, 1), (1, 64, 3),
    ]

    func testFusedForwardMatchesPlainLoops() {
        for kernel in kernels {
        for (index, shape) in Self.shapes.enumerated() {
            var rng = TestRandom(UInt64(100 + index))
            let sources = (0..<shape.k).map { i in rng.tensor([shape.n, shape.d], scale: 1 + Float(i)) }
            let w = rng.tensor([shape.d], scale: 2)
            let fast = DepthAttention.forward(query: w, sources: sources, rstd: [], kernel: kernel)
            let ref = DepthAttention.forwardReference(query: w, sources: sources)
            let label = "\(kernel.rawValue) n=\(shape.n) d=\(shape.d) K=\(shape.k)"
            XCTAssertLessThanOrEqual(relativeError(fast.0.data, ref.0.data), Self.tolerance, "h, \(label)")
            XCTAssertLessThanOrEqual(relativeError(fast.1.logits, ref.1.logits), Self.tolerance, "z, \(label)")
            XCTAssertLessThanOrEqual(relativeError(fast.1.alpha, ref.1.alpha), Self.tolerance, "α, \(label)")
            XCTAssertLessThanOrEqual(relativeError(fast.1.rstd, ref.1.rstd), Self.tolerance, "rstd, \(label)")
            XCTAssertEqual(fast.0.shape, [shape.n, shape.d])
        }
        }
    }

    func testTiledBackwardMatchesPlainLoops() {
        for kernel in kernels {
        for (index, shape) in Self.shapes.enumerated() {
            var rng = TestRandom(UInt64(200 + index))
            let sources = (0..<shape.k).map { _ in rng.tensor([shape.n, shape.d]) }
            let w = rng.tensor([shape.d], scale: 2), dh = rng.tensor([shape.n, shape.d])
            let saved = DepthAttention.forward(query: w, sources: sources, rstd: [], kernel: kernel).1
            // accumulate into non-zero buffers: backward adds, it never overwrites
            let start = (0..<shape.k).map { _ in rng.tensor([shape.n, shape.d]) }, dwStart = rng.tensor([shape.d])
            var fast = start, fastW = dwStart, ref = start, refW = dwStart
            DepthAttention.backward(dh, query: w, sources: sources, saved: saved, dsources: &fast, dquery: &fastW,
                                    kernel: kernel)
            DepthAttention.backwardReference(dh, query: w, sources: sources, saved: saved, dsources: &ref, dquery: &refW)
            let label = "\(kernel.rawValue) n=\(shape.n) d=\(shape.d) K=\(shape.k)"
            for i in 0..<shape.k {
                XCTAssertLessThanOrEqual(relativeError(fast[i].data, ref[i].data), Self.tolerance, "dv_\(i), \(label)")
            }
            XCTAssertLessThanOrEqual(relativeError(fastW.data, refW.data), Self.tolerance, "dw, \(label)")
            // the increments themselves (not only the sums with the start values) agree
            let incFast = (0..<shape.k).flatMap { i in (0..<fast[i].count).map { fast[i].data[$0] - start[i].data[$0] } }
            let incRef = (0..<shape.k).flatMap { i in (0..<ref[i].count).map { ref[i].data[$0] - start[i].data[$0] } }
            XCTAssertLessThanOrEqual(relativeError(incFast, incRef), Self.tolerance, "dv increments, \(label)")
            // written instead of accumulated: bitwise the same kernel into zero-filled buffers, whatever was there
            var zeroed = sources.map { Tensor(zeros: $0.shape) }, written = sources.map { Tensor(repeating: .nan, shape: $0.shape) }
            var zw = Tensor(zeros: [shape.d]), ww = Tensor(zeros: [shape.d])
            DepthAttention.backward(dh, query: w, sources: sources, saved: saved, dsources: &zeroed, dquery: &zw, kernel: kernel)
            DepthAttention.backward(dh, query: w, sources: sources, saved: saved, dsources: &written, dquery: &ww,
                                    accumulate: false, kernel: kernel)
            XCTAssertEqual(written.flatMap { $0.data.map(\.bitPattern) }, zeroed.flatMap { $0.data.map(\.bitPattern) }, label)
            XCTAssertEqual(ww, zw, label)
        }
        }
    }

    func testWeightedSumMatchesPlainLoops() {
        // `mix` (two-phase phase 2): bitwise the plain loop for the baseline kernel, within tolerance for AVX2 (FMA),
        // both accumulating into a non-zero buffer and starting from 0 without reading it.
        for kernel in kernels {
            for (index, shape) in Self.shapes.enumerated() {
                var rng = TestRandom(UInt64(500 + index))
                let sources = (0..<shape.k).map { _ in rng.tensor([shape.n, shape.d]) }
                let weights = rng.tensor([shape.k * shape.n]).data, start = rng.tensor([shape.n, shape.d]).data
                var ref = start, fast = start, fresh = [Float](repeating: .nan, count: start.count)
                var zeros = [Float](repeating: 0, count: start.count)
                weights.withUnsafeBufferPointer { wp in
                    ref.withUnsafeMutableBufferPointer {
                        DepthAttention.mixReference(sources: sources, weights: wp, into: $0.baseAddress!, rows: shape.n, cols: shape.d)
                    }
                    zeros.withUnsafeMutableBufferPointer {
                        DepthAttention.mixReference(sources: sources, weights: wp, into: $0.baseAddress!, rows: shape.n, cols: shape.d)
                    }
                    fast.withUnsafeMutableBufferPointer {
                        DepthAttention.mix(sources: sources, weights: wp, into: $0.baseAddress!, rows: shape.n, cols: shape.d,
                                           kernel: kernel)
                    }
                    fresh.withUnsafeMutableBufferPointer {
                        DepthAttention.mix(sources: sources, weights: wp, into: $0.baseAddress!, rows: shape.n, cols: shape.d,
                                           accumulate: false, kernel: kernel)
                    }
                }
                let label = "\(kernel.rawValue) n=\(shape.n) d=\(shape.d) K=\(shape.k)"
                if kernel == .baseline {
                    XCTAssertEqual(fast.map(\.bitPattern), ref.map(\.bitPattern), label)
                    XCTAssertEqual(fresh.map(\.bitPattern), zeros.map(\.bitPattern), label)
                } else {
                    XCTAssertLessThanOrEqual(relativeError(fast, ref), Self.tolerance, label)
                    XCTAssertLessThanOrEqual(relativeError(fresh, zeros), Self.tolerance, label)
                }
            }
        }
    }

    func testCachedKeyStatisticsAreBitwiseTheFusedOnes() {
        // Per kernel, `rstd` (the cache of a completed block's key statistics) holds exactly what the fused forward
        // computes for an uncached source, so caching changes no bit of the output or of the backward.
        for kernel in kernels {
            for d in [1, 6, 16, 17, 37, 64, 100, 256] {
                var rng = TestRandom(UInt64(600 + d))
                let sources = (0..<4).map { _ in rng.tensor([5, d], scale: 2) }, w = rng.tensor([d]), dh = rng.tensor([5, d])
                let ref = DepthAttention.forward(query: w, sources: sources, rstd: [], kernel: kernel)
                let cached = [nil] + sources.dropFirst().dropLast().map { DepthAttention.rstd($0, kernel: kernel) }
                let got = DepthAttention.forward(query: w, sources: sources, rstd: cached, kernel: kernel)
                XCTAssertEqual(got.0.data.map(\.bitPattern), ref.0.data.map(\.bitPattern), "\(kernel.rawValue) d=\(d)")
                XCTAssertEqual(got.1.rstd.map(\.bitPattern), ref.1.rstd.map(\.bitPattern), "\(kernel.rawValue) d=\(d)")
                var ds1 = sources.map { Tensor(zeros: $0.shape) }, ds2 = ds1, dw1 = Tensor(zeros: [d]), dw2 = dw1
                DepthAttention.backward(dh, query: w, sources: sources, saved: ref.1, dsources: &ds1, dquery: &dw1, kernel: kernel)
                DepthAttention.backward(dh, query: w, sources: sources, saved: got.1, dsources: &ds2, dquery: &dw2, kernel: kernel)
                XCTAssertEqual(ds1, ds2, "\(kernel.rawValue) d=\(d)"); XCTAssertEqual(dw1, dw2, "\(kernel.rawValue) d=\(d)")
            }
        }
    }

    func testEachCKernelIsADifferentCodePath() throws {
        // The comparisons above would pass trivially if a kernel request silently ran another kernel. FMA, 8- and
        // 16-lane sums and AVX-512's exp round differently, so on a realistic shape some output bit differs between
        // any two kernels (forward and backward).
        guard DepthKernel.avx2.isAvailable else { throw XCTSkip("this CPU has no AVX2 + FMA") }
        var rng = TestRandom(700)
        let all = kernels
        let src = (0..<5).map { _ in rng.tensor([64, 64]) }, q = rng.tensor([64], scale: 2), g = rng.tensor([64, 64])
        let outs = all.map { DepthAttention.forward(query: q, sources: src, rstd: [], kernel: $0) }
        let grads = all.map { kernel -> [UInt32] in
            var ds = src.map { Tensor(zeros: $0.shape) }, dq = Tensor(zeros: [64])
            DepthAttention.backward(g, query: q, sources: src, saved: outs[0].1, dsources: &ds, dquery: &dq, kernel: kernel)
            return ds.flatMap { $0.data.map(\.bitPattern) }
        }
        for a in all.indices { for b in all.indices where a < b {
            XCTAssertNotEqual(outs[a].0.data.map(\.bitPattern), outs[b].0.data.map(\.bitPattern), "\(all[a]) vs \(all[b])")
            XCTAssertNotEqual(grads[a], grads[b], "\(all[a]) vs \(all[b])")
        }}
        let sources = (0..<5).map { _ in rng.tensor([64, 64]) }, w = rng.tensor([64], scale: 2), dh = rng.tensor([64, 64])
        let base = DepthAttention.forward(query: w, sources: sources, rstd: [], kernel: .baseline)
        let avx = DepthAttention.forward(query: w, sources: sources, rstd: [], kernel: .avx2)
        XCTAssertNotEqual(base.0.data.map(\.bitPattern), avx.0.data.map(\.bitPattern))
        var d1 = sources.map { Tensor(zeros: $0.shape) }, d2 = d1, w1 = Tensor(zeros: [64]), w2 = w1
        DepthAttention.backward(dh, query: w, sources: sources, saved: base.1, dsources: &d1, dquery: &w1, kernel: .baseline)
        DepthAttention.backward(dh, query: w, sources: sources, saved: base.1, dsources: &d2, dquery: &w2, kernel: .avx2)
        XCTAssertNotEqual(d1.flatMap { $0.data.map(\.bitPattern) }, d2.flatMap { $0.data.map(\.bitPattern) })
        // and a wrong C-kernel result would be caught: the tolerance check fails when one source's key path is dropped
        for kernel in all where kernel != .baseline {
            var broken = base.1
            for r in 0..<64 { broken.rstd[r] = 0 }
            var d3 = sources.map { Tensor(zeros: $0.shape) }, w3 = Tensor(zeros: [64])
            DepthAttention.backward(dh, query: w, sources: sources, saved: broken, dsources: &d3, dquery: &w3, kernel: kernel)
            XCTAssertGreaterThan(relativeError(d3[0].data, d1[0].data), 100 * Self.tolerance, kernel.rawValue)
        }
    }

    func testKernelChoiceFromTheEnvironment() {
        var messages: [String] = []
        let automatic = DepthKernel.choose(environment: nil, report: { messages.append($0) })
        // the widest kernel the CPU has
        XCTAssertEqual(automatic, DepthKernel.avx512.isAvailable ? .avx512 : DepthKernel.avx2.isAvailable ? .avx2 : .baseline)
        XCTAssertEqual(DepthKernel.choose(environment: "", report: { messages.append($0) }), automatic)
        XCTAssertEqual(DepthKernel.choose(environment: "baseline", report: { messages.append($0) }), .baseline)
        XCTAssertTrue(messages.isEmpty)
        XCTAssertEqual(DepthKernel.choose(environment: "sse9", report: { messages.append($0) }), automatic)
        XCTAssertEqual(messages.count, 1)
        XCTAssertTrue(messages[0].contains("ATTNRES_DEPTH_KERNEL=sse9") && messages[0].contains("baseline, avx2, avx512"),
                      messages[0])
        // every kernel can be pinned; one this CPU lacks falls back to the automatic choice, saying what is missing
        for (kernel, lack) in [(DepthKernel.avx2, "lacks AVX2 or FMA"), (.avx512, "lacks AVX-512F")] {
            messages = []
            let got = DepthKernel.choose(environment: kernel.rawValue, report: { messages.append($0) })
            if kernel.isAvailable {
                XCTAssertEqual(got, kernel); XCTAssertTrue(messages.isEmpty, "\(messages)")
            } else {
                XCTAssertEqual(got, automatic); XCTAssertEqual(messages.count, 1)
                XCTAssertTrue(messages[0].contains(lack) && messages[0].contains("using \(automatic)"), messages[0])
            }
        }
        XCTAssertEqual(DepthKernel.available.first, .baseline)
        XCTAssertTrue(DepthKernel.available.contains(automatic))
    }

    func testReferenceCatchesAWrongKernel() {
        // The comparison above is sharp enough to see a real mistake: dropping the key path of one source
        // (a plausible tiling bug) is far outside the tolerance.
        var rng = TestRandom(300)
        let sources = (0..<3).map { _ in rng.tensor([5, 16]) }, w = rng.tensor([16], scale: 2), dh = rng.tensor([5, 16])
        var saved = DepthAttention.forward(query: w, sources: sources).1
        var good = sources.map { Tensor(zeros: $0.shape) }, goodW = Tensor(zeros: [16])
        DepthAttention.backward(dh, query: w, sources: sources, saved: saved, dsources: &good, dquery: &goodW)
        for r in 0..<5 { saved.rstd[r] = 0 }  // source 0's key path now vanishes
        var bad = sources.map { Tensor(zeros: $0.shape) }, badW = Tensor(zeros: [16])
        DepthAttention.backwardReference(dh, query: w, sources: sources, saved: saved, dsources: &bad, dquery: &badW)
        XCTAssertGreaterThan(relativeError(bad[0].data, good[0].data), 100 * Self.tolerance)
    }

    func testFusedSumOfSquaresIsTheKeyStatisticOfTheForward() throws {
        // For each C kernel: `sum_squares` (the cached statistic) is bitwise the Σx² of `dot_and_squares` (the fused
        // forward's, and two-phase merge's, statistic of an uncached source), and close to the exact sum.
        let fused = kernels.filter { $0 != .baseline }
        guard !fused.isEmpty else { throw XCTSkip("this CPU has no AVX2 + FMA") }
        var rng = TestRandom(800)
        for kernel in fused {
            let table = kernel.fused!
            for n in [1, 7, 8, 15, 16, 17, 24, 33, 37, 63, 64, 65, 100, 128, 256, 300] {
                let x = rng.tensor([n]), w = rng.tensor([n])
                var ref = 0.0, refDot = 0.0
                for j in 0..<n { ref += Double(x.data[j]) * Double(x.data[j]); refDot += Double(w.data[j]) * Double(x.data[j]) }
                var wx: Float = 0, xx: Float = 0
                let ss = x.data.withUnsafeBufferPointer { xp in
                    w.data.withUnsafeBufferPointer { wp in table.dot_and_squares(wp.baseAddress!, xp.baseAddress!, n, &wx, &xx) }
                    return table.sum_squares(xp.baseAddress!, n)
                }
                let label = "\(kernel.rawValue) n=\(n)"
                XCTAssertEqual(ss.bitPattern, xx.bitPattern, label)
                XCTAssertEqual(Double(ss), ref, accuracy: 1e-5 * max(1, ref), label)
                XCTAssertEqual(Double(wx), refDot, accuracy: 1e-5 * max(1, abs(refDot)), label)
                // the fused forward of one source with a zero query computes this very statistic
                let fusedRstd = DepthAttention.forward(query: Tensor(zeros: [n]), sources: [x.reshaped([1, n])], rstd: [],
                                                       kernel: kernel).1.rstd[0]
                XCTAssertEqual(fusedRstd.bitPattern, DepthAttention.rstd(x.reshaped([1, n]), kernel: kernel)[0].bitPattern, label)
            }
        }
    }

    /// A block's key statistics in one call (`rstd_rows`, 16 rows at once under AVX-512) are bitwise each row's
    /// `sum_squares` and the scalar rstd, for every row count (full tiles and every tail) and width (masked blocks).
    func testBlockKeyStatisticsAreBitwiseThePerRowOnes() throws {
        var rng = TestRandom(71)
        for kernel in DepthKernel.available {
            guard let table = kernel.fused else { continue }
            for (n, d) in [(1, 1), (3, 7), (15, 16), (16, 64), (17, 65), (33, 100), (64, 64), (40, 256), (5, 300)] {
                let x = rng.tensor([n, d], scale: 3)
                let block = DepthAttention.rstd(x, kernel: kernel)
                let rows = x.data.withUnsafeBufferPointer { xp in
                    (0..<n).map { r in DepthAttention.rstd(sumOfSquares: table.sum_squares(xp.baseAddress! + r * d, d), d) }
                }
                XCTAssertEqual(block.map(\.bitPattern), rows.map(\.bitPattern), "\(kernel.rawValue) n=\(n) d=\(d)")
            }
        }
        if DepthKernel.available == [.baseline] { print("testBlockKeyStatisticsAreBitwiseThePerRowOnes: no C kernel on this CPU; nothing to compare") }
    }

    func testAVX512ExpMatchesLibm() throws {
        // The softmax's e^x of the AVX-512 kernel (polynomial, no libm) over the range a shifted logit takes (x ≤ 0)
        // and beyond: relative error ≤ 1e-6, e^0 = 1 exactly, and the clamp keeps e^{-1000} at a tiny positive value.
        guard DepthKernel.avx512.isAvailable else { throw XCTSkip("this CPU has no AVX-512F") }
        var xs: [Float] = stride(from: -87, through: 88, by: 0.0137).map { Float($0) }
        xs += [0, -0.0, 1e-8, -1e-8, 0.5, -0.5, Float(M_LN2) / 2, -Float(M_LN2) / 2]
        var out = [Float](repeating: .nan, count: xs.count)
        xs.withUnsafeBufferPointer { x in out.withUnsafeMutableBufferPointer { attnres_avx512_exp(x.baseAddress!, xs.count, $0.baseAddress!) } }
        var worst = 0.0
        for (x, e) in zip(xs, out) {
            let ref = Foundation.exp(Double(x))
            worst = max(worst, abs(Double(e) - ref) / ref)
        }
        XCTAssertLessThanOrEqual(worst, 1e-6)
        XCTAssertEqual(out[xs.count - 8], 1); XCTAssertEqual(out[xs.count - 7], 1)
        var tiny: Float = .nan
        [Float(-1000)].withUnsafeBufferPointer { x in attnres_avx512_exp(x.baseAddress!, 1, &tiny) }
        XCTAssertTrue(tiny >= 0 && tiny < 1e-37, "\(tiny)")
    }

    func testEveryKernelOnAwkwardShapes() {
        // Every kernel against the plain loops on d below, at, between and past the vector widths (4, 8, 16 lanes and
        // AVX-512's 64-column blocks), K = 1 … 17 (past 16 logits a vector) and n = 1 … 5 (tiles of 16 tokens cut
        // short): forward (some sources' statistics cached), backward accumulating into non-zero buffers and writing
        // (bitwise the same as into zeros), the weighted sum both ways, and for the C kernels two-phase phase 1 (against
        // the sgemm one) and phase 2 with and without a partial (against the one-pass reference). Inputs of unit
        // scale; queries of RMS 1/√d, so logits w·k̂ are of order 1 (docs/model.md: the logits' rounding grows with
        // |z|·√d, and e^z passes it on to α), and errors relative to max(‖b‖∞, 1) (`mixedError`).
        var rng = TestRandom(900)
        for kernel in kernels {
            for d in [1, 7, 15, 16, 17, 33, 64, 100, 256] {
                for k in 1...17 {
                    for n in 1...5 {
                        let label = "\(kernel.rawValue) n=\(n) d=\(d) K=\(k)"
                        let sources = (0..<k).map { i in rng.tensor([n, d], scale: 1 + Float(i % 3)) }
                        let queryScale = (3 / Float(d)).squareRoot()  // uniform in ±√(3/d): RMS 1/√d
                        let w = rng.tensor([d], scale: queryScale), dh = rng.tensor([n, d])
                        let cached: [[Float]?] = (0..<k).map { i in i % 2 == 1 ? DepthAttention.rstd(sources[i], kernel: kernel) : nil }
                        let fast = DepthAttention.forward(query: w, sources: sources, rstd: cached, kernel: kernel)
                        let ref = DepthAttention.forwardReference(query: w, sources: sources)
                        XCTAssertLessThanOrEqual(mixedError(fast.0.data, ref.0.data), Self.tolerance, "h, \(label)")
                        XCTAssertLessThanOrEqual(mixedError(fast.1.logits, ref.1.logits), Self.tolerance, "z, \(label)")
                        XCTAssertLessThanOrEqual(mixedError(fast.1.alpha, ref.1.alpha), Self.tolerance, "α, \(label)")
                        XCTAssertLessThanOrEqual(mixedError(fast.1.rstd, ref.1.rstd), Self.tolerance, "rstd, \(label)")

                        let start = (0..<k).map { _ in rng.tensor([n, d]) }, dwStart = rng.tensor([d])
                        var got = start, gotW = dwStart, want = start, wantW = dwStart
                        DepthAttention.backward(dh, query: w, sources: sources, saved: fast.1, dsources: &got, dquery: &gotW,
                                                kernel: kernel)
                        DepthAttention.backwardReference(dh, query: w, sources: sources, saved: fast.1, dsources: &want,
                                                         dquery: &wantW)
                        XCTAssertLessThanOrEqual(mixedError(got.flatMap(\.data), want.flatMap(\.data)), Self.tolerance,
                                                 "dv, \(label)")
                        XCTAssertLessThanOrEqual(mixedError(gotW.data, wantW.data), Self.tolerance, "dw, \(label)")
                        var zeroed = sources.map { Tensor(zeros: $0.shape) }
                        var written = sources.map { Tensor(repeating: .nan, shape: $0.shape) }
                        var zw = Tensor(zeros: [d]), ww = Tensor(zeros: [d])
                        DepthAttention.backward(dh, query: w, sources: sources, saved: fast.1, dsources: &zeroed, dquery: &zw,
                                                kernel: kernel)
                        DepthAttention.backward(dh, query: w, sources: sources, saved: fast.1, dsources: &written, dquery: &ww,
                                                accumulate: false, kernel: kernel)
                        XCTAssertEqual(written.flatMap { $0.data.map(\.bitPattern) }, zeroed.flatMap { $0.data.map(\.bitPattern) },
                                       "written dv, \(label)")
                        XCTAssertEqual(ww, zw, "dw when writing dv, \(label)")

                        let weights = rng.tensor([k * n]).data, outStart = rng.tensor([n, d]).data
                        var mixRef = outStart, mixGot = outStart
                        var mixZeros = [Float](repeating: 0, count: n * d), mixFresh = [Float](repeating: .nan, count: n * d)
                        weights.withUnsafeBufferPointer { wp in
                            mixRef.withUnsafeMutableBufferPointer {
                                DepthAttention.mixReference(sources: sources, weights: wp, into: $0.baseAddress!, rows: n, cols: d)
                            }
                            mixZeros.withUnsafeMutableBufferPointer {
                                DepthAttention.mixReference(sources: sources, weights: wp, into: $0.baseAddress!, rows: n, cols: d)
                            }
                            mixGot.withUnsafeMutableBufferPointer {
                                DepthAttention.mix(sources: sources, weights: wp, into: $0.baseAddress!, rows: n, cols: d,
                                                   kernel: kernel)
                            }
                            mixFresh.withUnsafeMutableBufferPointer {
                                DepthAttention.mix(sources: sources, weights: wp, into: $0.baseAddress!, rows: n, cols: d,
                                                   accumulate: false, kernel: kernel)
                            }
                        }
                        XCTAssertLessThanOrEqual(mixedError(mixGot, mixRef), Self.tolerance, "mix, \(label)")
                        XCTAssertLessThanOrEqual(mixedError(mixFresh, mixZeros), Self.tolerance, "mix from 0, \(label)")

                        guard kernel != .baseline else { continue }
                        let queries = (0..<(1 + k % 3)).map { _ in rng.tensor([d], scale: queryScale) }
                        let stats = DepthAttentionTwoPhase.phase1(queries: queries, sources: sources,
                                                                  rstd: sources.flatMap { DepthAttention.rstd($0, kernel: kernel) },
                                                                  kernel: kernel)
                        let stacked = DepthAttentionTwoPhase.phase1(queries: queries, keys: DepthAttentionTwoPhase.keys(sources),
                                                                    tokens: n)
                        for s in queries.indices {
                            XCTAssertLessThanOrEqual(mixedError(stats[s].weights, stacked[s].weights), Self.tolerance,
                                                     "phase 1 weights, query \(s), \(label)")
                            XCTAssertLessThanOrEqual(mixedError(stats[s].max, stacked[s].max), Self.tolerance,
                                                     "phase 1 max, query \(s), \(label)")
                            XCTAssertLessThanOrEqual(mixedError(stats[s].sum, stacked[s].sum), Self.tolerance,
                                                     "phase 1 sum, query \(s), \(label)")
                            // phase 2: the block's first layer (no partial) and a later one merging a partial
                            let first = DepthAttentionTwoPhase.normalize(stats[s], sources: sources, kernel: kernel)
                            let firstRef = DepthAttention.forwardReference(query: queries[s], sources: sources).0
                            XCTAssertLessThanOrEqual(mixedError(first.data, firstRef.data), Self.tolerance,
                                                     "phase 2 without a partial, query \(s), \(label)")
                            let partial = rng.tensor([n, d], scale: 2)
                            let merged = DepthAttentionTwoPhase.merge(stats[s], sources: sources, query: queries[s],
                                                                      partial: partial, kernel: kernel)
                            let mergedRef = DepthAttention.forwardReference(query: queries[s], sources: sources + [partial]).0
                            XCTAssertLessThanOrEqual(mixedError(merged.data, mergedRef.data), Self.tolerance,
                                                     "phase 2 merging a partial, query \(s), \(label)")
                        }
                    }
                }
            }
        }
    }

    func testTreeReductionsAreConsistent() {
        // treeDotAndSquares returns exactly treeDot(w, x) and treeDot(x, x): a key statistic computed fused in the
        // forward equals the cached one from `DepthAttention.rstd` bit for bit.
        var rng = TestRandom(400)
        for n in [0, 1, 15, 16, 17, 37, 64, 100, 256] {
            let w = rng.tensor([max(n, 1)]), x = rng.tensor([max(n, 1)])
            var ref = 0.0
            for j in 0..<n { ref += Double(w.data[j]) * Double(x.data[j]) }
            w.data.withUnsafeBufferPointer { wp in x.data.withUnsafeBufferPointer { xp in
                let (wx, xx) = VectorKernels.treeDotAndSquares(wp.baseAddress!, xp.baseAddress!, n)
                XCTAssertEqual(wx.bitPattern, VectorKernels.treeDot(wp.baseAddress!, xp.baseAddress!, n).bitPattern, "n=\(n)")
                XCTAssertEqual(xx.bitPattern, VectorKernels.treeDot(xp.baseAddress!, xp.baseAddress!, n).bitPattern, "n=\(n)")
                XCTAssertEqual(Double(wx), ref, accuracy: 1e-5, "n=\(n)")
            }}
        }
        let v = SIMD16<Float>((0..<16).map { Float($0) + 0.5 })
        XCTAssertEqual(VectorKernels.treeSum(v), 128)
    }
}
