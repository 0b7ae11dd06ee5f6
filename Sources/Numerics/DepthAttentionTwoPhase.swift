import CKernels

/// The two-phase form of depth attention for inference (paper §4.2, Algorithm 1; DESIGN §3).
///
/// Phase 1 attends all S pseudo-queries of a block over the completed blocks at once: one `sgemm` of the queries
/// [S, d] against the stacked normalised keys [K·n, d] gives every logit, from which each query keeps its softmax
/// statistics (per-token max m, normaliser ℓ) and unnormalised weights e^{z−m}. Phase 2 walks the block and merges
/// the intra-block partial with an online softmax. On a CPU the unnormalised output o⁽¹⁾ = Σ_i e^{z_i−m} v_i is not
/// materialised for all S queries up front: it is fused into phase 2's single pass over the values, which keeps
/// S·n·d floats out of cache. The result equals `DepthAttention.forward` up to float rounding.
public enum DepthAttentionTwoPhase {
    /// Phase-1 statistics of one query over K completed blocks and n tokens.
    public struct Stats: Sendable {
        /// Unnormalised weights e^{z_i − m}, [K·n] (source-major).
        public var weights: [Float]
        /// Per-token max logit m, [n].
        public var max: [Float]
        /// Per-token normaliser ℓ = Σ_i e^{z_i − m}, [n].
        public var sum: [Float]

        /// o⁽¹⁾ = Σ_i e^{z_i − m} v_i, [n, d] (the ATTNWITHSTATS output of the paper; used by tests).
        public func output(sources: [Tensor]) -> Tensor {
            DepthAttentionTwoPhase.combine(self, sources: sources, partial: nil, partialWeight: { _ in 0 },
                                           scale: { _ in 1 })
        }
    }

    /// Normalised keys of the completed blocks, stacked [K·n, d], computed once per block and shared by its S queries
    /// (the block representations act like a KV cache shared across layers).
    public static func keys(_ sources: [Tensor]) -> Tensor {
        var unused: [Float] = []
        return keys(sources, rstd: &unused)
    }

    /// `keys(sources)`, also appending each row's reciprocal RMS to `rstd` (source-major): exactly
    /// `DepthAttention.rstd` of each source, so the output attention can reuse it instead of recomputing it.
    public static func keys(_ sources: [Tensor], rstd: inout [Float]) -> Tensor {
        var stacked: [Float] = []
        for src in sources { appendKeys(of: src, to: &stacked, rstd: &rstd) }
        return Tensor(shape: [sources.count * sources[0].rows, sources[0].cols], data: stacked)
    }

    /// Appends the normalised keys of one completed block [n, d] to the stacked keys (row-major, d per row) and its
    /// rows' reciprocal RMS to `rstd`. Inference grows the keys block by block in place this way (amortised O(n·d)
    /// per block) instead of concatenating a new array of all K·n rows for every block.
    public static func appendKeys(of block: Tensor, to stacked: inout [Float], rstd: inout [Float]) {
        let n = block.rows, d = block.cols, start = stacked.count
        stacked.append(contentsOf: repeatElement(0, count: n * d))
        rstd.reserveCapacity(rstd.count + n)
        block.data.withUnsafeBufferPointer { v in
            stacked.withUnsafeMutableBufferPointer { out in
                for r in 0..<n {
                    let row = v.baseAddress! + r * d, o = out.baseAddress! + start + r * d
                    let s = DepthAttention.rowRstd(row, d, kernel: .current)
                    rstd.append(s)
                    for j in 0..<d { o[j] = row[j] * s }
                }
            }
        }
    }

