"""JAX implementation of the attnres model (DESIGN §3) for the peer comparison of `attnres bench model`.

  python3 jax_reference.py bench --layers L --hidden D --heads H --seq S --vocab V --residual R --blocks N
                                 --microbatches M --microbatch-size B --steps K --threads T
      prints JSON: median milliseconds of one jitted optimizer step (M microbatches forward+backward, gradients
      accumulated as a mean, then AdamW) and of one jitted inference forward of one microbatch (B sequences to the
      logits), float32, CPU, on T threads.

Threads are pinned before JAX is imported: the process is restricted to T CPUs (sched_setaffinity), XLA's Eigen pool
to T threads and OpenMP/BLAS pools to T, so it runs on the same number of cores as the Swift step it is compared with.
Written from DESIGN §3 like scripts/torch_reference.py; pip-installed jax is needed only by the benchmark, never by
`make test`.
"""
import argparse, json, os, statistics, sys, time


def pin_threads(threads):
    cpus = sorted(os.sched_getaffinity(0))[:threads]
    os.sched_setaffinity(0, cpus)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    flags = [f for f in os.environ.get("XLA_FLAGS", "").split() if "intra_op_parallelism" not in f]
    flags += [f"--xla_cpu_multi_thread_eigen={'true' if threads > 1 else 'false'}",
              f"intra_op_parallelism_threads={threads}"]
    os.environ["XLA_FLAGS"] = " ".join(flags)
    os.environ.setdefault("JAX_PLATFORMS", "cpu")


EPS = 1e-6


