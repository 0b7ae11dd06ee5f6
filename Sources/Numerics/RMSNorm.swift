/// RMSNorm over the last dimension: y = x / √(mean(x²) + eps) ⊙ g, with an optional gain g.
///
/// Used with a gain before every sublayer (PreNorm) and before the head; used *without* a gain on the keys of
/// depth attention (DESIGN §3 picks "no gain" there, as the gain would be redundant with the pseudo-query).
public enum RMSNorm {
    /// The epsilon of DESIGN §3 for every RMSNorm in the model.
    public static let epsilon: Float = 1e-6

    /// What backward needs besides x: the reciprocal RMS of each row.
    public struct Saved: Sendable { public var rstd: [Float] }

    /// Forward. x [n, d], gain [d] or nil -> y [n, d].
    public static func forward(_ x: Tensor, gain: Tensor?) -> (Tensor, Saved) {
        let n = x.rows, d = x.cols
        precondition(gain == nil || gain!.count == d)
        var y = Tensor(zeros: x.shape)
        var rstd = [Float](repeating: 0, count: n)
        let g = gain?.data ?? [Float](repeating: 1, count: d)
        x.data.withUnsafeBufferPointer { xp in
        y.data.withUnsafeMutableBufferPointer { yp in
        g.withUnsafeBufferPointer { gp in
            for r in 0..<n {
                let row = xp.baseAddress! + r * d, out = yp.baseAddress! + r * d
                let ss = VectorKernels.dot(row, row, d)
                let s = 1 / _sqrt(ss / Float(d) + epsilon)
                rstd[r] = s
                for j in 0..<d { out[j] = row[j] * s * gp[j] }
            }
        }}}
        return (y, Saved(rstd: rstd))
    }

    /// Backward. dy [n, d] -> dx [n, d] += rstd·(ĝ − x̂·mean(ĝ ⊙ x̂)) with ĝ = dy ⊙ g, and
    /// dgain [d] += Σ_rows dy ⊙ x̂ (only when a gain was used).
    /// With `accumulate: false`, dx is only written (it may hold anything on entry): each element becomes 0 + its
    /// increment, bitwise what accumulating into a zero-filled dx gives, without the zero fill (a depth-attention
    /// layer's dh is a fresh buffer every layer).
    public static func backward(_ dy: Tensor, x: Tensor, gain: Tensor?, saved: Saved,
                                dx: inout Tensor, dgain: inout Tensor?, accumulate: Bool = true) {
        let n = x.rows, d = x.cols
        let g = gain?.data ?? [Float](repeating: 1, count: d)
        var dg = dgain?.data ?? []
        let wantGain = dgain != nil
        dgain = nil  // hold the only reference while accumulating, then hand it back
        dy.data.withUnsafeBufferPointer { gy in
        x.data.withUnsafeBufferPointer { xp in
        g.withUnsafeBufferPointer { gp in
        dx.data.withUnsafeMutableBufferPointer { dxp in
        dg.withUnsafeMutableBufferPointer { dgp in
            for r in 0..<n {
                let s = saved.rstd[r]
                let row = xp.baseAddress! + r * d, grow = gy.baseAddress! + r * d, out = dxp.baseAddress! + r * d
                let dot = VectorKernels.dot3(grow, gp.baseAddress!, row, d)
                let mean = dot * s / Float(d)
                if accumulate {
                    for j in 0..<d {
                        let xhat = row[j] * s
                        out[j] += s * (grow[j] * gp[j] - xhat * mean)
                    }
                } else {
                    for j in 0..<d {
                        let xhat = row[j] * s
                        out[j] = 0 + s * (grow[j] * gp[j] - xhat * mean)  // 0 + x: -0 becomes +0, as in a zeroed dx
                    }
                }
                if wantGain { for j in 0..<d { dgp[j] += grow[j] * row[j] * s } }
            }
        }}}}}
        if wantGain { dgain = Tensor(shape: [d], data: dg) }
    }
}