    /// Phase 1. queries S × [d] over stacked keys [K·n, d] (from `keys`) -> S stats (logits [S, K·n] in one product).
    public static func phase1(queries: [Tensor], keys: Tensor, tokens n: Int) -> [Stats] {
        let sCount = queries.count, d = keys.cols, kCount = keys.rows / n
        BLAS.configureDeterministic()
        var q = Tensor(zeros: [sCount, d])
        for (i, w) in queries.enumerated() { q.data.replaceSubrange((i * d)..<((i + 1) * d), with: w.data) }
        var z = [Float](repeating: 0, count: sCount * kCount * n)
        keys.data.withUnsafeBufferPointer { kp in
            q.data.withUnsafeBufferPointer { qp in
                z.withUnsafeMutableBufferPointer { zp in
                    BLAS.sgemm(transA: false, transB: true, m: sCount, n: kCount * n, k: d, alpha: 1,
                               a: qp.baseAddress!, lda: d, b: kp.baseAddress!, ldb: d,
                               beta: 0, c: zp.baseAddress!, ldc: kCount * n)
                }
            }
        }
        return (0..<sCount).map { s in
            var w = Array(z[(s * kCount * n)..<((s + 1) * kCount * n)])
            var m = [Float](repeating: -.infinity, count: n), l = [Float](repeating: 0, count: n)
            for i in 0..<kCount { for r in 0..<n { m[r] = Swift.max(m[r], w[i * n + r]) } }
            for i in 0..<kCount { for r in 0..<n { let e = _expShifted(w[i * n + r] - m[r]); w[i * n + r] = e; l[r] += e } }
            return Stats(weights: w, max: m, sum: l)
        }
    }

    /// Phase 1 without stacked keys, for the AVX2 and AVX-512 kernels: queries S × [d] over the completed blocks
    /// K × [n, d] with their key statistics `rstd` ([K·n], each block's `DepthAttention.rstd`, source-major) -> S stats.
    /// The same logits rstd·(q·v) as the product with the normalised keys, computed by the kernel's phase 1
    /// (`attnres_avx2_depth_phase1`, `attnres_avx512_depth_phase1`) in one pass over each token's K rows instead of by
    /// sgemm: at the widths here (S = L/N queries, d ≤ 256) sgemm's packing of a normalised copy of every block costs
    /// more than the dots themselves.
    public static func phase1(queries: [Tensor], sources: [Tensor], rstd: [Float],
                              kernel: DepthKernel = .current) -> [Stats] {
        let kCount = sources.count, n = sources[0].rows, d = sources[0].cols
        precondition(rstd.count == kCount * n && queries.allSatisfy { $0.count == d })
        guard let fused = kernel.fused else { preconditionFailure("phase1(queries:sources:rstd:) runs a C kernel") }
        // one kernel call per query, straight into that query's arrays (the queries are independent: the same bits as
        // all S in one call, without a shared buffer sliced and copied afterwards)
        return rstd.withUnsafeBufferPointer { rs in
            DepthAttention.withSourcePointers(sources) { vs in
                queries.map { q in
                    var w = [Float](unsafeUninitializedCapacity: kCount * n) { $1 = kCount * n }
                    var m = [Float](unsafeUninitializedCapacity: n) { $1 = n }, l = m
                    q.data.withUnsafeBufferPointer { qp in
                    w.withUnsafeMutableBufferPointer { wp in
                    m.withUnsafeMutableBufferPointer { mp in
                    l.withUnsafeMutableBufferPointer { lp in
                        fused.phase1(qp.baseAddress!, 1, vs, rs.baseAddress!, kCount, n, d, wp.baseAddress!,
                                     mp.baseAddress!, lp.baseAddress!)
                    }}}}
                    return Stats(weights: w, max: m, sum: l)
                }
            }
        }
    }

    /// Phase 2 for the first layer of a block (no partial): h = o⁽¹⁾ / ℓ⁽¹⁾. sources K × [n, d] -> [n, d].
    public static func normalize(_ stats: Stats, sources: [Tensor], kernel: DepthKernel = .current) -> Tensor {
        if let fused = kernel.fused { return fusedPhase2(stats, sources: sources, query: nil, partial: nil, fused) }
        return combine(stats, sources: sources, partial: nil, partialWeight: { _ in 0 }, scale: { 1 / stats.sum[$0] },
                       kernel: kernel)
    }

