/// Depth attention, the AttnRes operator (paper Eqs. 2–6; DESIGN §3): for every token r,
///     h[r] = Σ_i α_i[r] · v_i[r],   α_·[r] = softmax_i( w · RMSNorm(v_i[r]) )
/// over K sources v_0 … v_{K-1} (block representations and, inside a block, the partial), with one learned
/// pseudo-query w per layer. Keys are RMS-normalised *without* gain, values are raw, the softmax runs over
/// depth separately per token. This is the one-pass form; `DepthAttentionTwoPhase` is the inference form.
///
/// The normalised keys are never materialised: z_i[r] = rstd_i[r] · (w · v_i[r]), and backward uses
/// w · k̂ = z to fold the RMSNorm backward into one pass per source.
public enum DepthAttention {
    /// What backward needs: per source and token the reciprocal RMS, the logit z and the weight α, each [K·n].
    public struct Saved: Sendable {
        public var rstd: [Float]
        public var logits: [Float]
        public var alpha: [Float]
    }

    /// The reciprocal RMS of every row of one source, [n]: the key normalisation, which does not depend on the query.
    /// A completed block never changes within a forward, so a caller attending over it from several layers computes
    /// this once and passes it to `forward(query:sources:rstd:)`; it is the very expression `forward` evaluates, so
    /// the result is bitwise the same.
    public static func rstd(_ source: Tensor) -> [Float] {
        let n = source.rows, d = source.cols
        var out = [Float](repeating: 0, count: n)
        source.data.withUnsafeBufferPointer { v in
            out.withUnsafeMutableBufferPointer { rs in
                for r in 0..<n { rs[r] = rowRstd(v.baseAddress! + r * d, d) }
            }
        }
        return out
    }

    /// 1 / √(mean(row²) + eps), shared by `rstd` and `forward` so a cached value equals a recomputed one bit for bit.
    @inline(__always)
    static func rowRstd(_ row: UnsafePointer<Float>, _ d: Int) -> Float {
        1 / _sqrt(VectorKernels.dot(row, row, d) / Float(d) + RMSNorm.epsilon)
    }

    /// Forward. query [d], sources K × [n, d] (K ≥ 1) -> h [n, d].
    public static func forward(query: Tensor, sources: [Tensor]) -> (Tensor, Saved) {
        forward(query: query, sources: sources, rstd: [])
    }

    /// Forward with the key statistics of some sources precomputed: `cached[i]` (when present and non-nil) must be
    /// `rstd(sources[i])`; the others are computed here. Same result as `forward(query:sources:)`, bit for bit.
    public static func forward(query: Tensor, sources: [Tensor], rstd cached: [[Float]?]) -> (Tensor, Saved) {
        precondition(!sources.isEmpty, "DepthAttention needs at least one source")
        let n = sources[0].rows, d = sources[0].cols, kCount = sources.count
        precondition(query.count == d && cached.count <= kCount)
        var rstd = [Float](repeating: 0, count: kCount * n)
        var z = [Float](repeating: 0, count: kCount * n)
        var alpha = [Float](repeating: 0, count: kCount * n)
        var h = Tensor(zeros: [n, d])
        query.data.withUnsafeBufferPointer { w in
            rstd.withUnsafeMutableBufferPointer { rs in
            z.withUnsafeMutableBufferPointer { zs in
            alpha.withUnsafeMutableBufferPointer { al in
                for i in 0..<kCount {
                    precondition(sources[i].rows == n && sources[i].cols == d, "DepthAttention: source shapes differ")
                    sources[i].data.withUnsafeBufferPointer { v in
                        if i < cached.count, let c = cached[i] {
                            precondition(c.count == n, "DepthAttention: cached rstd has the wrong length")
                            for r in 0..<n {
                                let row = v.baseAddress! + r * d
                                let s = c[r]
                                rs[i * n + r] = s
                                zs[i * n + r] = s * VectorKernels.dot(w.baseAddress!, row, d)
                            }
                        } else {
                            for r in 0..<n {
                                let row = v.baseAddress! + r * d
                                let s = rowRstd(row, d)
                                rs[i * n + r] = s
                                zs[i * n + r] = s * VectorKernels.dot(w.baseAddress!, row, d)
                            }
                        }
                    }
                }
                for r in 0..<n {
                    var m = -Float.infinity
                    for i in 0..<kCount { m = max(m, zs[i * n + r]) }
                    var sum: Float = 0
                    for i in 0..<kCount { let e = _expShifted(zs[i * n + r] - m); al[i * n + r] = e; sum += e }
                    let inv = 1 / sum
                    for i in 0..<kCount { al[i * n + r] *= inv }
                }
                h.data.withUnsafeMutableBufferPointer { hp in
                    mix(sources: sources, weights: UnsafeBufferPointer(al), into: hp.baseAddress!, rows: n, cols: d)
                }
            }}}
        }
        return (h, Saved(rstd: rstd, logits: z, alpha: alpha))
    }

