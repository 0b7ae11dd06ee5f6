import XCTest
import Foundation
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

    func testSgemmWithBetaZeroNeverReadsTheOutput() {
        // Matmul.forward hands sgemm an uninitialised output with beta = 0; that is only sound if C is never read.
        // A NaN-filled C must give bitwise the product into a zero-filled one (NaN · 0 would be NaN if C were read).
        var rng = TestRandom(22)
        for (n, k, m) in [(1, 1, 1), (2, 3, 4), (8, 8, 8), (17, 33, 65), (64, 64, 256), (256, 64, 64), (64, 256, 64)] {
            let x = rng.tensor([n, k]), w = rng.tensor([k, m])
            var zeroed = [Float](repeating: 0, count: n * m), poisoned = [Float](repeating: .nan, count: n * m)
            func product(into c: inout [Float]) {
                x.data.withUnsafeBufferPointer { xp in w.data.withUnsafeBufferPointer { wp in c.withUnsafeMutableBufferPointer { cp in
                    BLAS.sgemm(transA: false, transB: false, m: n, n: m, k: k, alpha: 1, a: xp.baseAddress!, lda: k,
                               b: wp.baseAddress!, ldb: m, beta: 0, c: cp.baseAddress!, ldc: m)
                }}}
            }
            product(into: &zeroed)
            product(into: &poisoned)
            XCTAssertEqual(poisoned.map(\.bitPattern), zeroed.map(\.bitPattern), "\(n)x\(k)x\(m)")
            XCTAssertEqual(Matmul.forward(x, w).data.map(\.bitPattern), zeroed.map(\.bitPattern), "\(n)x\(k)x\(m)")
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

/// The SIMD reductions and the polynomial exp against straightforward references.
final class VectorKernelTests: XCTestCase {
    func testExpMatchesLibmAcrossTheRange() {
        var worst: Float = 0
        for v in stride(from: Float(-87), through: 88, by: 0.0137) {
            let ref = Foundation.exp(Double(v))
            worst = max(worst, Float(abs(Double(VectorKernels.exp(v)) - ref) / ref))
        }
        XCTAssertLessThanOrEqual(worst, 3e-7)
        XCTAssertEqual(VectorKernels.exp(0), 1)
        XCTAssertEqual(VectorKernels.exp(-200), VectorKernels.exp(-87))  // clamped, never NaN
    }

    func testDotMatchesDoubleReference() {
        var rng = TestRandom(30)
        for n in [0, 1, 15, 16, 17, 64, 100] {
            let a = rng.tensor([max(n, 1)]), b = rng.tensor([max(n, 1)]), c = rng.tensor([max(n, 1)])
            var ref2 = 0.0, ref3 = 0.0
            for j in 0..<n {
                ref2 += Double(a.data[j]) * Double(b.data[j]); ref3 += Double(a.data[j]) * Double(b.data[j]) * Double(c.data[j])
            }
            a.data.withUnsafeBufferPointer { ap in b.data.withUnsafeBufferPointer { bp in c.data.withUnsafeBufferPointer { cp in
                XCTAssertEqual(Double(VectorKernels.dot(ap.baseAddress!, bp.baseAddress!, n)), ref2, accuracy: 1e-5)
                XCTAssertEqual(Double(VectorKernels.dot3(ap.baseAddress!, bp.baseAddress!, cp.baseAddress!, n)), ref3, accuracy: 1e-5)
            }}}
        }
    }
}

/// OpenBLAS's threaded sgemm tiles the output and never splits the inner dimension, so two threads give the same
/// bits as one. 384³ is above OpenBLAS's threading threshold, so the second call really runs on two threads.
final class BLASThreadDeterminismTests: XCTestCase {
    func testTwoThreadsGiveBitwiseIdenticalProducts() {
        var rng = TestRandom(40)
        let x = rng.tensor([384, 384]), w = rng.tensor([384, 384])
        BLAS.setThreads(1)
        let one = Matmul.forward(x, w)
        BLAS.setThreads(2)
        let two = Matmul.forward(x, w)
        var dx = Tensor(zeros: x.shape), dw = Tensor(zeros: w.shape)
        Matmul.backward(one, x: x, w: w, dx: &dx, dw: &dw)
        BLAS.setThreads(1)
        var dx1 = Tensor(zeros: x.shape), dw1 = Tensor(zeros: w.shape)
        Matmul.backward(one, x: x, w: w, dx: &dx1, dw: &dw1)
        XCTAssertEqual(one.data.map(\.bitPattern), two.data.map(\.bitPattern))
        XCTAssertEqual(dx.data.map(\.bitPattern), dx1.data.map(\.bitPattern))
        XCTAssertEqual(dw.data.map(\.bitPattern), dw1.data.map(\.bitPattern))
    }
}
