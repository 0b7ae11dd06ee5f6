import XCTest
@testable import Numerics

/// The one tolerance policy for finite-difference gradient checks (documented in docs/model.md):
/// central differences with step h = 3e-3 on a Float32 forward whose scalar objective is Σ c ⊙ out (c fixed random),
/// and every element must satisfy |analytic − numeric| ≤ atol + rtol·|numeric| with atol = 1e-3, rtol = 1e-2.
/// Float32 rounding of the objective divided by 2h bounds the noise near 1e-4; a wrong factor or sign fails by far.
enum GradientTolerance {
    static let step: Float = 3e-3
    static let atol: Float = 1e-3
    static let rtol: Float = 1e-2
}

/// Deterministic test data (SplitMix64 → uniform in [-scale, scale)).
struct TestRandom {
    var state: UInt64
    init(_ seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E3779B97F4A7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58476D1CE4E5B9
        z = (z ^ (z >> 27)) &* 0x94D049BB133111EB
        return z ^ (z >> 31)
    }
    mutating func uniform(_ scale: Float = 1) -> Float { (Float(next() >> 40) / Float(1 << 24) * 2 - 1) * scale }
    mutating func tensor(_ shape: [Int], scale: Float = 1) -> Tensor {
        var t = Tensor(zeros: shape)
        for i in 0..<t.count { t.data[i] = uniform(scale) }
        return t
    }
    mutating func ids(_ n: Int, below v: Int) -> [Int32] { (0..<n).map { _ in Int32(next() % UInt64(v)) } }
}

/// Checks analytic gradients of `objective` with respect to each tensor of `inputs` by central differences.
func assertGradients(_ name: String, inputs: [Tensor], analytic: [Tensor],
                     objective: ([Tensor]) -> Float, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(inputs.count, analytic.count, file: file, line: line)
    var worst: Float = 0
    for t in 0..<inputs.count {
        XCTAssertEqual(inputs[t].shape, analytic[t].shape, "\(name): gradient \(t) shape", file: file, line: line)
        for i in 0..<inputs[t].count {
            var plus = inputs, minus = inputs
            plus[t].data[i] += GradientTolerance.step
            minus[t].data[i] -= GradientTolerance.step
            let numeric = (objective(plus) - objective(minus)) / (2 * GradientTolerance.step)
            let a = analytic[t].data[i]
            let err = abs(a - numeric)
            worst = max(worst, err)
            if err > GradientTolerance.atol + GradientTolerance.rtol * abs(numeric) {
                XCTFail("\(name): input \(t) element \(i): analytic \(a) vs numeric \(numeric)", file: file, line: line)
                return
            }
        }
    }
}

/// Σ c ⊙ out, accumulated in Double so the objective itself adds as little rounding as possible.
func weightedSum(_ out: Tensor, _ c: Tensor) -> Float {
    var s: Double = 0
    for i in 0..<out.count { s += Double(out.data[i]) * Double(c.data[i]) }
    return Float(s)
}
