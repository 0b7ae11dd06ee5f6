import XCTest
import Foundation
@testable import Numerics

/// Finite-difference gradient checks, one per op (tiny shapes, T = 1 included), plus known answers.
final class OpGradientTests: XCTestCase {
    func testMatmulGradient() {
        var rng = TestRandom(1)
        let x = rng.tensor([3, 4]), w = rng.tensor([4, 5]), c = rng.tensor([3, 5])
        var dx = Tensor(zeros: x.shape), dw = Tensor(zeros: w.shape)
        Matmul.backward(c, x: x, w: w, dx: &dx, dw: &dw)
        assertGradients("matmul", inputs: [x, w], analytic: [dx, dw]) { weightedSum(Matmul.forward($0[0], $0[1]), c) }
    }

    func testMatmulBackwardAccumulates() {
        var rng = TestRandom(2)
        let x = rng.tensor([2, 3]), w = rng.tensor([3, 2]), c = rng.tensor([2, 2])
        var dx = Tensor(zeros: x.shape), dw = Tensor(zeros: w.shape)
        Matmul.backward(c, x: x, w: w, dx: &dx, dw: &dw)
        var dx2 = dx, dw2 = dw
        Matmul.backward(c, x: x, w: w, dx: &dx2, dw: &dw2)
        for i in 0..<dx.count { XCTAssertEqual(dx2.data[i], 2 * dx.data[i], accuracy: 1e-6) }
        for i in 0..<dw.count { XCTAssertEqual(dw2.data[i], 2 * dw.data[i], accuracy: 1e-6) }
    }

    func testMatmulKnownAnswer() {
        let x = Tensor(shape: [2, 2], data: [1, 2, 3, 4]), w = Tensor(shape: [2, 2], data: [5, 6, 7, 8])
        XCTAssertEqual(Matmul.forward(x, w).data, [19, 22, 43, 50])
    }

    func testEmbeddingGradient() {
        var rng = TestRandom(3)
        let table = rng.tensor([5, 3]), ids: [Int32] = [4, 0, 4, 2], c = rng.tensor([4, 3])
        var dt = Tensor(zeros: table.shape)
        Embedding.backward(c, ids: ids, dtable: &dt)
        assertGradients("embedding", inputs: [table], analytic: [dt]) {
            weightedSum(Embedding.forward(ids: ids, table: $0[0]), c)
        }
        XCTAssertEqual(Embedding.forward(ids: [1], table: table).data, Array(table.data[3..<6]))
    }

    func testRMSNormGradientWithGain() {
        var rng = TestRandom(4)
        let x = rng.tensor([3, 6]), g = rng.tensor([6]), c = rng.tensor([3, 6])
        let (_, saved) = RMSNorm.forward(x, gain: g)
        var dx = Tensor(zeros: x.shape); var dg: Tensor? = Tensor(zeros: g.shape)
        RMSNorm.backward(c, x: x, gain: g, saved: saved, dx: &dx, dgain: &dg)
        assertGradients("rmsnorm+gain", inputs: [x, g], analytic: [dx, dg!]) {
            weightedSum(RMSNorm.forward($0[0], gain: $0[1]).0, c)
        }
    }

    func testRMSNormGradientWithoutGainAndKnownAnswer() {
        var rng = TestRandom(5)
        let x = rng.tensor([1, 4]), c = rng.tensor([1, 4])
        let (_, saved) = RMSNorm.forward(x, gain: nil)
        var dx = Tensor(zeros: x.shape); var none: Tensor? = nil
        RMSNorm.backward(c, x: x, gain: nil, saved: saved, dx: &dx, dgain: &none)
        assertGradients("rmsnorm", inputs: [x], analytic: [dx]) { weightedSum(RMSNorm.forward($0[0], gain: nil).0, c) }
        let y = RMSNorm.forward(Tensor(shape: [1, 2], data: [3, 4]), gain: nil).0  // rms = √12.5
        XCTAssertEqual(y.data[0], 3 / Float(12.5 + 1e-6).squareRoot(), accuracy: 1e-6)
    }

