import CKernels

/// Depth attention, the AttnRes operator (paper Eqs. 2–6; DESIGN §3): for every token r,
///     h[r] = Σ_i α_i[r] · v_i[r],   α_·[r] = softmax_i( w · RMSNorm(v_i[r]) )
/// over K sources v_0 … v_{K-1} (block representations and, inside a block, the partial), with one learned
/// pseudo-query w per layer. Keys are RMS-normalised *without* gain, values are raw, the softmax runs over
/// depth separately per token. This is the one-pass form; `DepthAttentionTwoPhase` is the inference form.
///
/// The normalised keys are never materialised: z_i[r] = rstd_i[r] · (w · v_i[r]), and backward uses
/// w · k̂ = z to fold the RMSNorm backward into one pass per source.
public enum DepthAttention {
    /// What backward needs: per source and token the reciprocal RMS, the logit z and the weight α, each [K·n]
    /// (source-major), held in one buffer [rstd | logits | α] so a forward allocates it once.
    public struct Saved: Sendable {
        /// rstd, logits and α one after the other, 3·K·n floats.
        var statistics: [Float]
        /// K·n, the length of each part.
        let count: Int

        public init(rstd: [Float], logits: [Float], alpha: [Float]) {
            precondition(rstd.count == logits.count && logits.count == alpha.count, "DepthAttention.Saved: parts differ in length")
            statistics = rstd + logits + alpha; count = rstd.count
        }

        init(statistics: [Float], count: Int) {
            precondition(statistics.count == 3 * count)
            self.statistics = statistics; self.count = count
        }

        public var rstd: [Float] {
            get { Array(statistics[0..<count]) }
            set { precondition(newValue.count == count); statistics.replaceSubrange(0..<count, with: newValue) }
        }
        public var logits: [Float] {
            get { Array(statistics[count..<(2 * count)]) }
            set { precondition(newValue.count == count); statistics.replaceSubrange(count..<(2 * count), with: newValue) }
        }
        public var alpha: [Float] {
            get { Array(statistics[(2 * count)..<(3 * count)]) }
            set { precondition(newValue.count == count); statistics.replaceSubrange((2 * count)..<(3 * count), with: newValue) }
        }

        /// Calls `body` with pointers to rstd, logits and α (each K·n floats).
        func withParts<R>(_ body: (UnsafePointer<Float>, UnsafePointer<Float>, UnsafePointer<Float>) -> R) -> R {
            statistics.withUnsafeBufferPointer { p in body(p.baseAddress!, p.baseAddress! + count, p.baseAddress! + 2 * count) }
        }
    }

    /// The reciprocal RMS of every row of one source, [n]: the key normalisation, which does not depend on the query.
    /// A completed block never changes within a forward, so a caller attending over it from several layers computes
    /// this once and passes it to `forward(query:sources:rstd:)`; it is the very expression `forward` evaluates, so
    /// the result is bitwise the same.
    public static func rstd(_ source: Tensor, kernel: DepthKernel = .current) -> [Float] {
        let n = source.rows, d = source.cols
        var out = [Float](repeating: 0, count: n)
        source.data.withUnsafeBufferPointer { v in
            out.withUnsafeMutableBufferPointer { rs in
                // A C kernel does the whole block in one call (bitwise its per-row statistic, `rowRstd`).
                if let fused = kernel.fused, n > 0 { fused.rstd_rows(v.baseAddress!, n, d, rs.baseAddress!); return }
                for r in 0..<n { rs[r] = rowRstd(v.baseAddress! + r * d, d, kernel: kernel) }
            }
        }
        return out
    }

    /// 1 / √(mean(row²) + eps), shared by `rstd`, `forward` and the two-phase keys so a cached value equals a
    /// recomputed one bit for bit (per kernel: each sums the squares in the order its fused forward does).
    @inline(__always)
    static func rowRstd(_ row: UnsafePointer<Float>, _ d: Int, kernel: DepthKernel) -> Float {
        guard let fused = kernel.fused else { return rstd(sumOfSquares: VectorKernels.treeDot(row, row, d), d) }
        return rstd(sumOfSquares: fused.sum_squares(row, d), d)
    }

