/// GELU in its tanh form: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))) (DESIGN §3, the MLP activation).
///
/// tanh is evaluated as 1 − 2/(e^{2u} + 1) with u clamped to ±15 (where tanh is ±1 in Float32) and a vectorisable exp
/// (`VectorKernels.exp`), because libm's tanhf dominated the train step; the absolute error stays at Float32 rounding (~1e-7). Forward saves tanh for backward.
public enum GELU {
    @usableFromInline static let c: Float = 0.7978845608028654  // √(2/π)

    /// What backward needs: tanh(u) per element.
    public struct Saved: Sendable { public var tanh: [Float] }

    @inline(__always) static func fastTanh(_ u: Float) -> Float {
        let v = min(max(u, -15), 15)
        return 1 - 2 / (VectorKernels.exp(2 * v) + 1)
    }

    /// Forward. x [any] -> y [same]. `kernel`: an AVX2 or AVX-512 kernel runs GELU.c's loops, the same operations
    /// vectorised for that instruction set (bitwise these loops); the baseline runs the Swift loop below.
    public static func forward(_ x: Tensor, kernel: DepthKernel = .current) -> (Tensor, Saved) {
        var y = [Float](unsafeUninitializedCapacity: x.count) { $1 = x.count }  // every element written below
        var t = [Float](unsafeUninitializedCapacity: x.count) { $1 = x.count }
        x.data.withUnsafeBufferPointer { xp in
        y.withUnsafeMutableBufferPointer { p in
        t.withUnsafeMutableBufferPointer { tp in
            if let fused = kernel.fused, x.count > 0 {
                fused.gelu_forward(xp.baseAddress!, x.count, p.baseAddress!, tp.baseAddress!)
                return
            }
            for i in p.indices {
                let v = xp[i]
                let th = fastTanh(c * (v + 0.044715 * v * v * v))
                tp[i] = th
                p[i] = 0.5 * v * (1 + th)
            }
        }}}
        return (Tensor(shape: x.shape, data: y), Saved(tanh: t))
    }

    /// Backward. dy [same as x] -> dx += dy · gelu'(x).
    public static func backward(_ dy: Tensor, x: Tensor, saved: Saved, dx: inout Tensor, kernel: DepthKernel = .current) {
        precondition(dy.count == x.count && dx.count == x.count && saved.tanh.count == x.count)
        if let fused = kernel.fused, x.count > 0 {
            x.data.withUnsafeBufferPointer { xp in
            dy.data.withUnsafeBufferPointer { gp in
            saved.tanh.withUnsafeBufferPointer { tp in
            dx.data.withUnsafeMutableBufferPointer { dp in
                fused.gelu_backward(gp.baseAddress!, xp.baseAddress!, tp.baseAddress!, x.count, dp.baseAddress!)
            }}}}
            return
        }
        x.data.withUnsafeBufferPointer { xp in
        dy.data.withUnsafeBufferPointer { gp in
        saved.tanh.withUnsafeBufferPointer { tp in
        dx.data.withUnsafeMutableBufferPointer { dp in
            for i in xp.indices {
                let v = xp[i], t = tp[i]
                let du = c * (1 + 3 * 0.044715 * v * v)
                dp[i] += gp[i] * (0.5 * (1 + t) + 0.5 * v * (1 - t * t) * du)
            }
        }}}}
    }
}
