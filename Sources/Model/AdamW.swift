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
                            for i in 0..<pp.count {
                                let gi = gp[i]
                                mp[i] = b1 * mp[i] + (1 - b1) * gi
                                vp[i] = b2 * vp[i] + (1 - b2) * gi * gi
                                let mhat = mp[i] / c1, vhat = vp[i] / c2
                                pp[i] -= lr * (mhat / (vhat.squareRoot() + eps) + decay * pp[i])
                            }
                        }}}}
                    }
                }
            }
        }
    }
}
