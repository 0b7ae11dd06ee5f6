/// The plain loops of depth attention (`DepthAttention`): every formula written once, element by element, sums in
/// their natural order, no caching, tiling or fusion. They are the references the fast kernels are tested against
/// (docs/model.md, tolerance policy) and are never on a hot path.
extension DepthAttention {
    /// `forward` as plain loops: per source and token rstd = 1/√(mean(v²) + eps) and z = rstd·(w · v), softmax over
    /// the sources per token, h = Σ_i α_i v_i. query [d], sources K × [n, d] -> h [n, d].
    static func forwardReference(query: Tensor, sources: [Tensor]) -> (Tensor, Saved) {
        let n = sources[0].rows, d = sources[0].cols, kCount = sources.count
        var rstd = [Float](repeating: 0, count: kCount * n), z = rstd, alpha = rstd
        for i in 0..<kCount {
            for r in 0..<n {
                var ss: Float = 0, dot: Float = 0
                for j in 0..<d {
                    let x = sources[i].data[r * d + j]
                    ss += x * x; dot += query.data[j] * x
                }
                let s = 1 / (ss / Float(d) + RMSNorm.epsilon).squareRoot()
                rstd[i * n + r] = s; z[i * n + r] = s * dot
            }
        }
        for r in 0..<n {
            var m = -Float.infinity
            for i in 0..<kCount { m = max(m, z[i * n + r]) }
            var sum: Float = 0
            for i in 0..<kCount { alpha[i * n + r] = _exp(z[i * n + r] - m); sum += alpha[i * n + r] }
            for i in 0..<kCount { alpha[i * n + r] /= sum }
        }
        var h = [Float](repeating: 0, count: n * d)
        alpha.withUnsafeBufferPointer { al in
            h.withUnsafeMutableBufferPointer { mixReference(sources: sources, weights: al, into: $0.baseAddress!, rows: n, cols: d) }
        }
        return (Tensor(shape: [n, d], data: h), Saved(rstd: rstd, logits: z, alpha: alpha))
    }

    /// The plain form of `mix` (source by source, every column), the reference it must equal bit for bit.
    static func mixReference(sources: [Tensor], weights: UnsafeBufferPointer<Float>,
                             into out: UnsafeMutablePointer<Float>, rows n: Int, cols d: Int) {
        for i in 0..<sources.count {
            sources[i].data.withUnsafeBufferPointer { v in
                for r in 0..<n {
                    let a = weights[i * n + r]
                    let o = out + r * d, row = v.baseAddress! + r * d
                    for j in 0..<d { o[j] += a * row[j] }
                }
            }
        }
    }

    /// `backward` as plain loops: dα_i[r] = dh[r] · v_i[r] in order, dz = α(dα − Σ_t α_t dα_t), then every element
    /// dv_i[r] += α·dh[r] + c·(w − ck·v_i[r]) and dw += c·v_i[r] with c = rstd·dz, ck = z/d·rstd.
    static func backwardReference(_ dh: Tensor, query: Tensor, sources: [Tensor], saved: Saved,
                                  dsources: inout [Tensor], dquery: inout Tensor) {
        let n = dh.rows, d = dh.cols, kCount = sources.count, invD = 1 / Float(d)
        let alphaRef = saved.alpha, rstdRef = saved.rstd, logitsRef = saved.logits
        var dz = [Float](repeating: 0, count: kCount * n)
        for i in 0..<kCount {
            for r in 0..<n {
                var s: Float = 0
                for j in 0..<d { s += dh.data[r * d + j] * sources[i].data[r * d + j] }
                dz[i * n + r] = s
            }
        }
        for r in 0..<n {
            var dot: Float = 0
            for i in 0..<kCount { dot += alphaRef[i * n + r] * dz[i * n + r] }
            for i in 0..<kCount { dz[i * n + r] = alphaRef[i * n + r] * (dz[i * n + r] - dot) }
        }
        for i in 0..<kCount {
            for r in 0..<n {
                let k = i * n + r
                let a = alphaRef[k], s = rstdRef[k]
                let c = s * dz[k], ck = logitsRef[k] * invD * s  // k̂ = s·v
                for j in 0..<d {
                    let x = sources[i].data[r * d + j]
                    dsources[i].data[r * d + j] += a * dh.data[r * d + j] + c * (query.data[j] - ck * x)
                    dquery.data[j] += c * x
                }
            }
        }
    }
}
