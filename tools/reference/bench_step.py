"""Times one full training step of the reference NDT under jax.jit on the CPU: forward with
dropout, backward, global grad-norm clip and AdamW (decoupled weight decay on every parameter),
float32. The comparison point for `ndt bench` on the CPU.

    .venv/bin/python tools/reference/bench_step.py                  # demo and paper configs
    .venv/bin/python tools/reference/bench_step.py --config paper --steps 5

Prints one JSON object per config: the config, the median and the spread of the step time over
--steps timed steps after --warmup untimed ones (the first compiles), and tokens/s (B * T bins per
step).
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ndt_ref  # noqa: E402

CONFIGS = {
    # A small model of the size the demo trains on the CPU.
    "demo": dict(model=dict(d_model=128, d_tok=128, n_layers=2, n_heads=4, d_ff=256, n_bins=150,
                            sessions={"s0": 64}),
                 batch=16),
    # The paper's Table 2 model, one session of 1000 neurons.
    "paper": dict(model=dict(d_model=512, d_tok=668, n_layers=5, n_heads=8, d_ff=1024,
                             n_bins=150, sessions={"s0": 1000}),
                  batch=16),
}


def make_step(cfg, sid, scheme, dropout, lr=1e-4, beta1=0.9, beta2=0.999, eps=1e-8, wd=0.01,
              clip=1.0):
    """(params, m, v, step, key, x, mask, target) -> (params, m, v, loss), jitted."""

    def step_fn(params, m, v, step, key, x, mask, target):
        def f(ps):
            return ndt_ref.loss(ps, cfg, sid, scheme, x, mask, target, dropout, key)

        loss, g = jax.value_and_grad(f)(params)
        norm = jnp.sqrt(sum(jnp.sum(a * a) for a in jax.tree_util.tree_leaves(g)))
        scale = jnp.minimum(1.0, clip / (norm + 1e-6))
        t = step.astype(jnp.float32)
        new_p, new_m, new_v = {}, {}, {}
        for k in params:
            gk = g[k] * scale
            mk = beta1 * m[k] + (1 - beta1) * gk
            vk = beta2 * v[k] + (1 - beta2) * gk * gk
            mhat = mk / (1 - beta1 ** t)
            vhat = vk / (1 - beta2 ** t)
            new_p[k] = params[k] * (1 - lr * wd) - lr * mhat / (jnp.sqrt(vhat) + eps)
            new_m[k], new_v[k] = mk, vk
        return new_p, new_m, new_v, loss

    return jax.jit(step_fn, donate_argnums=(0, 1, 2))


def masks(rng, b, t, n, scheme, ratio=0.3):
    """A forward or co-smooth mask (the benchmark's timing does not depend on which)."""
    mask = np.zeros((b, t, n), np.float32)
    if scheme == "forward":
        mask[rng.random((b, t)) < ratio, :] = 1.0
    else:
        sel = rng.random((b, n)) < ratio
        mask[:] = sel[:, None, :]
    return mask, mask.copy()


def bench(name, spec, steps, warmup, scheme, dropout, seed=0):
    cfg = ndt_ref.make_config(**spec["model"])
    sid = next(iter(cfg["sessions"]))
    b, t, n = spec["batch"], cfg["n_bins"], cfg["sessions"][sid]
    rng = np.random.default_rng(seed)
    params = {k: jnp.asarray(v) for k, v in ndt_ref.init_params(cfg, seed).items()}
    m = {k: jnp.zeros_like(v) for k, v in params.items()}
    v = {k: jnp.zeros_like(a) for k, a in params.items()}
    x = jnp.asarray(rng.poisson(0.1, (b, t, n)).astype(np.float32))
    mask, target = (jnp.asarray(a) for a in masks(rng, b, t, n, scheme))
    step = make_step(cfg, sid, scheme, dropout)
    key = jax.random.PRNGKey(seed)
    times = []
    for i in range(warmup + steps):
        key, sub = jax.random.split(key)
        t0 = time.perf_counter()
        params, m, v, loss = step(params, m, v, jnp.asarray(i + 1), sub, x, mask, target)
        jax.block_until_ready((params, loss))
        dt = time.perf_counter() - t0
        if i >= warmup:
            times.append(dt)
    med = statistics.median(times)
    n_params = sum(int(np.prod(a.shape)) for a in params.values())
    return {
        "config": name,
        "model": cfg,
        "batch": b,
        "scheme": scheme,
        "dropout": dropout,
        "params": n_params,
        "steps": steps,
        "warmup": warmup,
        "step_s_median": med,
        "step_s_min": min(times),
        "step_s_max": max(times),
        "tokens_per_s": b * t / med,
        "final_loss": float(loss),
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "cpu_count": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", choices=[*CONFIGS, "all"], default="all")
    ap.add_argument("--steps", type=int, default=None,
                    help="timed steps (default: 20 for demo, 5 for paper)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--scheme", choices=ndt_ref.SCHEMES, default="forward")
    ap.add_argument("--dropout", type=float, default=0.2)
    args = ap.parse_args()
    names = list(CONFIGS) if args.config == "all" else [args.config]
    for name in names:
        steps = args.steps or (20 if name == "demo" else 5)
        res = bench(name, CONFIGS[name], steps, args.warmup, args.scheme, args.dropout)
        print(json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
