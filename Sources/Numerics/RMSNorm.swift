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
        var y = Tensor(zeros: x.shape)
        var rstd = [Float](repeating: 0, count: n)
        x.data.withUnsafeBufferPointer { xp in
            y.data.withUnsafeMutableBufferPointer { yp in
                for r in 0..<n {
                    var ss: Float = 0
                    for j in 0..<d { let v = xp[r * d + j]; ss += v * v }
                    let s = 1 / _sqrt(ss / Float(d) + epsilon)
                    rstd[r] = s
                    if let g = gain {
                        for j in 0..<d { yp[r * d + j] = xp[r * d + j] * s * g.data[j] }
                    } else {
                        for j in 0..<d { yp[r * d + j] = xp[r * d + j] * s }
                    }
                }
            }
        }
        return (y, Saved(rstd: rstd))
    }

    /// Backward. dy [n, d] -> dx [n, d] += …, dgain [d] += Σ_rows dy ⊙ x̂ (only when a gain was used).
    public static func backward(_ dy: Tensor, x: Tensor, gain: Tensor?, saved: Saved,
                                dx: inout Tensor, dgain: inout Tensor?) {
        let n = x.rows, d = x.cols
        var gy = [Float](repeating: 0, count: d)
        for r in 0..<n {
            let s = saved.rstd[r]
            var dot: Float = 0
            for j in 0..<d {
                let g = dy.data[r * d + j] * (gain?.data[j] ?? 1)
                gy[j] = g
                dot += g * x.data[r * d + j] * s
            }
            let mean = dot / Float(d)
            for j in 0..<d {
                let xhat = x.data[r * d + j] * s
                dx.data[r * d + j] += s * (gy[j] - xhat * mean)
                dgain?.data[j] += dy.data[r * d + j] * xhat
            }
        }
    }
}