    /// 1 / √(ss/d + eps) from a row's sum of squares (`VectorKernels.treeDot(row, row, d)`).
    @inline(__always)
    static func rstd(sumOfSquares ss: Float, _ d: Int) -> Float { 1 / _sqrt(ss / Float(d) + RMSNorm.epsilon) }

    /// Forward. query [d], sources K × [n, d] (K ≥ 1) -> h [n, d].
    public static func forward(query: Tensor, sources: [Tensor]) -> (Tensor, Saved) {
        forward(query: query, sources: sources, rstd: [])
    }

    /// Forward with the key statistics of some sources precomputed: `cached[i]` (when present and non-nil) must be
    /// `rstd(sources[i])`; the others are computed here. Same result as `forward(query:sources:)`, bit for bit.
    ///
    /// One fused pass per token: the K rows of token r (K·d floats, in L1) give their logits (one pass over each row
    /// for w·v and, when not cached, Σv²), the softmax over depth, then the weighted sum in column tiles of 16 kept in
    /// registers across the sources. Every source is read from memory once; the only buffers allocated are the
    /// output and the `Saved` statistics. `forwardReference` is the plain form it is tested against.
    /// `kernel` chooses the implementation (`DepthKernel`; tests pass each, everything else takes the default). The
    /// AVX-512 kernel goes in tiles of up to 16 tokens instead, one token per lane: the tile's logits source by source,
    /// the softmax for all its tokens at once, then the weighted sums (`attnres_avx512_depth_forward`).
    public static func forward(query: Tensor, sources: [Tensor], rstd cached: [[Float]?],
                               kernel: DepthKernel = .current) -> (Tensor, Saved) {
        precondition(!sources.isEmpty, "DepthAttention needs at least one source")
        let n = sources[0].rows, d = sources[0].cols, kCount = sources.count
        precondition(query.count == d && cached.count <= kCount)
        for (i, src) in sources.enumerated() {
            precondition(src.rows == n && src.cols == d, "DepthAttention: source shapes differ")
            if i < cached.count, let c = cached[i] { precondition(c.count == n, "DepthAttention: cached rstd has the wrong length") }
        }
        var out = [Float](unsafeUninitializedCapacity: n * d) { _, count in count = n * d }
        if let fused = kernel.fused {
            // [rstd | logits | α] in one buffer: cached statistics copied in, the rest left for the kernel to write
            // (`known` says which are which)
            let kn = kCount * n
            var statistics = [Float](unsafeUninitializedCapacity: 3 * kn) { buf, count in
                for i in 0..<min(cached.count, kCount) {
                    cached[i]?.withUnsafeBufferPointer { c in (buf.baseAddress! + i * n).update(from: c.baseAddress!, count: n) }
                }
                count = 3 * kn
            }
            withUnsafeTemporaryAllocation(of: UInt8.self, capacity: kCount) { known in
                for i in 0..<kCount { known[i] = i < cached.count && cached[i] != nil ? 1 : 0 }
                query.data.withUnsafeBufferPointer { wb in
                statistics.withUnsafeMutableBufferPointer { st in
                out.withUnsafeMutableBufferPointer { hb in
                withSourcePointers(sources) { vs in
                    let rs = st.baseAddress!
                    fused.forward(wb.baseAddress!, vs, kCount, n, d, rs, known.baseAddress!, rs + kn, rs + 2 * kn,
                                  hb.baseAddress!)
                }}}}
            }
            return (Tensor(shape: [n, d], data: out), Saved(statistics: statistics, count: kn))
        }
        var z = [Float](unsafeUninitializedCapacity: kCount * n) { _, count in count = kCount * n }
        var alpha = [Float](unsafeUninitializedCapacity: kCount * n) { _, count in count = kCount * n }
        // Cached statistics are copied in first; `known[i]` says whether row statistics of source i are already there.
        var rstd = [Float](repeating: 0, count: kCount * n)
        var known = [Bool](repeating: false, count: kCount)
        for i in 0..<min(cached.count, kCount) {
            if let c = cached[i] { rstd.replaceSubrange((i * n)..<((i + 1) * n), with: c); known[i] = true }
        }
        let tiled = d - d % 16
        query.data.withUnsafeBufferPointer { wb in
        rstd.withUnsafeMutableBufferPointer { rs in
        z.withUnsafeMutableBufferPointer { zs in
        alpha.withUnsafeMutableBufferPointer { al in
        out.withUnsafeMutableBufferPointer { hb in
        known.withUnsafeBufferPointer { kn in
        withBasePointers(sources) { vs in
            let w = wb.baseAddress!, h = hb.baseAddress!
            for r in 0..<n {
                var m = -Float.infinity
                for i in 0..<kCount {
                    let row = vs[i] + r &* d, k = i &* n &+ r
                    let s: Float, dot: Float
                    if kn[i] {
                        s = rs[k]; dot = VectorKernels.treeDot(w, row, d)
                    } else {
                        let (wx, xx) = VectorKernels.treeDotAndSquares(w, row, d)
                        s = Self.rstd(sumOfSquares: xx, d); dot = wx
                        rs[k] = s
                    }
                    let zk = s * dot
                    zs[k] = zk
                    m = max(m, zk)
                }
                var sum: Float = 0
                for i in 0..<kCount { let e = _expShifted(zs[i &* n &+ r] - m); al[i &* n &+ r] = e; sum += e }
                let inv = 1 / sum
                for i in 0..<kCount { al[i &* n &+ r] *= inv }
                // h[r] = Σ_i α_i v_i[r], sources in order, each tile starting from 0 (as `mixReference` into zeros)
                let o = h + r &* d
                var j0 = 0
                while j0 < tiled {
                    var acc = SIMD16<Float>(repeating: 0)
                    for i in 0..<kCount {
                        let x = UnsafeRawPointer(vs[i] + (r &* d &+ j0)).loadUnaligned(as: SIMD16<Float>.self)
                        acc = acc + al[i &* n &+ r] * x
                    }
                    UnsafeMutableRawPointer(o + j0).storeBytes(of: acc, as: SIMD16<Float>.self)
                    j0 += 16
                }
                for j in tiled..<d {
                    var acc: Float = 0
                    for i in 0..<kCount { acc += al[i &* n &+ r] * vs[i][r &* d &+ j] }
                    o[j] = acc
                }
            }
        }}}}}}}
        return (Tensor(shape: [n, d], data: out), Saved(rstd: rstd, logits: z, alpha: alpha))
    }

