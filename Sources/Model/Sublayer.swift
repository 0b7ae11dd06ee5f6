import Numerics

/// A PreNorm sublayer f_l(h) = Sublayer_l(RMSNorm(h) ⊙ g_l) (DESIGN §3): causal multi-head self-attention for odd l,
/// a GELU MLP (d → 4d → d) for even l. Forward and backward are side by side; backward accumulates.
public enum Sublayer {
    /// What backward needs from the forward pass of one sublayer.
    public struct Saved: Sendable {
        var input: Tensor
        var norm: RMSNorm.Saved
        var normed: Tensor
        // attention
        var q = Tensor(zeros: [0]), k = Tensor(zeros: [0]), v = Tensor(zeros: [0]), attended = Tensor(zeros: [0])
        var attention: CausalSelfAttention.Saved?
        // MLP
        var preActivation = Tensor(zeros: [0]), activated = Tensor(zeros: [0])
        var gelu: GELU.Saved?
    }

    /// Forward. h [b·s, d] -> f_l(h) [b·s, d].
    public static func forward(layer l: Int, _ h: Tensor, batch: Int, config c: ModelConfig,
                               parameters p: ParameterSet) -> (Tensor, Saved) {
        let (xn, ns) = RMSNorm.forward(h, gain: p["layers.\(l).norm.gain"])
        var s = Saved(input: h, norm: ns, normed: xn)
        if c.isAttention(l) {
            s.q = Matmul.forward(xn, p["layers.\(l).attn.wq"])
            s.k = Matmul.forward(xn, p["layers.\(l).attn.wk"])
            s.v = Matmul.forward(xn, p["layers.\(l).attn.wv"])
            let (a, as_) = CausalSelfAttention.forward(q: s.q, k: s.k, v: s.v, batch: batch, seq: c.seq, heads: c.heads)
            s.attended = a; s.attention = as_
            return (Matmul.forward(a, p["layers.\(l).attn.wo"]), s)
        } else {
            s.preActivation = Matmul.forward(xn, p["layers.\(l).mlp.w1"])
            (s.activated, s.gelu) = GELU.forward(s.preActivation)
            return (Matmul.forward(s.activated, p["layers.\(l).mlp.w2"]), s)
        }
    }

    /// Backward. dout [b·s, d] -> dh [b·s, d] += …, and the layer's parameter gradients += ….
    /// `accumulate: false` writes dh instead (bitwise as if it were zero-filled; `RMSNorm.backward`).
    public static func backward(layer l: Int, _ dout: Tensor, saved s: Saved, batch: Int, config c: ModelConfig,
                                parameters p: ParameterSet, gradients g: inout ParameterSet, dh: inout Tensor,
                                accumulate: Bool = true) {
        var dxn = Tensor(zeros: s.normed.shape)
        if c.isAttention(l) {
            let pre = "layers.\(l).attn."
            var da = Tensor(zeros: s.attended.shape)
            Matmul.backwardInput(dout, w: p[pre + "wo"], dx: &da)
            g.modify(pre + "wo") { Matmul.backwardWeight(dout, x: s.attended, dw: &$0) }
            var dq = Tensor(zeros: s.q.shape), dk = Tensor(zeros: s.k.shape), dv = Tensor(zeros: s.v.shape)
            CausalSelfAttention.backward(da, q: s.q, k: s.k, v: s.v, saved: s.attention!, batch: batch, seq: c.seq,
                                         heads: c.heads, dq: &dq, dk: &dk, dv: &dv)
            for (name, grad) in [("wq", dq), ("wk", dk), ("wv", dv)] {
                Matmul.backwardInput(grad, w: p[pre + name], dx: &dxn)
                g.modify(pre + name) { Matmul.backwardWeight(grad, x: s.normed, dw: &$0) }
            }
        } else {
            let pre = "layers.\(l).mlp."
            var dact = Tensor(zeros: s.activated.shape)
            Matmul.backwardInput(dout, w: p[pre + "w2"], dx: &dact)
            g.modify(pre + "w2") { Matmul.backwardWeight(dout, x: s.activated, dw: &$0) }
            var dpre = Tensor(zeros: s.preActivation.shape)
            GELU.backward(dact, x: s.preActivation, saved: s.gelu!, dx: &dpre)
            Matmul.backwardInput(dpre, w: p[pre + "w1"], dx: &dxn)
            g.modify(pre + "w1") { Matmul.backwardWeight(dpre, x: s.normed, dw: &$0) }
        }
        let gainName = "layers.\(l).norm.gain"
        var dgain: Tensor? = g[gainName]
        g[gainName] = Tensor(zeros: [0])  // release the stored buffer so the accumulation below does not copy it
        RMSNorm.backward(dxn, x: s.input, gain: p[gainName], saved: s.norm, dx: &dh, dgain: &dgain, accumulate: accumulate)
        g.modify(gainName) { $0 = dgain! }
    }
}
