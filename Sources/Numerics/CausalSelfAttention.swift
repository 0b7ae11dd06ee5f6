/// Causal multi-head scaled dot-product attention on already-projected Q, K, V (DESIGN §3: H heads,
/// softmax(QKᵀ/√(d/H)) with a causal mask). The projections Wq, Wk, Wv, Wo are `Matmul`s in the model.
///
/// Every (sequence, head) pair is two `sgemm`s on strided views (row stride d), so no head is ever copied.
public enum CausalSelfAttention {
    /// What backward needs: the attention probabilities, [batch, heads, seq, seq] (upper triangle zero).
    public struct Saved: Sendable { public var probs: [Float] }

    /// Forward. q, k, v [batch·seq, d] (rows of one sequence contiguous), d divisible by heads -> out [batch·seq, d].
    public static func forward(q: Tensor, k: Tensor, v: Tensor, batch: Int, seq: Int, heads: Int) -> (Tensor, Saved) {
        let d = q.cols, dh = d / heads
        precondition(d % heads == 0 && q.rows == batch * seq && k.shape == q.shape && v.shape == q.shape)
        BLAS.configureDeterministic()
        let scale = 1 / _sqrt(Float(dh))
        var out = Tensor(zeros: q.shape)
        var probs = [Float](repeating: 0, count: batch * heads * seq * seq)
        q.data.withUnsafeBufferPointer { qp in
        k.data.withUnsafeBufferPointer { kp in
        v.data.withUnsafeBufferPointer { vp in
        out.data.withUnsafeMutableBufferPointer { op in
        probs.withUnsafeMutableBufferPointer { pp in
            for b in 0..<batch {
                for h in 0..<heads {
                    let off = b * seq * d + h * dh
                    let p = pp.baseAddress! + (b * heads + h) * seq * seq
                    // scores [seq, seq] = scale · Q_h K_hᵀ
                    BLAS.sgemm(transA: false, transB: true, m: seq, n: seq, k: dh, alpha: scale,
                               a: qp.baseAddress! + off, lda: d, b: kp.baseAddress! + off, ldb: d,
                               beta: 0, c: p, ldc: seq)
                    for i in 0..<seq {  // causal softmax of row i over columns 0...i
                        let row = p + i * seq
                        var m = -Float.infinity
                        for j in 0...i { m = max(m, row[j]) }
                        // The exponentials in a loop of their own, which vectorises (VectorKernels.exp: relative
                        // error ≤ 3e-7, no libm call); the sum then in column order, as before.
                        for j in 0...i { row[j] = VectorKernels.exp(row[j] - m) }
                        var sum: Float = 0
                        for j in 0...i { sum += row[j] }
                        let inv = 1 / sum
                        for j in 0...i { row[j] *= inv }
                        for j in (i + 1)..<max(i + 1, seq) { row[j] = 0 }
                    }
                    // out_h [seq, dh] = P V_h
                    BLAS.sgemm(transA: false, transB: false, m: seq, n: dh, k: seq, alpha: 1,
                               a: p, lda: seq, b: vp.baseAddress! + off, ldb: d,
                               beta: 0, c: op.baseAddress! + off, ldc: d)
                }
            }
        }}}}}
        return (out, Saved(probs: probs))
    }

    /// Backward. dout [batch·seq, d] -> dq, dk, dv [batch·seq, d] += their gradients.
    public static func backward(_ dout: Tensor, q: Tensor, k: Tensor, v: Tensor, saved: Saved,
                                batch: Int, seq: Int, heads: Int,
                                dq: inout Tensor, dk: inout Tensor, dv: inout Tensor) {
        let d = q.cols, dh = d / heads
        BLAS.configureDeterministic()
        let scale = 1 / _sqrt(Float(dh))
        var dp = [Float](repeating: 0, count: seq * seq)
        dout.data.withUnsafeBufferPointer { gp in
        q.data.withUnsafeBufferPointer { qp in
        k.data.withUnsafeBufferPointer { kp in
        v.data.withUnsafeBufferPointer { vp in
        saved.probs.withUnsafeBufferPointer { pp in
        dq.data.withUnsafeMutableBufferPointer { dqp in
        dk.data.withUnsafeMutableBufferPointer { dkp in
        dv.data.withUnsafeMutableBufferPointer { dvp in
        dp.withUnsafeMutableBufferPointer { dsp in
            let ds = dsp.baseAddress!
            for b in 0..<batch {
                for h in 0..<heads {
                    let off = b * seq * d + h * dh
                    let p = pp.baseAddress! + (b * heads + h) * seq * seq
                    // dV_h += Pᵀ dO_h
                    BLAS.sgemm(transA: true, transB: false, m: seq, n: dh, k: seq, alpha: 1,
                               a: p, lda: seq, b: gp.baseAddress! + off, ldb: d,
                               beta: 1, c: dvp.baseAddress! + off, ldc: d)
                    // dP = dO_h V_hᵀ
                    BLAS.sgemm(transA: false, transB: true, m: seq, n: seq, k: dh, alpha: 1,
                               a: gp.baseAddress! + off, lda: d, b: vp.baseAddress! + off, ldb: d,
                               beta: 0, c: ds, ldc: seq)
                    // dS = P ⊙ (dP − rowsum(P ⊙ dP)) · scale (masked entries have P = 0)
                    for i in 0..<seq {
                        var dot: Float = 0
                        for j in 0...i { dot += p[i * seq + j] * ds[i * seq + j] }
                        for j in 0...i { ds[i * seq + j] = p[i * seq + j] * (ds[i * seq + j] - dot) * scale }
                        for j in (i + 1)..<max(i + 1, seq) { ds[i * seq + j] = 0 }
                    }
                    // dQ_h += dS K_h ; dK_h += dSᵀ Q_h
                    BLAS.sgemm(transA: false, transB: false, m: seq, n: dh, k: seq, alpha: 1,
                               a: ds, lda: seq, b: kp.baseAddress! + off, ldb: d,
                               beta: 1, c: dqp.baseAddress! + off, ldc: d)
                    BLAS.sgemm(transA: true, transB: false, m: seq, n: dh, k: seq, alpha: 1,
                               a: ds, lda: seq, b: qp.baseAddress! + off, ldb: d,
                               beta: 1, c: dkp.baseAddress! + off, ldc: d)
                }
            }
        }}}}}}}}}
    }
}
