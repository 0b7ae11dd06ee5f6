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

    /// Normalised keys of the completed blocks, computed once per block and shared by its S queries
    /// (the block representations act like a KV cache shared across layers).
    public static func keys(_ sources: [Tensor]) -> [Tensor] { sources.map { RMSNorm.forward($0, gain: nil).0 } }

    /// Phase 1. queries S × [d], sources K × [n, d] with their normalised keys -> S stats (ATTNWITHSTATS, batched).
    public static func phase1(queries: [Tensor], sources: [Tensor], keys: [Tensor]) -> [Stats] {
        let sCount = queries.count, kCount = sources.count
        let n = sources[0].rows, d = sources[0].cols
        BLAS.configureDeterministic()
        // Q [S, d] and stacked keys [K·n, d]; logits [K·n, S] = keys · Qᵀ in one product.
        var q = [Float](); q.reserveCapacity(sCount * d)
        for w in queries { q += w.data }
        var stacked = [Float](); stacked.reserveCapacity(kCount * n * d)
        for k in keys { stacked += k.data }
        var z = [Float](repeating: 0, count: kCount * n * sCount)
        stacked.withUnsafeBufferPointer { kp in
            q.withUnsafeBufferPointer { qp in
                z.withUnsafeMutableBufferPointer { zp in
                    BLAS.sgemm(transA: false, transB: true, m: kCount * n, n: sCount, k: d, alpha: 1,
                               a: kp.baseAddress!, lda: d, b: qp.baseAddress!, ldb: d,
                               beta: 0, c: zp.baseAddress!, ldc: sCount)
                }
            }
        }
        var result: [Stats] = []
        for s in 0..<sCount {
            var m = [Float](repeating: -.infinity, count: n)
            for i in 0..<kCount { for r in 0..<n { m[r] = Swift.max(m[r], z[(i * n + r) * sCount + s]) } }
            var l = [Float](repeating: 0, count: n)
            var o = Tensor(zeros: [n, d])
            o.data.withUnsafeMutableBufferPointer { op in
                for i in 0..<kCount {
                    sources[i].data.withUnsafeBufferPointer { vp in
                        for r in 0..<n {
                            let e = _exp(z[(i * n + r) * sCount + s] - m[r])
                            l[r] += e
                            for j in 0..<d { op[r * d + j] += e * vp[r * d + j] }
                        }
                    }
                }
            }
            result.append(Stats(output: o, max: m, sum: l))
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
        let (kp, _) = RMSNorm.forward(partial, gain: nil)
        var h = Tensor(zeros: [n, d])
        for r in 0..<n {
            var z2: Float = 0
            for j in 0..<d { z2 += query.data[j] * kp.data[r * d + j] }
            let m = Swift.max(stats.max[r], z2)
            let e1 = _exp(stats.max[r] - m), e2 = _exp(z2 - m)
            let inv = 1 / (e1 * stats.sum[r] + e2)
            for j in 0..<d {
                h.data[r * d + j] = (e1 * stats.output.data[r * d + j] + e2 * partial.data[r * d + j]) * inv
            }
        }
        return h
    }
}