    /// out[r] += Σ_i weights[i·n + r] · v_i[r], sources in order. Token by token in column tiles of 16 whose partial
    /// sum stays in registers across the K sources, instead of loading and storing `out` once per source. Each element
    /// sees the same operations in the same order as the plain loop (`mixReference`), so the result is bitwise the same.
    static func mix(sources: [Tensor], weights: UnsafeBufferPointer<Float>, into out: UnsafeMutablePointer<Float>,
                    rows n: Int, cols d: Int) {
        let kCount = sources.count, tiled = d - d % 16
        withBasePointers(sources) { vs in
            for r in 0..<n {
                var j0 = 0
                while j0 < tiled {
                    let o = UnsafeMutableRawPointer(out + r * d + j0)
                    var acc = o.loadUnaligned(as: SIMD16<Float>.self)
                    for i in 0..<kCount {
                        acc = acc + weights[i * n + r] * UnsafeRawPointer(vs[i] + r * d + j0).loadUnaligned(as: SIMD16<Float>.self)
                    }
                    o.storeBytes(of: acc, as: SIMD16<Float>.self)
                    j0 += 16
                }
                for i in 0..<kCount where tiled < d {
                    let a = weights[i * n + r], row = vs[i] + r * d, o = out + r * d
                    for j in tiled..<d { o[j] += a * row[j] }
                }
            }
        }
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

    /// Calls `body` with the base address of every tensor's elements, all valid for the duration of the call
    /// (nested `withUnsafeBufferPointer`, one level per tensor).
    static func withBasePointers<R>(_ tensors: [Tensor], _ body: ([UnsafePointer<Float>]) -> R) -> R {
        var pointers: [UnsafePointer<Float>] = []
        pointers.reserveCapacity(tensors.count)
        func nest(_ i: Int) -> R {
            if i == tensors.count { return body(pointers) }
            return tensors[i].data.withUnsafeBufferPointer { p in pointers.append(p.baseAddress!); return nest(i + 1) }
        }
        return nest(0)
    }

    /// Backward. dh [n, d] -> dsources K × [n, d] += …, dquery [d] += ….
    /// A source's gradient has two paths, as a value (α·dh) and as a key (through the softmax and RMSNorm):
    /// with dz = α(dα − Σ_t α_t dα_t) and k̂ = rstd·v, d v += α·dh + rstd·dz·(w − k̂·z/d) and dw += dz·k̂.
    public static func backward(_ dh: Tensor, query: Tensor, sources: [Tensor], saved: Saved,
                                dsources: inout [Tensor], dquery: inout Tensor) {
        let n = dh.rows, d = dh.cols, kCount = sources.count
        precondition(dsources.count == kCount)
        let dz = logitGradients(dh, sources: sources, saved: saved)
        let invD = 1 / Float(d)
        // Per source and token the two coefficients of the key path: c = rstd·dz and ck = z/d·rstd (k̂ = rstd·v).
        var coef = [Float](repeating: 0, count: 2 * kCount * n)
        for k in 0..<(kCount * n) {
            let s = saved.rstd[k]
            coef[2 * k] = s * dz[k]; coef[2 * k + 1] = saved.logits[k] * invD * s
        }
        // Columns in tiles of 16: for one tile the query w and its gradient dw stay in registers while the tokens
        // stream by, instead of being loaded (and dw stored) once per token. Every element sees the same operations
        // in the same order as the plain loop (`backwardReference`), so the result is bitwise the same.
        let tiled = d - d % 16
        dh.data.withUnsafeBufferPointer { g in
        query.data.withUnsafeBufferPointer { w in
        dquery.data.withUnsafeMutableBufferPointer { dw in
        saved.alpha.withUnsafeBufferPointer { al in
        coef.withUnsafeBufferPointer { cf in
            for i in 0..<kCount {
                sources[i].data.withUnsafeBufferPointer { v in
                    dsources[i].data.withUnsafeMutableBufferPointer { dv in
                        var j0 = 0
                        while j0 < tiled {
                            let wv = UnsafeRawPointer(w.baseAddress! + j0).loadUnaligned(as: SIMD16<Float>.self)
                            var dwv = UnsafeRawPointer(dw.baseAddress! + j0).loadUnaligned(as: SIMD16<Float>.self)
                            for r in 0..<n {
                                let k = i * n + r
                                let a = al[k], c = cf[2 * k], ck = cf[2 * k + 1], off = r * d + j0
                                let gv = UnsafeRawPointer(g.baseAddress! + off).loadUnaligned(as: SIMD16<Float>.self)
                                let x = UnsafeRawPointer(v.baseAddress! + off).loadUnaligned(as: SIMD16<Float>.self)
                                let out = UnsafeMutableRawPointer(dv.baseAddress! + off)
                                let o = out.loadUnaligned(as: SIMD16<Float>.self)
                                out.storeBytes(of: o + (a * gv + c * (wv - ck * x)), as: SIMD16<Float>.self)
                                dwv = dwv + c * x
                            }
                            UnsafeMutableRawPointer(dw.baseAddress! + j0).storeBytes(of: dwv, as: SIMD16<Float>.self)
                            j0 += 16
                        }
                        guard tiled < d else { return }
                        for r in 0..<n {
                            let k = i * n + r
                            let a = al[k], c = cf[2 * k], ck = cf[2 * k + 1]
                            let gr = g.baseAddress! + r * d, row = v.baseAddress! + r * d, out = dv.baseAddress! + r * d
                            for j in tiled..<d {
                                out[j] += a * gr[j] + c * (w[j] - ck * row[j])
                                dw[j] += c * row[j]
                            }
                        }
                    }
                }
            }
        }}}}}
    }

    /// First pass of `backward`: dz = α(dα − Σ_t α_t dα_t) with dα_i[r] = dh[r] · v_i[r], [K·n].
    static func logitGradients(_ dh: Tensor, sources: [Tensor], saved: Saved) -> [Float] {
        let n = dh.rows, d = dh.cols, kCount = sources.count
        var dz = [Float](repeating: 0, count: kCount * n)
        dh.data.withUnsafeBufferPointer { g in
        saved.alpha.withUnsafeBufferPointer { al in
        dz.withUnsafeMutableBufferPointer { dzs in
            for i in 0..<kCount {  // dα_i[r] = dh[r] · v_i[r]
                sources[i].data.withUnsafeBufferPointer { v in
                    for r in 0..<n {
                        let gr = g.baseAddress! + r * d, row = v.baseAddress! + r * d
                        dzs[i * n + r] = VectorKernels.dot(gr, row, d)
                    }
                }
            }
            for r in 0..<n {  // softmax backward
                var dot: Float = 0
                for i in 0..<kCount { dot += al[i * n + r] * dzs[i * n + r] }
                for i in 0..<kCount { dzs[i * n + r] = al[i * n + r] * (dzs[i * n + r] - dot) }
            }
        }}}
        return dz
    }

    /// `backward` in its plain form (token by token over every column in the second pass), kept as the reference
    /// the tiled loop must equal bit for bit: dv_i[r] += α·dh[r] + c·(w − ck·v_i[r]) and dw += c·v_i[r].
    static func backwardReference(_ dh: Tensor, query: Tensor, sources: [Tensor], saved: Saved,
                                  dsources: inout [Tensor], dquery: inout Tensor) {
        let n = dh.rows, d = dh.cols, kCount = sources.count, invD = 1 / Float(d)
        let dz = logitGradients(dh, sources: sources, saved: saved)
        dh.data.withUnsafeBufferPointer { g in
        query.data.withUnsafeBufferPointer { w in
        dquery.data.withUnsafeMutableBufferPointer { dw in
            for i in 0..<kCount {
                sources[i].data.withUnsafeBufferPointer { v in
                    dsources[i].data.withUnsafeMutableBufferPointer { dv in
                        for r in 0..<n {
                            let k = i * n + r
                            let a = saved.alpha[k], s = saved.rstd[k], dzk = dz[k], zk = saved.logits[k]
                            let c = s * dzk, ck = zk * invD * s  // k̂ = s·v
                            let gr = g.baseAddress! + r * d, row = v.baseAddress! + r * d, out = dv.baseAddress! + r * d
                            for j in 0..<d {
                                out[j] += a * gr[j] + c * (w[j] - ck * row[j])
                                dw[j] += c * row[j]
                            }
                        }
                    }
                }
            }
        }}}
    }
}
