import XCTest
@testable import Numerics
import CKernels

/// The fast depth-attention kernels (fused per-token forward, tiled backward, tree reductions) against their plain
/// reference loops (`DepthAttentionReference.swift`), with the tolerance of docs/model.md: ‖a − b‖∞ / ‖b‖∞ ≤ 1e-5 per
/// output tensor. Shapes cover d below, at and between the SIMD widths (1, 6, 8, 16, 37, 64, 256), K = 1 … 9 and T = 1.
/// Every test runs each kernel this CPU has (`DepthKernel.available`: the baseline Swift kernel always, the AVX2 + FMA
/// one where the CPU has it; CI's CPU may lack it, and then says so in the log).
final class DepthAttentionKernelTests: XCTestCase {
    static let tolerance: Float = 1e-5

    var kernels: [DepthKernel] {
        let k = DepthKernel.available
        if !k.contains(.avx2) { print("DepthAttentionKernelTests: this CPU has no AVX2 + FMA; only the baseline kernel is tested") }
        return k
    }

    func relativeError(_ a: [Float], _ b: [Float]) -> Float {
        precondition(a.count == b.count)
        var diff: Float = 0, scale: Float = 0
        for i in 0..<a.count { diff = max(diff, abs(a[i] - b[i])); scale = max(scale, abs(b[i])) }
        return diff / max(scale, .leastNormalMagnitude)
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
            for d in [6, 16, 37, 64, 256] {
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

    func testTheAVX2KernelIsADifferentCodePath() throws {
        // The comparisons above would pass trivially if the AVX2 request silently ran the baseline kernel. FMA and
        // 8-lane sums round differently, so on a realistic shape some output bit differs between the two.
        guard DepthKernel.avx2.isAvailable else { throw XCTSkip("this CPU has no AVX2 + FMA") }
        var rng = TestRandom(700)
        let sources = (0..<5).map { _ in rng.tensor([64, 64]) }, w = rng.tensor([64], scale: 2), dh = rng.tensor([64, 64])
        let base = DepthAttention.forward(query: w, sources: sources, rstd: [], kernel: .baseline)
        let avx = DepthAttention.forward(query: w, sources: sources, rstd: [], kernel: .avx2)
        XCTAssertNotEqual(base.0.data.map(\.bitPattern), avx.0.data.map(\.bitPattern))
        var d1 = sources.map { Tensor(zeros: $0.shape) }, d2 = d1, w1 = Tensor(zeros: [64]), w2 = w1
        DepthAttention.backward(dh, query: w, sources: sources, saved: base.1, dsources: &d1, dquery: &w1, kernel: .baseline)
        DepthAttention.backward(dh, query: w, sources: sources, saved: base.1, dsources: &d2, dquery: &w2, kernel: .avx2)
        XCTAssertNotEqual(d1.flatMap { $0.data.map(\.bitPattern) }, d2.flatMap { $0.data.map(\.bitPattern) })
        // and a wrong AVX2 result would be caught: the tolerance check fails when one source's key path is dropped
        var broken = base.1
        for r in 0..<64 { broken.rstd[r] = 0 }
        var d3 = sources.map { Tensor(zeros: $0.shape) }, w3 = Tensor(zeros: [64])
        DepthAttention.backward(dh, query: w, sources: sources, saved: broken, dsources: &d3, dquery: &w3, kernel: .avx2)
        XCTAssertGreaterThan(relativeError(d3[0].data, d1[0].data), 100 * Self.tolerance)
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

    func testAVX2SumOfSquaresIsTheFusedOne() throws {
        guard DepthKernel.avx2.isAvailable else { throw XCTSkip("this CPU has no AVX2 + FMA") }
        var rng = TestRandom(800)
        for n in [1, 7, 8, 15, 16, 17, 24, 37, 64, 100, 256] {
            let x = rng.tensor([n])
            var ref = 0.0
            for j in 0..<n { ref += Double(x.data[j]) * Double(x.data[j]) }
            let ss = x.data.withUnsafeBufferPointer { attnres_avx2_sum_squares($0.baseAddress!, n) }
            XCTAssertEqual(Double(ss), ref, accuracy: 1e-5 * max(1, ref), "n=\(n)")
            // the fused forward of one source with a zero query computes this very statistic
            let fused = DepthAttention.forward(query: Tensor(zeros: [n]), sources: [x.reshaped([1, n])], rstd: [], kernel: .avx2)
            XCTAssertEqual(fused.1.rstd[0].bitPattern, DepthAttention.rstd(x.reshaped([1, n]), kernel: .avx2)[0].bitPattern)
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
