/// GELU in its tanh form: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))) (DESIGN §3, the MLP activation).
public enum GELU {
    @usableFromInline static let c: Float = 0.7978845608028654  // √(2/π)

    /// Forward. x [any] -> y [same].
    public static func forward(_ x: Tensor) -> Tensor {
        var y = x
        y.data.withUnsafeMutableBufferPointer { p in
            for i in p.indices {
                let v = p[i]
                p[i] = 0.5 * v * (1 + _tanh(c * (v + 0.044715 * v * v * v)))
            }
        }
        return y
    }

    /// Backward. dy [same as x] -> dx += dy · gelu'(x).
    public static func backward(_ dy: Tensor, x: Tensor, dx: inout Tensor) {
        precondition(dy.count == x.count && dx.count == x.count)
        x.data.withUnsafeBufferPointer { xp in
            dy.data.withUnsafeBufferPointer { gp in
                dx.data.withUnsafeMutableBufferPointer { dp in
                    for i in xp.indices {
                        let v = xp[i]
                        let u = c * (v + 0.044715 * v * v * v)
                        let t = _tanh(u)
                        let du = c * (1 + 3 * 0.044715 * v * v)
                        dp[i] += gp[i] * (0.5 * (1 + t) + 0.5 * v * (1 - t * t) * du)
                    }
                }
            }
        }
    }
}
