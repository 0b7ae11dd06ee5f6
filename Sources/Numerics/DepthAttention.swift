/// Depth attention, the AttnRes operator (paper Eqs. 2–6; DESIGN §3): for every token r,
///     h[r] = Σ_i α_i[r] · v_i[r],   α_·[r] = softmax_i( w · RMSNorm(v_i[r]) )
/// over K sources v_0 … v_{K-1} (block representations and, inside a block, the partial), with one learned
/// pseudo-query w per layer. Keys are RMS-normalised *without* gain, values are raw, the softmax runs over
/// depth separately per token. This is the one-pass form; `DepthAttentionTwoPhase` is the inference form.
public enum DepthAttention {
    /// What backward needs: normalised keys, their reciprocal RMS, and the weights α [K][n].
    public struct Saved: Sendable {
        public var keys: [Tensor]
        public var rstd: [[Float]]
        public var alpha: [[Float]]
    }

    /// Forward. query [d], sources K × [n, d] (K ≥ 1) -> h [n, d].
    public static func forward(query: Tensor, sources: [Tensor]) -> (Tensor, Saved) {
        precondition(!sources.isEmpty, "DepthAttention needs at least one source")
        let n = sources[0].rows, d = sources[0].cols, kCount = sources.count
        precondition(query.count == d)
        var keys: [Tensor] = [], rstd: [[Float]] = []
        keys.reserveCapacity(kCount); rstd.reserveCapacity(kCount)
        var logits = [[Float]](repeating: [Float](repeating: 0, count: n), count: kCount)
        for (i, src) in sources.enumerated() {
            let (kh, s) = RMSNorm.forward(src, gain: nil)
            kh.data.withUnsafeBufferPointer { kp in
                query.data.withUnsafeBufferPointer { wp in
                    for r in 0..<n {
                        var z: Float = 0
                        for j in 0..<d { z += wp[j] * kp[r * d + j] }
                        logits[i][r] = z
                    }
                }
            }
            keys.append(kh); rstd.append(s.rstd)
        }
        var alpha = logits
        for r in 0..<n {
            var m = -Float.infinity
            for i in 0..<kCount { m = max(m, logits[i][r]) }
            var sum: Float = 0
            for i in 0..<kCount { let e = _exp(logits[i][r] - m); alpha[i][r] = e; sum += e }
            for i in 0..<kCount { alpha[i][r] /= sum }
        }
        var h = Tensor(zeros: [n, d])
        h.data.withUnsafeMutableBufferPointer { hp in
            for i in 0..<kCount {
                sources[i].data.withUnsafeBufferPointer { vp in
                    for r in 0..<n {
                        let a = alpha[i][r]
                        for j in 0..<d { hp[r * d + j] += a * vp[r * d + j] }
                    }
                }
            }
        }
        return (h, Saved(keys: keys, rstd: rstd, alpha: alpha))
    }

    /// Backward. dh [n, d] -> dsources K × [n, d] += …, dquery [d] += ….
    /// A source's gradient has two paths, as a value (α·dh) and as a key (through the softmax and RMSNorm).
    public static func backward(_ dh: Tensor, query: Tensor, sources: [Tensor], saved: Saved,
                                dsources: inout [Tensor], dquery: inout Tensor) {
        let n = dh.rows, d = dh.cols, kCount = sources.count
        precondition(dsources.count == kCount)
        // dα_i[r] = dh[r] · v_i[r]
        var dalpha = [[Float]](repeating: [Float](repeating: 0, count: n), count: kCount)
        for i in 0..<kCount {
            for r in 0..<n {
                var s: Float = 0
                for j in 0..<d { s += dh.data[r * d + j] * sources[i].data[r * d + j] }
                dalpha[i][r] = s
            }
        }
        for i in 0..<kCount {
            var dkey = Tensor(zeros: [n, d])
            for r in 0..<n {
                var dot: Float = 0
                for t in 0..<kCount { dot += saved.alpha[t][r] * dalpha[t][r] }
                let a = saved.alpha[i][r]
                let dz = a * (dalpha[i][r] - dot)  // softmax backward
                for j in 0..<d {
                    dkey.data[r * d + j] = dz * query.data[j]
                    dquery.data[j] += dz * saved.keys[i].data[r * d + j]
                    dsources[i].data[r * d + j] += a * dh.data[r * d + j]  // value path
                }
            }
            var none: Tensor? = nil
            RMSNorm.backward(dkey, x: sources[i], gain: nil, saved: RMSNorm.Saved(rstd: saved.rstd[i]),
                             dx: &dsources[i], dgain: &none)  // key path
        }
    }
}