    func testGELUGradientAndKnownAnswer() {
        var rng = TestRandom(6)
        let x = rng.tensor([2, 5], scale: 3), c = rng.tensor([2, 5])
        var dx = Tensor(zeros: x.shape)
        GELU.backward(c, x: x, saved: GELU.forward(x).1, dx: &dx)
        assertGradients("gelu", inputs: [x], analytic: [dx]) { weightedSum(GELU.forward($0[0]).0, c) }
        XCTAssertEqual(GELU.forward(Tensor(shape: [1], data: [1])).0.data[0], 0.841192, accuracy: 1e-5)
        // the exp-based tanh against libm over the whole range, including the clamped tails
        for v in stride(from: Float(-20), through: 20, by: 0.01) {
            XCTAssertEqual(GELU.fastTanh(v), tanhf(v), accuracy: 2e-7, "tanh(\(v))")
        }
    }

    /// Every kernel's GELU (GELU.c, vectorised for its instruction set) gives the baseline Swift loop's bits, forward
    /// (output and saved tanh) and backward, over counts with every vector tail, values from 0 to the clamped tails
    /// (|x| up to 40), ±0, subnormals, ±∞ and NaN, and with dx accumulating into non-zero values.
    func testGELUKernelsAreBitwiseTheSwiftLoop() {
        var rng = TestRandom(61)
        var special: [Float] = [0, -0, 1e-40, -1e-40, .infinity, -.infinity, .nan, 15, -15, 87, -87, 88, -88, 200, -200]
        special += (0..<64).map { Float($0) * 0.625 - 20 }
        for count in [1, 3, 7, 8, 15, 16, 17, 31, 33, 64, 100, 1000] {
            var x = rng.tensor([count], scale: 6)
            for i in 0..<min(count, special.count) where count >= 64 { x.data[i] = special[i] }
            let dy = rng.tensor([count]), start = rng.tensor([count])
            let (yRef, sRef) = GELU.forward(x, kernel: .baseline)
            var dxRef = start
            GELU.backward(dy, x: x, saved: sRef, dx: &dxRef, kernel: .baseline)
            for kernel in DepthKernel.available where kernel != .baseline {
                let (y, saved) = GELU.forward(x, kernel: kernel)
                XCTAssertEqual(y.shape, x.shape)
                XCTAssertEqual(y.data.map(\.bitPattern), yRef.data.map(\.bitPattern), "\(kernel) forward, count \(count)")
                XCTAssertEqual(saved.tanh.map(\.bitPattern), sRef.tanh.map(\.bitPattern), "\(kernel) tanh, count \(count)")
                var dx = start
                GELU.backward(dy, x: x, saved: saved, dx: &dx, kernel: kernel)
                XCTAssertEqual(dx.data.map(\.bitPattern), dxRef.data.map(\.bitPattern), "\(kernel) backward, count \(count)")
            }
        }
        if DepthKernel.available == [.baseline] { print("testGELUKernelsAreBitwiseTheSwiftLoop: this CPU has no AVX2 or AVX-512 kernel; only the baseline ran") }
    }

    func testSoftmaxCrossEntropyGradientAndKnownAnswer() {
        var rng = TestRandom(7)
        let logits = rng.tensor([3, 4], scale: 2), targets: [Int32] = [0, 3, 1]
        let (_, saved) = SoftmaxCrossEntropy.forward(logits: logits, targets: targets)
        var dl = Tensor(zeros: logits.shape)
        SoftmaxCrossEntropy.backward(dloss: 1, targets: targets, saved: saved, dlogits: &dl)
        assertGradients("softmax-ce", inputs: [logits], analytic: [dl]) {
            SoftmaxCrossEntropy.forward(logits: $0[0], targets: targets).0
        }
        let uniform = SoftmaxCrossEntropy.forward(logits: Tensor(zeros: [2, 8]), targets: [1, 5]).0
        XCTAssertEqual(uniform, log(8), accuracy: 1e-6)
    }

