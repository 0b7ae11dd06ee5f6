import XCTest
@testable import Numerics

/// The fast depth-attention kernels (fused per-token forward, tiled backward, tree reductions) against their plain
/// reference loops (`DepthAttentionReference.swift`), with the tolerance of docs/model.md: ‖a − b‖∞ / ‖b‖∞ ≤ 1e-5 per
/// output tensor. Shapes cover d below, at and between the SIMD widths (1, 6, 8, 16, 37, 64, 256), K = 1 … 9 and T = 1.
final class DepthAttentionKernelTests: XCTestCase {
    static let tolerance: Float = 1e-5

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
        for (index, shape) in Self.shapes.enumerated() {
            var rng = TestRandom(UInt64(100 + index))
            let sources = (0..<shape.k).map { i in rng.tensor([shape.n, shape.d], scale: 1 + Float(i)) }
            let w = rng.tensor([shape.d], scale: 2)
            let fast = DepthAttention.forward(query: w, sources: sources)
            let ref = DepthAttention.forwardReference(query: w, sources: sources)
            let label = "n=\(shape.n) d=\(shape.d) K=\(shape.k)"
            XCTAssertLessThanOrEqual(relativeError(fast.0.data, ref.0.data), Self.tolerance, "h, \(label)")
            XCTAssertLessThanOrEqual(relativeError(fast.1.logits, ref.1.logits), Self.tolerance, "z, \(label)")
            XCTAssertLessThanOrEqual(relativeError(fast.1.alpha, ref.1.alpha), Self.tolerance, "α, \(label)")
            XCTAssertLessThanOrEqual(relativeError(fast.1.rstd, ref.1.rstd), Self.tolerance, "rstd, \(label)")
            XCTAssertEqual(fast.0.shape, [shape.n, shape.d])
        }
    }

    func testTiledBackwardMatchesPlainLoops() {
        for (index, shape) in Self.shapes.enumerated() {
            var rng = TestRandom(UInt64(200 + index))
            let sources = (0..<shape.k).map { _ in rng.tensor([shape.n, shape.d]) }
            let w = rng.tensor([shape.d], scale: 2), dh = rng.tensor([shape.n, shape.d])
            let saved = DepthAttention.forward(query: w, sources: sources).1
            // accumulate into non-zero buffers: backward adds, it never overwrites
            let start = (0..<shape.k).map { _ in rng.tensor([shape.n, shape.d]) }, dwStart = rng.tensor([shape.d])
            var fast = start, fastW = dwStart, ref = start, refW = dwStart
            DepthAttention.backward(dh, query: w, sources: sources, saved: saved, dsources: &fast, dquery: &fastW)
            DepthAttention.backwardReference(dh, query: w, sources: sources, saved: saved, dsources: &ref, dquery: &refW)
            let label = "n=\(shape.n) d=\(shape.d) K=\(shape.k)"
            for i in 0..<shape.k {
                XCTAssertLessThanOrEqual(relativeError(fast[i].data, ref[i].data), Self.tolerance, "dv_\(i), \(label)")
            }
            XCTAssertLessThanOrEqual(relativeError(fastW.data, refW.data), Self.tolerance, "dw, \(label)")
            // the increments themselves (not only the sums with the start values) agree
            let incFast = (0..<shape.k).flatMap { i in (0..<fast[i].count).map { fast[i].data[$0] - start[i].data[$0] } }
            let incRef = (0..<shape.k).flatMap { i in (0..<ref[i].count).map { ref[i].data[$0] - start[i].data[$0] } }
            XCTAssertLessThanOrEqual(relativeError(incFast, incRef), Self.tolerance, "dv increments, \(label)")
        }
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
