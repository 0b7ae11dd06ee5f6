import Numerics
#if canImport(Glibc)
import Glibc
#endif

/// AdamW (Loshchilov & Hutter) with decoupled weight decay and bias correction, one parameter at a time, so a
/// pipeline rank updates exactly its own parameters and gets the single-process values bit for bit.
///
/// Hyper-parameters (docs/model.md): β1 = 0.9, β2 = 0.95, ε = 1e-8, weight decay 0.1 on rank-2 parameters
/// (embeddings, projections, head) and none on gains and pseudo-queries; constant learning rate, no clipping
/// (a global-norm clip would couple all ranks).
public struct AdamW: Sendable {
    public var learningRate: Float
    public var beta1: Float = 0.9
    public var beta2: Float = 0.95
    public var epsilon: Float = 1e-8
    public var weightDecay: Float = 0.1

    /// First and second moments, same names as the parameters.
    public private(set) var m: ParameterSet
    public private(set) var v: ParameterSet
    /// Number of updates applied so far.
    public private(set) var step: Int = 0

    public init(parameters: ParameterSet, learningRate: Float) {
        self.learningRate = learningRate
        m = parameters.zerosLike(); v = parameters.zerosLike()
    }

    /// Restores a saved state (checkpoint resume): moments named like the parameters, and the update count.
    public mutating func restore(m: ParameterSet, v: ParameterSet, step: Int) {
        self.m = m; self.v = v; self.step = step
    }

    /// Applies one update to every parameter in `parameters` from `gradients` (same names).
    public mutating func update(_ parameters: inout ParameterSet, gradients: ParameterSet) {
        step += 1
        let c1 = 1 - powf(beta1, Float(step)), c2 = 1 - powf(beta2, Float(step))
        for name in parameters.names {
            let decay = parameters.specs[name]!.kind.decays ? weightDecay : 0
            let (lr, b1, b2, eps) = (learningRate, beta1, beta2, epsilon)
            let g = gradients[name]
            m.modify(name) { mt in
                v.modify(name) { vt in
                    parameters.modify(name) { p in
                        g.data.withUnsafeBufferPointer { gp in
                        mt.data.withUnsafeMutableBufferPointer { mp in
                        vt.data.withUnsafeMutableBufferPointer { vp in
                        p.data.withUnsafeMutableBufferPointer { pp in
                            AdamW.kernel(p: pp.baseAddress!, g: gp.baseAddress!, m: mp.baseAddress!, v: vp.baseAddress!,
                                         count: pp.count, lr: lr, beta1: b1, beta2: b2, eps: eps, decay: decay,
                                         c1: c1, c2: c2)
                        }}}}
                    }
                }
            }
        }
    }

    /// The elementwise update, 8 lanes at a time through explicit SIMD (LLVM would not vectorise the four aliasing
    /// pointers); lane arithmetic is IEEE elementwise, so results equal the scalar loop bit for bit.
    @inline(__always)
    static func kernel(p: UnsafeMutablePointer<Float>, g: UnsafePointer<Float>, m: UnsafeMutablePointer<Float>,
                       v: UnsafeMutablePointer<Float>, count: Int, lr: Float, beta1: Float, beta2: Float, eps: Float,
                       decay: Float, c1: Float, c2: Float) {
        typealias V = SIMD8<Float>
        var i = 0
        while i + 8 <= count {
            let gi = UnsafeRawPointer(g + i).loadUnaligned(as: V.self)
            var mi = UnsafeRawPointer(m + i).loadUnaligned(as: V.self)
            var vi = UnsafeRawPointer(v + i).loadUnaligned(as: V.self)
            var pi = UnsafeRawPointer(p + i).loadUnaligned(as: V.self)
            mi = beta1 * mi + (1 - beta1) * gi
            vi = beta2 * vi + (1 - beta2) * gi * gi
            let mhat = mi / c1, vhat = vi / c2
            pi -= lr * (mhat / (vhat.squareRoot() + eps) + decay * pi)
            UnsafeMutableRawPointer(m + i).storeBytes(of: mi, as: V.self)
            UnsafeMutableRawPointer(v + i).storeBytes(of: vi, as: V.self)
            UnsafeMutableRawPointer(p + i).storeBytes(of: pi, as: V.self)
            i += 8
        }
        while i < count {
            let gi = g[i]
            m[i] = beta1 * m[i] + (1 - beta1) * gi
            v[i] = beta2 * v[i] + (1 - beta2) * gi * gi
            let mhat = m[i] / c1, vhat = v[i] / c2
            p[i] -= lr * (mhat / (vhat.squareRoot() + eps) + decay * p[i])
            i += 1
        }
    }
}
