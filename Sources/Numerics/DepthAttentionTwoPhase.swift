/// The two-phase form of depth attention for inference (paper §4.2, Algorithm 1; DESIGN §3).
///
/// Phase 1 attends all S pseudo-queries of a block over the completed blocks at once: one `sgemm` of the stacked
/// normalised keys [K·n, d] against the queries [d, S], returning per query the *unnormalised* output with its
/// softmax statistics (running max m and normaliser ℓ). Phase 2 walks the block and merges the intra-block partial
/// with an online softmax. The result equals `DepthAttention.forward` up to float rounding.
public enum DepthAttentionTwoPhase {
    /// Unnormalised attention output with its log-sum-exp statistics, for one query over n tokens.
    public struct Stats: Sendable {
        /// Σ_i e^{z_i − m} v_i, [n, d].
        public var output: Tensor
        /// Per-token max logit m, [n].
        public var max: [Float]
        /// Per-token normaliser ℓ = Σ_i e^{z_i − m}, [n].
        public var sum: [Float]
    }

    /// Normalised keys of the completed blocks, stacked [K·n, d], computed once per block and shared by its S queries
    /// (the block representations act like a KV cache shared across layers).
    public static func keys(_ sources: [Tensor]) -> Tensor {
        let n = sources[0].rows, d = sources[0].cols
        var stacked = Tensor(zeros: [sources.count * n, d])
        stacked.data.withUnsafeMutableBufferPointer { out in
            for (i, src) in sources.enumerated() {
                src.data.withUnsafeBufferPointer { v in
                    for r in 0..<n {
                        let row = v.baseAddress! + r * d, o = out.baseAddress! + (i * n + r) * d
                        let s = 1 / _sqrt(VectorKernels.dot(row, row, d) / Float(d) + RMSNorm.epsilon)
                        for j in 0..<d { o[j] = row[j] * s }
                    }
                }
            }
        }
        return stacked
    }

    /// Phase 1. queries S × [d], sources K × [n, d] with their stacked normalised keys [K·n, d] -> S stats
    /// (ATTNWITHSTATS for all S queries at once: logits [S, K·n] = Q · keysᵀ in one product).
    public static func phase1(queries: [Tensor], sources: [Tensor], keys: Tensor) -> [Stats] {
        let sCount = queries.count, kCount = sources.count
        let n = sources[0].rows, d = sources[0].cols
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
        var result: [Stats] = []
        result.reserveCapacity(sCount)
        z.withUnsafeMutableBufferPointer { zp in
            for s in 0..<sCount {
                let zs = zp.baseAddress! + s * kCount * n  // [K, n] logits of query s
                var m = [Float](repeating: -.infinity, count: n)
                for i in 0..<kCount { for r in 0..<n { m[r] = Swift.max(m[r], zs[i * n + r]) } }
                var l = [Float](repeating: 0, count: n)
                for i in 0..<kCount { for r in 0..<n { let e = _exp(zs[i * n + r] - m[r]); zs[i * n + r] = e; l[r] += e } }
                var o = Tensor(zeros: [n, d])
                o.data.withUnsafeMutableBufferPointer { op in
                    for i in 0..<kCount {
                        sources[i].data.withUnsafeBufferPointer { vp in
                            for r in 0..<n {
                                let e = zs[i * n + r]
                                let out = op.baseAddress! + r * d, row = vp.baseAddress! + r * d
                                for j in 0..<d { out[j] += e * row[j] }
                            }
                        }
                    }
                }
                result.append(Stats(output: o, max: m, sum: l))
            }
        }
        return result
    }

    /// Phase 2 for the first layer of a block (no partial): h = o⁽¹⁾ / ℓ⁽¹⁾. -> [n, d]
    public static func normalize(_ stats: Stats) -> Tensor {
        var h = stats.output
        let d = h.cols
        for r in 0..<h.rows {
            let inv = 1 / stats.sum[r]
            for j in 0..<d { h.data[r * d + j] *= inv }
        }
        return h
    }

    /// Phase 2 for a later layer: merges the partial b_n^{i} (a single source with key RMSNorm(partial))
    /// into the phase-1 stats with an online softmax. query [d], partial [n, d] -> h [n, d].
    public static func merge(_ stats: Stats, query: Tensor, partial: Tensor) -> Tensor {
        let n = partial.rows, d = partial.cols
        var h = Tensor(zeros: [n, d])
        partial.data.withUnsafeBufferPointer { pp in
        query.data.withUnsafeBufferPointer { w in
        stats.output.data.withUnsafeBufferPointer { op in
        h.data.withUnsafeMutableBufferPointer { hp in
            for r in 0..<n {
                let row = pp.baseAddress! + r * d, o = op.baseAddress! + r * d, out = hp.baseAddress! + r * d
                let ss = VectorKernels.dot(row, row, d), dot = VectorKernels.dot(w.baseAddress!, row, d)
                let z2 = dot / _sqrt(ss / Float(d) + RMSNorm.epsilon)  // w · RMSNorm(partial)
                let m = Swift.max(stats.max[r], z2)
                let e1 = _exp(stats.max[r] - m), e2 = _exp(z2 - m)
                let inv = 1 / (e1 * stats.sum[r] + e2)
                let a = e1 * inv, b = e2 * inv
                for j in 0..<d { out[j] = a * o[j] + b * row[j] }
            }
        }}}}
        return h
    }
}
