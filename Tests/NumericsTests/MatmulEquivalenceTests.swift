import XCTest
@testable import Numerics

/// The BLAS path against the naive reference kept beside it, over shapes that stress edge handling of kernels.
final class MatmulEquivalenceTests: XCTestCase {
    func testBLASMatchesNaive() {
        var rng = TestRandom(20)
        for (n, k, m) in [(1, 1, 1), (1, 7, 3), (5, 1, 9), (17, 33, 65), (64, 64, 256), (3, 129, 2)] {
            let x = rng.tensor([n, k]), w = rng.tensor([k, m])
            let fast = Matmul.forward(x, w), ref = Matmul.naive(x, w)
            // Float32 dot products of length k: relative error bound ~ k·2⁻²⁴ of Σ|x||w| ≤ k.
            XCTAssertLessThanOrEqual(fast.maxAbsDifference(ref), Float(k) * 1.2e-7 * 4, "\(n)x\(k)x\(m)")
        }
    }

    func testBackwardMatchesNaiveTransposes() {
        var rng = TestRandom(21)
        let x = rng.tensor([6, 5]), w = rng.tensor([5, 7]), dy = rng.tensor([6, 7])
        var dx = Tensor(zeros: x.shape), dw = Tensor(zeros: w.shape)
        Matmul.backward(dy, x: x, w: w, dx: &dx, dw: &dw)
        func transpose(_ t: Tensor) -> Tensor {
            var o = Tensor(zeros: [t.cols, t.rows])
            for i in 0..<t.rows { for j in 0..<t.cols { o.data[j * t.rows + i] = t.data[i * t.cols + j] } }
            return o
        }
        XCTAssertLessThan(dx.maxAbsDifference(Matmul.naive(dy, transpose(w))), 1e-5)
        XCTAssertLessThan(dw.maxAbsDifference(Matmul.naive(transpose(x), dy)), 1e-5)
    }
}