    /// `normalize` and `merge` in one C call (`attnres_avx2_depth_merge`, `attnres_avx512_depth_merge`): the partial's
    /// logit, the online-softmax merge and the weighted sum per token, with no per-layer Swift buffers but the output.
    static func fusedPhase2(_ stats: Stats, sources: [Tensor], query: Tensor?, partial: Tensor?,
                            _ fused: attnres_depth_kernels) -> Tensor {
        let n = sources[0].rows, d = sources[0].cols, kCount = sources.count
        precondition(stats.weights.count == kCount * n && stats.max.count == n && stats.sum.count == n)
        precondition(partial.map { $0.rows == n && $0.cols == d } ?? true && query.map { $0.count == d } ?? true)
        var h = [Float](unsafeUninitializedCapacity: n * d) { _, count in count = n * d }
        stats.weights.withUnsafeBufferPointer { wp in
        stats.max.withUnsafeBufferPointer { mp in
        stats.sum.withUnsafeBufferPointer { lp in
        h.withUnsafeMutableBufferPointer { hp in
        DepthAttention.withSourcePointers(sources) { vs in
            guard let partial, let query else {
                fused.merge(vs, wp.baseAddress!, mp.baseAddress!, lp.baseAddress!, kCount, n, d, nil, nil, hp.baseAddress!)
                return
            }
            partial.data.withUnsafeBufferPointer { pp in
                query.data.withUnsafeBufferPointer { qp in
                    fused.merge(vs, wp.baseAddress!, mp.baseAddress!, lp.baseAddress!, kCount, n, d, qp.baseAddress!,
                                pp.baseAddress!, hp.baseAddress!)
                }
            }
        }}}}}
        return Tensor(shape: [n, d], data: h)
    }

    /// Phase 2 for a later layer: merges the partial b_n^{i} (a single source with key RMSNorm(partial)) into the
    /// phase-1 stats with an online softmax, m = max(m1, z2), h = (e^{m1−m} o⁽¹⁾ + e^{z2−m} partial) /
    /// (e^{m1−m} ℓ⁽¹⁾ + e^{z2−m}). query [d], sources K × [n, d], partial [n, d] -> h [n, d].
    public static func merge(_ stats: Stats, sources: [Tensor], query: Tensor, partial: Tensor,
                             kernel: DepthKernel = .current) -> Tensor {
        if let fused = kernel.fused { return fusedPhase2(stats, sources: sources, query: query, partial: partial, fused) }
        let n = partial.rows, d = partial.cols
        var a = [Float](repeating: 0, count: n), b = [Float](repeating: 0, count: n)
        partial.data.withUnsafeBufferPointer { pp in
            query.data.withUnsafeBufferPointer { w in
                for r in 0..<n {
                    let row = pp.baseAddress! + r * d
                    var dot: Float = 0, ss: Float = 0
                    (dot, ss) = VectorKernels.treeDotAndSquares(w.baseAddress!, row, d)
                    let z2 = DepthAttention.rstd(sumOfSquares: ss, d) * dot  // w · RMSNorm(partial), as one-pass
                    let m = Swift.max(stats.max[r], z2)
                    let e1 = _expShifted(stats.max[r] - m), e2 = _expShifted(z2 - m)
                    let inv = 1 / (e1 * stats.sum[r] + e2)
                    a[r] = e1 * inv; b[r] = e2 * inv
                }
            }
        }
        return combine(stats, sources: sources, partial: partial, partialWeight: { b[$0] }, scale: { a[$0] },
                       kernel: kernel)
    }

    /// One pass over the values: h[r] = scale(r) · Σ_i weights_i[r] v_i[r] + partialWeight(r) · partial[r]
    /// (as Σ_i (weights_i[r]·scale(r)) v_i[r] + partialWeight(r) · partial[r], in that order; `DepthAttention.mix`).
    @inline(__always)
    static func combine(_ stats: Stats, sources: [Tensor], partial: Tensor?, partialWeight: (Int) -> Float,
                        scale: (Int) -> Float, kernel: DepthKernel = .current) -> Tensor {
        let n = sources[0].rows, d = sources[0].cols, kCount = sources.count
        var c = [Float](repeating: 0, count: (kCount + (partial == nil ? 0 : 1)) * n)
        for r in 0..<n {
            let s = scale(r)
            for i in 0..<kCount { c[i * n + r] = stats.weights[i * n + r] * s }
            if partial != nil { c[kCount * n + r] = partialWeight(r) }
        }
        var h = [Float](unsafeUninitializedCapacity: n * d) { _, count in count = n * d }
        h.withUnsafeMutableBufferPointer { hp in
            c.withUnsafeBufferPointer { cp in
                DepthAttention.mix(sources: partial.map { sources + [$0] } ?? sources, weights: cp,
                                   into: hp.baseAddress!, rows: n, cols: d, accumulate: false, kernel: kernel)
            }
        }
        return Tensor(shape: [n, d], data: h)
    }
}
