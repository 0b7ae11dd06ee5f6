"""PyTorch implementation of the attnres model (DESIGN §3): gradient cross-check and train-step benchmark.

  python3 torch_reference.py check EXPORT_DIR
      float64 autograd gradients of the exported batch vs grads.safetensors; prints JSON with the loss error and the
      worst per-parameter relative error ‖g_torch − g_ours‖∞ / ‖g_torch‖∞.
  python3 torch_reference.py bench --layers L --hidden D --heads H --seq S --vocab V --residual R --blocks N
                                   --microbatches M --microbatch-size B --steps K --threads T
      median milliseconds of one optimizer step (m microbatches forward+backward, then AdamW) and of one
      inference forward of one microbatch (B sequences to the logits, no autograd), float32, CPU, T threads.

Written from DESIGN §3; pip-installed torch is needed only here (benchmarks), never by `make test`.
"""
import argparse, json, os, statistics, sys, time
import torch
import torch.nn.functional as F

EPS = 1e-6


def rmsnorm(x, g=None):
    y = x * torch.rsqrt((x * x).mean(-1, keepdim=True) + EPS)
    return y * g if g is not None else y


def sublayer(P, l, h, heads):
    x = rmsnorm(h, P[f"layers.{l}.norm.gain"])
    if l % 2 == 1:
        B, T, d = x.shape
        q, k, v = ((x @ P[f"layers.{l}.attn.{w}"]).view(B, T, heads, d // heads).transpose(1, 2)
                   for w in ("wq", "wk", "wv"))
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, T, d)
        return o @ P[f"layers.{l}.attn.wo"]
    return F.gelu(x @ P[f"layers.{l}.mlp.w1"], approximate="tanh") @ P[f"layers.{l}.mlp.w2"]


def depth_attention(w, sources):
    V = torch.stack(sources)
    alpha = torch.softmax((rmsnorm(V) * w).sum(-1), 0)
    return (alpha.unsqueeze(-1) * V).sum(0)


def logits_fn(P, tokens, cfg):
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
    return rmsnorm(o, P["final_norm.gain"]) @ P["head.weight"]


def loss_fn(P, tokens, targets, cfg):
    logits = logits_fn(P, tokens, cfg)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def check(d):
    from safetensors.torch import load_file
    P = {k: v.double().requires_grad_(True) for k, v in load_file(os.path.join(d, "params.safetensors")).items()}
    b = load_file(os.path.join(d, "batch.safetensors"))
    G = load_file(os.path.join(d, "grads.safetensors"))
    meta = json.load(open(os.path.join(d, "loss.json")))
    loss = loss_fn(P, b["tokens"].long(), b["targets"].long(), meta["config"])
    loss.backward()
    worst, worst_name = 0.0, ""
    for k, p in P.items():
        ref = p.grad
        err = float((ref - G[k].double()).abs().max() / max(float(ref.abs().max()), 1e-30))
        if err > worst:
            worst, worst_name = err, k
    loss = float(loss.detach())
    print(json.dumps({"loss": loss, "expected": meta["loss"],
                      "loss_rel_err": abs(loss - meta["loss"]) / abs(loss),
                      "worst_grad_rel_err": worst, "worst_param": worst_name}))


def bench(a):
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    cfg = {"layers": a.layers, "heads": a.heads, "residual": a.residual, "blocks": a.blocks}
    d, L = a.hidden, a.layers
    P = {"embed.weight": torch.randn(a.vocab, d) * 0.02, "pos.weight": torch.randn(a.seq, d) * 0.02,
         "final_norm.gain": torch.ones(d), "head.weight": torch.randn(d, a.vocab) * 0.02}
    for l in range(1, L + 1):
        P[f"layers.{l}.norm.gain"] = torch.ones(d)
        if l % 2 == 1:
            for w in ("wq", "wk", "wv", "wo"):
                P[f"layers.{l}.attn.{w}"] = torch.randn(d, d) * 0.02
        else:
            P[f"layers.{l}.mlp.w1"] = torch.randn(d, 4 * d) * 0.02
            P[f"layers.{l}.mlp.w2"] = torch.randn(4 * d, d) * 0.02
    if a.residual != "standard":
        for l in range(1, L + 2):
            P[f"layers.{l}.query"] = torch.zeros(d)
    params = [p.requires_grad_(True) for p in P.values()]
    opt = torch.optim.AdamW(params, lr=3e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    tokens = torch.randint(0, a.vocab, (a.microbatches, a.microbatch_size, a.seq))
    targets = torch.randint(0, a.vocab, (a.microbatches, a.microbatch_size, a.seq))
    times = []
    for step in range(a.steps + 3):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=False)
        for m in range(a.microbatches):
            (loss_fn(P, tokens[m], targets[m], cfg) / a.microbatches).backward()
        opt.step()
        if step >= 3:
            times.append((time.perf_counter() - t0) * 1000)
    inference = []
    with torch.no_grad():
        for i in range(5 * a.steps + 3):
            t0 = time.perf_counter()
            float(logits_fn(P, tokens[0], cfg)[0, 0, 0])
            if i >= 3:
                inference.append((time.perf_counter() - t0) * 1000)
    print(json.dumps({"ms_per_step": statistics.median(times), "inference_ms": statistics.median(inference),
                      "torch": torch.__version__, "threads": a.threads}))


if __name__ == "__main__":
    if sys.argv[1] == "check":
        check(sys.argv[2])
    else:
        p = argparse.ArgumentParser()
        for k, v in [("layers", 8), ("hidden", 64), ("heads", 4), ("seq", 32), ("vocab", 256), ("blocks", 4),
                     ("microbatches", 4), ("microbatch-size", 2), ("steps", 20), ("threads", 1)]:
            p.add_argument("--" + k, type=int, default=v)
        p.add_argument("--residual", default="block")
        bench(p.parse_args(sys.argv[2:]))