    /// out[r] += Σ_i weights[i·n + r] · v_i[r], sources in order. Token by token in column tiles of 16 whose partial
    /// sum stays in registers across the K sources, instead of loading and storing `out` once per source. Each element
    /// sees the same operations in the same order as the plain loop (`mixReference`), so the result is bitwise the same.
    /// With `accumulate: false` the sums start from 0 instead of from `out`, which may then be uninitialised: bitwise
    /// what accumulating into zeros gives, without writing the zeros first.
    static func mix(sources: [Tensor], weights: UnsafeBufferPointer<Float>, into out: UnsafeMutablePointer<Float>,
                    rows n: Int, cols d: Int, accumulate: Bool = true, kernel: DepthKernel = .current) {
        let kCount = sources.count, tiled = d - d % 16
        if let fused = kernel.fused {
            withSourcePointers(sources) { vs in fused.mix(vs, weights.baseAddress!, kCount, n, d, out, accumulate ? 1 : 0) }
            return
        }
        withBasePointers(sources) { vs in
            for r in 0..<n {
                var j0 = 0
                while j0 < tiled {
                    let o = UnsafeMutableRawPointer(out + (r &* d &+ j0))
                    var acc = accumulate ? o.loadUnaligned(as: SIMD16<Float>.self) : SIMD16<Float>(repeating: 0)
                    for i in 0..<kCount {
                        let x = UnsafeRawPointer(vs[i] + (r &* d &+ j0)).loadUnaligned(as: SIMD16<Float>.self)
                        acc = acc + weights[i &* n &+ r] * x
                    }
                    o.storeBytes(of: acc, as: SIMD16<Float>.self)
                    j0 += 16
                }
                for j in tiled..<d {
                    var acc: Float = accumulate ? out[r &* d &+ j] : 0
                    for i in 0..<kCount { acc += weights[i &* n &+ r] * vs[i][r &* d &+ j] }
                    out[r &* d &+ j] = acc
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

    /// Calls `body` with a C array of the base addresses of every tensor's elements (the `sources` argument of the
    /// CKernels functions), all valid for the duration of the call; the array lives on the stack.
    static func withSourcePointers<R>(_ tensors: [Tensor], _ body: (UnsafePointer<UnsafePointer<Float>?>) -> R) -> R {
        withUnsafeTemporaryAllocation(of: UnsafePointer<Float>?.self, capacity: Swift.max(tensors.count, 1)) { buf in
            func nest(_ i: Int) -> R {
                if i == tensors.count { return body(UnsafePointer(buf.baseAddress!)) }
                return tensors[i].data.withUnsafeBufferPointer { p in buf[i] = p.baseAddress!; return nest(i + 1) }
            }
            return nest(0)
        }
    }

    /// `withSourcePointers` for gradients: writable, reached through the array's buffer so holding K element buffers at
    /// once is not K overlapping accesses to `tensors`.
    static func withMutableSourcePointers<R>(_ tensors: inout [Tensor],
                                             _ body: (UnsafePointer<UnsafeMutablePointer<Float>?>) -> R) -> R {
        withUnsafeTemporaryAllocation(of: UnsafeMutablePointer<Float>?.self, capacity: Swift.max(tensors.count, 1)) { buf in
            tensors.withUnsafeMutableBufferPointer { tp in
                func nest(_ i: Int) -> R {
                    if i == tp.count { return body(UnsafePointer(buf.baseAddress!)) }
                    return tp[i].data.withUnsafeMutableBufferPointer { p in buf[i] = p.baseAddress!; return nest(i + 1) }
                }
                return nest(0)
            }
        }
    }

    /// Backward. dh [n, d] -> dsources K × [n, d] += …, dquery [d] += ….
    /// A source's gradient has two paths, as a value (α·dh) and as a key (through the softmax and RMSNorm):
    /// with dz = α(dα − Σ_t α_t dα_t) and k̂ = rstd·v, d v += α·dh + rstd·dz·(w − k̂·z/d) and dw += dz·k̂.
    ///
    /// Two passes. The first goes token by token: the K dots dα_i = dh[r]·v_i[r] (rows in L1), the softmax backward
    /// and the two key-path coefficients c = rstd·dz and ck = z/d·rstd. The second goes source by source and token by
    /// token along the rows (contiguous, so the rows stream from L2 in order; w and dw, d floats each, stay in L1) in
    /// tiles of 8 columns (16 would spill SSE2's 16 registers). `backwardReference` is the plain form it is tested
    /// against.
    ///
    /// The AVX2 and AVX-512 kernels (`attnres_avx2_depth_backward`, `attnres_avx512_depth_backward`) do both in one
    /// pass per token instead: the K rows of v and dv of a token are read and written while in L1, dh[r], w and dw
    /// once per column tile.
    ///
    /// With `accumulate: false` the source gradients are written instead (each element 0 + its increment: bitwise what
    /// accumulating into zero-filled buffers gives, without the zero fill); dquery always accumulates.
    public static func backward(_ dh: Tensor, query: Tensor, sources: [Tensor], saved: Saved,
                                dsources: inout [Tensor], dquery: inout Tensor, accumulate: Bool = true,
                                kernel: DepthKernel = .current) {
        let n = dh.rows, d = dh.cols, kCount = sources.count
        precondition(dsources.count == kCount && query.count == d)
        if let fused = kernel.fused {
            for i in 0..<kCount {
                precondition(dsources[i].count == n * d && sources[i].count == n * d,
                             "DepthAttention: gradient buffer \(i) has the wrong size")
            }
            dh.data.withUnsafeBufferPointer { g in
            query.data.withUnsafeBufferPointer { w in
            dquery.data.withUnsafeMutableBufferPointer { dw in
            saved.withParts { rs, zs, al in
            withSourcePointers(sources) { vs in
            withMutableSourcePointers(&dsources) { dvs in
                fused.backward(g.baseAddress!, w.baseAddress!, vs, dvs, kCount, n, d, al, rs, zs, dw.baseAddress!,
                               accumulate ? 1 : 0)
            }}}}}}
            return
        }
        let coef = keyPathCoefficients(dh, sources: sources, saved: saved)
        let tiled = d - d % 8
        dh.data.withUnsafeBufferPointer { g in
        query.data.withUnsafeBufferPointer { w in
        dquery.data.withUnsafeMutableBufferPointer { dw in
        saved.alpha.withUnsafeBufferPointer { al in
        coef.withUnsafeBufferPointer { cf in
            let wp = w.baseAddress!, dwp = dw.baseAddress!
            for i in 0..<kCount {
                precondition(dsources[i].count == n * d, "DepthAttention: gradient buffer \(i) has the wrong size")
                sources[i].data.withUnsafeBufferPointer { v in
                    dsources[i].data.withUnsafeMutableBufferPointer { dv in
                        for r in 0..<n {
                            let k = i &* n &+ r, off = r &* d
                            let a = al[k], c = cf[2 &* k], ck = cf[2 &* k &+ 1]
                            let gr = g.baseAddress! + off, row = v.baseAddress! + off, out = dv.baseAddress! + off
                            var j = 0
                            // two copies of the tile loop, so the accumulating one (every layer) has no branch per tile
                            @inline(__always) func tiles(_ old: (UnsafeMutableRawPointer) -> SIMD8<Float>) {
                                while j < tiled {
                                    let gv = UnsafeRawPointer(gr + j).loadUnaligned(as: SIMD8<Float>.self)
                                    let x = UnsafeRawPointer(row + j).loadUnaligned(as: SIMD8<Float>.self)
                                    let wv = UnsafeRawPointer(wp + j).loadUnaligned(as: SIMD8<Float>.self)
                                    let o = UnsafeMutableRawPointer(out + j)
                                    o.storeBytes(of: old(o) + (a * gv + c * (wv - ck * x)), as: SIMD8<Float>.self)
                                    let dwt = UnsafeMutableRawPointer(dwp + j)
                                    dwt.storeBytes(of: dwt.loadUnaligned(as: SIMD8<Float>.self) + c * x, as: SIMD8<Float>.self)
                                    j &+= 8
                                }
                            }
                            if accumulate {
                                tiles { $0.loadUnaligned(as: SIMD8<Float>.self) }
                            } else {
                                tiles { _ in SIMD8<Float>(repeating: 0) }
                            }
                            while j < d {
                                out[j] = (accumulate ? out[j] : 0) + (a * gr[j] + c * (wp[j] - ck * row[j]))
                                dwp[j] += c * row[j]
                                j &+= 1
                            }
                        }
                    }
                }
            }
        }}}}}
    }

    /// First pass of `backward`, token by token: dα_i = dh[r] · v_i[r], dz = α(dα − Σ_t α_t dα_t), and per source
    /// and token the key-path coefficients c = rstd·dz and ck = z/d·rstd, interleaved [c, ck] in source-major order
    /// [2·K·n].
    static func keyPathCoefficients(_ dh: Tensor, sources: [Tensor], saved: Saved) -> [Float] {
        let n = dh.rows, d = dh.cols, kCount = sources.count, invD = 1 / Float(d)
        var coef = [Float](unsafeUninitializedCapacity: 2 * kCount * n) { _, count in count = 2 * kCount * n }
        dh.data.withUnsafeBufferPointer { g in
        saved.alpha.withUnsafeBufferPointer { al in
        saved.rstd.withUnsafeBufferPointer { rs in
        saved.logits.withUnsafeBufferPointer { zs in
        coef.withUnsafeMutableBufferPointer { cf in
        withBasePointers(sources) { vs in
            for r in 0..<n {
                let gr = g.baseAddress! + r &* d
                var dot: Float = 0
                for i in 0..<kCount {  // dα_i, kept in the c slot until the softmax backward needs it
                    let da = VectorKernels.treeDot(gr, vs[i] + r &* d, d)
                    cf[2 &* (i &* n &+ r)] = da
                    dot += al[i &* n &+ r] * da
                }
                for i in 0..<kCount {
                    let k = i &* n &+ r, s = rs[k]
                    let dz = al[k] * (cf[2 &* k] - dot)
                    cf[2 &* k] = s * dz; cf[2 &* k &+ 1] = zs[k] * invD * s
                }
            }
        }}}}}}
        return coef
    }
}
