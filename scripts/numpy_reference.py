"""Independent NumPy (float64) forward pass of the attnres model (DESIGN §3), for cross-checking exports.

Usage: python3 numpy_reference.py EXPORT_DIR
Reads params.safetensors, batch.safetensors and loss.json written by `attnres train --export EXPORT_DIR`,
recomputes the mean cross-entropy of the batch and prints JSON {"loss": ours, "expected": exported, "rel_err": ...}.
Written from DESIGN §3 only (not from the Swift code), so agreement is evidence both follow the spec.
"""
import json, os, sys
import numpy as np
from safetensors.numpy import load_file

EPS = 1e-6


def rmsnorm(x, g=None):
    y = x / np.sqrt((x * x).mean(-1, keepdims=True) + EPS)
    return y * g if g is not None else y


def gelu(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))


def softmax(z, axis):
    z = z - z.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def sublayer(P, l, h, heads):
    x = rmsnorm(h, P[f"layers.{l}.norm.gain"])
    if l % 2 == 1:  # causal multi-head self-attention
        B, T, d = x.shape
        dh = d // heads
        def split(t):
            return t.reshape(B, T, heads, dh).transpose(0, 2, 1, 3)
        q, k, v = (split(x @ P[f"layers.{l}.attn.{w}"]) for w in ("wq", "wk", "wv"))
        s = q @ k.transpose(0, 1, 3, 2) / np.sqrt(dh)
        s = np.where(np.tril(np.ones((T, T), dtype=bool)), s, -np.inf)
        o = (softmax(s, -1) @ v).transpose(0, 2, 1, 3).reshape(B, T, d)
        return o @ P[f"layers.{l}.attn.wo"]
    return gelu(x @ P[f"layers.{l}.mlp.w1"]) @ P[f"layers.{l}.mlp.w2"]


def depth_attention(w, sources):
    V = np.stack(sources)                       # (K, B, T, d)
    alpha = softmax((rmsnorm(V) * w).sum(-1), 0)  # softmax over depth, per token
    return (alpha[..., None] * V).sum(0)


def loss(P, tokens, targets, cfg):
    L, T = cfg["layers"], tokens.shape[1]
    v0 = P["embed.weight"][tokens] + P["pos.weight"][:T]
    if cfg["residual"] == "standard":
        h = v0
        for l in range(1, L + 1):
            h = h + sublayer(P, l, h, cfg["heads"])
        o = h
    else:
        N = L if cfg["residual"] == "full" else cfg["blocks"]
        S = L // N
        blocks, partial = [v0], None
        for l in range(1, L + 1):
            n = min((l - 1) // S + 1, N)
            h = depth_attention(P[f"layers.{l}.query"], blocks + ([partial] if partial is not None else []))
            v = sublayer(P, l, h, cfg["heads"])
            partial = v if partial is None else partial + v
            if l == L or (n < N and l == n * S):
                blocks.append(partial)
                partial = None
        o = depth_attention(P[f"layers.{L + 1}.query"], blocks)
    logits = rmsnorm(o, P["final_norm.gain"]) @ P["head.weight"]
    logp = logits - logits.max(-1, keepdims=True)
    logp = logp - np.log(np.exp(logp).sum(-1, keepdims=True))
    return float(-np.take_along_axis(logp, targets[..., None], -1).mean())


def main(d):
    P = {k: v.astype(np.float64) for k, v in load_file(os.path.join(d, "params.safetensors")).items()}
    b = load_file(os.path.join(d, "batch.safetensors"))
    meta = json.load(open(os.path.join(d, "loss.json")))
    ours = loss(P, b["tokens"].astype(np.int64), b["targets"].astype(np.int64), meta["config"])
    print(json.dumps({"loss": ours, "expected": meta["loss"], "rel_err": abs(ours - meta["loss"]) / abs(ours)}))


if __name__ == "__main__":
    main(sys.argv[1])