    func testCausalSelfAttentionGradient() {
        for (batch, seq, heads) in [(2, 3, 2), (1, 1, 1)] {  // T = 1 included
            var rng = TestRandom(UInt64(8 + seq))
            let d = 4
            let q = rng.tensor([batch * seq, d]), k = rng.tensor([batch * seq, d]), v = rng.tensor([batch * seq, d])
            let c = rng.tensor([batch * seq, d])
            let (_, saved) = CausalSelfAttention.forward(q: q, k: k, v: v, batch: batch, seq: seq, heads: heads)
            var dq = Tensor(zeros: q.shape), dk = Tensor(zeros: q.shape), dv = Tensor(zeros: q.shape)
            CausalSelfAttention.backward(c, q: q, k: k, v: v, saved: saved, batch: batch, seq: seq, heads: heads,
                                         dq: &dq, dk: &dk, dv: &dv)
            assertGradients("attention b\(batch) s\(seq) h\(heads)", inputs: [q, k, v], analytic: [dq, dk, dv]) {
                weightedSum(CausalSelfAttention.forward(q: $0[0], k: $0[1], v: $0[2],
                                                        batch: batch, seq: seq, heads: heads).0, c)
            }
        }
    }

    func testCausalSelfAttentionIsCausalAndMatchesNaive() {
        var rng = TestRandom(9)
        let (batch, seq, heads, d) = (2, 4, 2, 6)
        let q = rng.tensor([batch * seq, d]), k = rng.tensor([batch * seq, d]), v = rng.tensor([batch * seq, d])
        let out = CausalSelfAttention.forward(q: q, k: k, v: v, batch: batch, seq: seq, heads: heads).0
        // naive reference, one (sequence, head, token) at a time
        let dh = d / heads
        for b in 0..<batch { for h in 0..<heads { for i in 0..<seq {
            var z = [Double](); for j in 0...i {
                var s = 0.0
                for t in 0..<dh { s += Double(q.data[(b * seq + i) * d + h * dh + t]) * Double(k.data[(b * seq + j) * d + h * dh + t]) }
                z.append(s / Double(dh).squareRoot())
            }
            let m = z.max()!; let e = z.map { Foundation.exp($0 - m) }; let sum = e.reduce(0, +)
            for t in 0..<dh {
                var o = 0.0
                for j in 0...i { o += e[j] / sum * Double(v.data[(b * seq + j) * d + h * dh + t]) }
                XCTAssertEqual(out.data[(b * seq + i) * d + h * dh + t], Float(o), accuracy: 1e-5)
            }
        }}}
    }

    func testDepthAttentionGradient() {
        for kCount in [1, 2, 4] {
            var rng = TestRandom(UInt64(10 + kCount))
            let sources = (0..<kCount).map { _ in rng.tensor([3, 4]) }
            let w = rng.tensor([4]), c = rng.tensor([3, 4])
            let (_, saved) = DepthAttention.forward(query: w, sources: sources)
            var ds = sources.map { Tensor(zeros: $0.shape) }, dw = Tensor(zeros: [4])
            DepthAttention.backward(c, query: w, sources: sources, saved: saved, dsources: &ds, dquery: &dw)
            assertGradients("depth-attention K=\(kCount)", inputs: sources + [w], analytic: ds + [dw]) {
                weightedSum(DepthAttention.forward(query: $0[kCount], sources: Array($0[0..<kCount])).0, c)
            }
        }
    }

    func testDepthAttentionZeroQueryAveragesUniformly() {
        var rng = TestRandom(12)
        let sources = (0..<3).map { _ in rng.tensor([2, 3]) }
        let h = DepthAttention.forward(query: Tensor(zeros: [3]), sources: sources).0
        for i in 0..<h.count {
            XCTAssertEqual(h.data[i], (sources[0].data[i] + sources[1].data[i] + sources[2].data[i]) / 3, accuracy: 1e-6)
        }
    }
}