def model(jnp, jax, cfg):
    L, heads = cfg["layers"], cfg["heads"]

    def rmsnorm(x, g=None):
        y = x * jax.lax.rsqrt((x * x).mean(-1, keepdims=True) + EPS)
        return y * g if g is not None else y

    def sublayer(P, l, h):
        x = rmsnorm(h, P[f"layers.{l}.norm.gain"])
        if l % 2 == 1:
            B, T, d = x.shape
            q, k, v = ((x @ P[f"layers.{l}.attn.{w}"]).reshape(B, T, heads, d // heads) for w in ("wq", "wk", "wv"))
            o = jax.nn.dot_product_attention(q, k, v, is_causal=True).reshape(B, T, d)
            return o @ P[f"layers.{l}.attn.wo"]
        return jax.nn.gelu(x @ P[f"layers.{l}.mlp.w1"], approximate=True) @ P[f"layers.{l}.mlp.w2"]

    def depth_attention(w, sources):
        V = jnp.stack(sources)
        alpha = jax.nn.softmax((rmsnorm(V) * w).sum(-1), axis=0)
        return (alpha[..., None] * V).sum(0)

    def logits_fn(P, tokens):
        T = tokens.shape[1]
        v0 = P["embed.weight"][tokens] + P["pos.weight"][:T]
        if cfg["residual"] == "standard":
            h = v0
            for l in range(1, L + 1):
                h = h + sublayer(P, l, h)
            o = h
        else:
            N = L if cfg["residual"] == "full" else cfg["blocks"]
            S = L // N
            blocks, partial = [v0], None
            for l in range(1, L + 1):
                n = min((l - 1) // S + 1, N)
                h = depth_attention(P[f"layers.{l}.query"], blocks + ([partial] if partial is not None else []))
                v = sublayer(P, l, h)
                partial = v if partial is None else partial + v
                if l == L or (n < N and l == n * S):
                    blocks.append(partial)
                    partial = None
            o = depth_attention(P[f"layers.{L + 1}.query"], blocks)
        return rmsnorm(o, P["final_norm.gain"]) @ P["head.weight"]

    def loss_fn(P, tokens, targets):
        logits = logits_fn(P, tokens)
        logp = jax.nn.log_softmax(logits, axis=-1)
        return -jnp.take_along_axis(logp, targets[..., None], axis=-1).mean()

    return logits_fn, loss_fn


def bench(a):
    pin_threads(a.threads)
    import jax
    import jax.numpy as jnp
    cfg = {"layers": a.layers, "heads": a.heads, "residual": a.residual, "blocks": a.blocks}
    d, L = a.hidden, a.layers
    key = iter(jax.random.split(jax.random.PRNGKey(0), 4 * L + 16))
    normal = lambda shape: 0.02 * jax.random.normal(next(key), shape, jnp.float32)
    P = {"embed.weight": normal((a.vocab, d)), "pos.weight": normal((a.seq, d)),
         "final_norm.gain": jnp.ones(d), "head.weight": normal((d, a.vocab))}
    for l in range(1, L + 1):
        P[f"layers.{l}.norm.gain"] = jnp.ones(d)
        if l % 2 == 1:
            for w in ("wq", "wk", "wv", "wo"):
                P[f"layers.{l}.attn.{w}"] = normal((d, d))
        else:
            P[f"layers.{l}.mlp.w1"] = normal((d, 4 * d))
            P[f"layers.{l}.mlp.w2"] = normal((4 * d, d))
    if a.residual != "standard":
        for l in range(1, L + 2):
            P[f"layers.{l}.query"] = jnp.zeros(d)
    logits_fn, loss_fn = model(jnp, jax, cfg)
    lr, b1, b2, eps, wd = 3e-3, 0.9, 0.95, 1e-8, 0.1
    decays = {k: v.ndim == 2 for k, v in P.items()}  # as ours: matrices and embeddings decay, gains and queries not

    @jax.jit
    def step(P, m, v, t, tokens, targets):
        grads = jax.tree_util.tree_map(jnp.zeros_like, P)
        total = 0.0
        for i in range(a.microbatches):  # microbatches in order, gradients of the mean accumulated
            loss, g = jax.value_and_grad(loss_fn)(P, tokens[i], targets[i])
            grads = jax.tree_util.tree_map(lambda x, y: x + y / a.microbatches, grads, g)
            total = total + loss / a.microbatches
        t = t + 1
        new_m = {k: b1 * m[k] + (1 - b1) * grads[k] for k in P}
        new_v = {k: b2 * v[k] + (1 - b2) * grads[k] ** 2 for k in P}
        new_P = {}
        for k in P:
            mh, vh = new_m[k] / (1 - b1 ** t), new_v[k] / (1 - b2 ** t)
            p = P[k] * (1 - lr * wd) if decays[k] else P[k]
            new_P[k] = p - lr * mh / (jnp.sqrt(vh) + eps)
        return new_P, new_m, new_v, t, total

    infer = jax.jit(logits_fn)
    tokens = jax.random.randint(next(key), (a.microbatches, a.microbatch_size, a.seq), 0, a.vocab)
    targets = jax.random.randint(next(key), (a.microbatches, a.microbatch_size, a.seq), 0, a.vocab)
    m = jax.tree_util.tree_map(jnp.zeros_like, P)
    v = jax.tree_util.tree_map(jnp.zeros_like, P)
    t = jnp.float32(0)
    train_ms, infer_ms = [], []
    for i in range(a.steps + 3):  # 3 warm-up steps (the first compiles)
        t0 = time.perf_counter()
        P, m, v, t, loss = step(P, m, v, t, tokens, targets)
        loss.block_until_ready()
        if i >= 3:
            train_ms.append((time.perf_counter() - t0) * 1000)
    for i in range(5 * a.steps + 3):
        t0 = time.perf_counter()
        infer(P, tokens[0]).block_until_ready()
        if i >= 3:
            infer_ms.append((time.perf_counter() - t0) * 1000)
    print(json.dumps({"train_ms": statistics.median(train_ms), "inference_ms": statistics.median(infer_ms),
                      "jax": jax.__version__, "threads": a.threads, "final_loss": float(loss)}))


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] != "bench":
        sys.exit(__doc__)
    p = argparse.ArgumentParser()
    for k, v in [("layers", 8), ("hidden", 64), ("heads", 4), ("seq", 32), ("vocab", 256), ("blocks", 4),
                 ("microbatches", 4), ("microbatch-size", 2), ("steps", 20), ("threads", 1)]:
        p.add_argument("--" + k, type=int, default=v)
    p.add_argument("--residual", default="block")
    bench(p.parse_args(sys.argv[2:]))
