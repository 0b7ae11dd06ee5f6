import XCTest
@testable import Numerics

/// `RMSNorm.backward(accumulate: false)` writes dx without reading it, bitwise what accumulating into zeros gives
/// (a depth-attention layer's dh relies on it to skip the zero fill).
final class RMSNormWriteTests: XCTestCase {
    func testWritingEqualsAccumulatingIntoZeros() {
        for (n, d) in [(1, 1), (3, 7), (4, 64), (2, 256)] {
            var rng = TestRandom(UInt64(n * 1000 + d))
            let x = rng.tensor([n, d], scale: 2), dy = rng.tensor([n, d]), gain = rng.tensor([d])
            let saved = RMSNorm.forward(x, gain: gain).1
            var zeroed = Tensor(zeros: [n, d]), written = Tensor(repeating: .nan, shape: [n, d])
            var g1: Tensor? = Tensor(zeros: [d]), g2: Tensor? = Tensor(zeros: [d])
            RMSNorm.backward(dy, x: x, gain: gain, saved: saved, dx: &zeroed, dgain: &g1)
            RMSNorm.backward(dy, x: x, gain: gain, saved: saved, dx: &written, dgain: &g2, accumulate: false)
            XCTAssertEqual(written.data.map(\.bitPattern), zeroed.data.map(\.bitPattern), "n=\(n) d=\(d)")
            XCTAssertEqual(g1, g2)
            // and the default still accumulates: starting from the written result doubles it
            RMSNorm.backward(dy, x: x, gain: gain, saved: saved, dx: &written, dgain: &g2)
            for i in 0..<written.count { XCTAssertEqual(written.data[i], 2 * zeroed.data[i], accuracy: 1e-6 * max(1, abs(zeroed.data[i]))) }
        }
    }
}
