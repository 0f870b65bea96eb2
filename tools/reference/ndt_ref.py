"""Independent reference of the NDT model and its loss (SPEC.md section 2), in JAX.

Written from the specification alone, as plainly as possible, so that it can check the Rust CPU
backend and the CUDA kernels through fixtures (see make_fixtures.py and docs/reference.md).
Gradients come from jax.grad, not from hand-written backward passes.

Parameters are a dict {name: array} with the SPEC names and the PyTorch Linear layout [out, in].
Shapes: B batch, T bins, N neurons of the batch's session, D d_model, S = T + 2 sequence length.
The dtype follows the inputs: make_fixtures.py runs everything in float64, bench_step.py in float32.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np

# Order of the rows of `mask_tokens` (SPEC section 2).
SCHEMES = ("co-smooth", "forward", "inter-region", "intra-region")


def make_config(d_model, d_tok, n_layers, n_heads, d_ff, n_bins, sessions,
                d_embed_hidden=None, ln_eps=1e-5):
    """Model config with the keys of the fixture metadata (SPEC section 8)."""
    return {
        "d_model": d_model,
        "d_tok": d_tok,
        "d_embed_hidden": 2 * d_tok if d_embed_hidden is None else d_embed_hidden,
        "n_layers": n_layers,
        "n_heads": n_heads,
        "d_ff": d_ff,
        "n_bins": n_bins,
        "ln_eps": ln_eps,
        "sessions": dict(sorted(sessions.items())),
    }


def param_shapes(cfg):
    """Every parameter name with its shape, in a fixed order (sessions first, by id)."""
    d, dt, de, f = cfg["d_model"], cfg["d_tok"], cfg["d_embed_hidden"], cfg["d_ff"]
    shapes = {}
    for sid, n in sorted(cfg["sessions"].items()):
        p = f"sessions.{sid}"
        shapes[f"{p}.stitch_in.weight"] = (dt, n)
        shapes[f"{p}.stitch_in.bias"] = (dt,)
        shapes[f"{p}.stitch_out.weight"] = (n, d)
        shapes[f"{p}.stitch_out.bias"] = (n,)
        shapes[f"{p}.token"] = (d,)
    shapes["embed.fc1.weight"] = (de, dt)
    shapes["embed.fc1.bias"] = (de,)
    shapes["embed.fc2.weight"] = (d, de)
    shapes["embed.fc2.bias"] = (d,)
    shapes["pos"] = (cfg["n_bins"], d)
    shapes["mask_tokens"] = (len(SCHEMES), d)
    for i in range(cfg["n_layers"]):
        p = f"blocks.{i}"
        shapes[f"{p}.ln1.weight"] = (d,)
        shapes[f"{p}.ln1.bias"] = (d,)
        shapes[f"{p}.attn.qkv.weight"] = (3 * d, d)
        shapes[f"{p}.attn.qkv.bias"] = (3 * d,)
        shapes[f"{p}.attn.out.weight"] = (d, d)
        shapes[f"{p}.attn.out.bias"] = (d,)
        shapes[f"{p}.ln2.weight"] = (d,)
        shapes[f"{p}.ln2.bias"] = (d,)
        shapes[f"{p}.mlp.fc1.weight"] = (f, d)
        shapes[f"{p}.mlp.fc1.bias"] = (f,)
        shapes[f"{p}.mlp.fc2.weight"] = (d, f)
        shapes[f"{p}.mlp.fc2.bias"] = (d,)
    shapes["ln_f.weight"] = (d,)
    shapes["ln_f.bias"] = (d,)
    return shapes


def init_params(cfg, seed, dtype=np.float32):
    """SPEC section 2 init: PyTorch defaults (Linear weight and bias U(+-1/sqrt(fan_in)), LayerNorm
    1 and 0, tokens and positions N(0, 1)) with the T-Fixup scaling of attn.out, mlp.fc1, mlp.fc2
    (x 0.67 L^-1/4) and of the v rows of qkv (x that and sqrt 2)."""
    rng = np.random.default_rng(seed)
    tfix = 0.67 * cfg["n_layers"] ** -0.25
    d = cfg["d_model"]
    out = {}
    for name, shape in param_shapes(cfg).items():
        if ".ln" in name or name.startswith("ln_f"):
            v = np.ones(shape) if name.endswith("weight") else np.zeros(shape)
        elif name.endswith(".token") or name in ("pos", "mask_tokens"):
            v = rng.standard_normal(shape)
        else:
            wshape = param_shapes(cfg)[name.rsplit(".", 1)[0] + ".weight"]
            bound = 1.0 / math.sqrt(wshape[1])
            v = rng.uniform(-bound, bound, shape)
            if name.endswith("weight"):
                if name.endswith(("attn.out.weight", "mlp.fc1.weight", "mlp.fc2.weight")):
                    v *= tfix
                elif name.endswith("attn.qkv.weight"):
                    v[2 * d:] *= tfix * math.sqrt(2.0)
        out[name] = v.astype(dtype)
    return out


def linear(x, w, b):
    """PyTorch Linear: x [.., in], w [out, in], b [out] -> [.., out]."""
    return x @ w.T + b


def layer_norm(x, w, b, eps):
    """LayerNorm over the last axis, biased variance."""
    mu = jnp.mean(x, axis=-1, keepdims=True)
    var = jnp.mean((x - mu) ** 2, axis=-1, keepdims=True)
    return (x - mu) / jnp.sqrt(var + eps) * w + b


def gelu(x):
    """Exact GELU: x * Phi(x) with the error function."""
    return 0.5 * x * (1.0 + jax.scipy.special.erf(x / math.sqrt(2.0)))


def softsign(x):
    return x / (1.0 + jnp.abs(x))


def dropout(x, rate, key):
    """Inverted dropout; identity when key is None or rate is 0."""
    if key is None or rate == 0.0:
        return x
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), 0.0)


def attention(z, w_qkv, b_qkv, w_out, b_out, n_heads, causal, rate=0.0, key=None):
    """Multi-head self-attention. z [B, S, D] -> [B, S, D].

    qkv rows: q (D rows), then k, then v; inside each, head h owns rows h*hd .. (h+1)*hd.
    Scores are q.k / sqrt(hd); causal: position i attends to j <= i over the whole sequence.
    """
    bsz, s, d = z.shape
    hd = d // n_heads
    qkv = linear(z, w_qkv, b_qkv)  # [B, S, 3D]
    q, k, v = qkv[..., :d], qkv[..., d:2 * d], qkv[..., 2 * d:]

    def heads(a):  # [B, S, D] -> [B, H, S, hd]
        return a.reshape(bsz, s, n_heads, hd).transpose(0, 2, 1, 3)

    q, k, v = heads(q), heads(k), heads(v)
    scores = (q @ k.transpose(0, 1, 3, 2)) / math.sqrt(hd)  # [B, H, S, S]
    if causal:
        allowed = np.tril(np.ones((s, s), dtype=bool))
        scores = jnp.where(allowed, scores, -jnp.inf)
    p = jax.nn.softmax(scores, axis=-1)
    p = dropout(p, rate, key)
    y = (p @ v).transpose(0, 2, 1, 3).reshape(bsz, s, d)  # heads concatenated
    return linear(y, w_out, b_out)


def forward(params, cfg, sid, scheme, x, mask, rate=0.0, key=None, capture_block=None):
    """Log-rates [B, T, N] of the batch x [B, T, N] (counts) with input mask [B, T, N] (1 = zeroed).

    With capture_block = i, also returns the output of block i over the data tokens [B, T, D].
    """
    keys = [None] * (3 * cfg["n_layers"] + 1) if key is None else \
        list(jax.random.split(key, 3 * cfg["n_layers"] + 1))
    p = lambda name: params[name]  # noqa: E731
    s = f"sessions.{sid}"
    bsz, t, _ = x.shape
    d = cfg["d_model"]
    eps = cfg["ln_eps"]

    # 1. masked input; 2. session stitcher in.
    xt = x * (1.0 - mask)
    h = linear(xt, p(f"{s}.stitch_in.weight"), p(f"{s}.stitch_in.bias"))  # [B, T, D_tok]
    # 3. embedding fc2(softsign(fc1(h))) + pos.
    e = linear(softsign(linear(h, p("embed.fc1.weight"), p("embed.fc1.bias"))),
               p("embed.fc2.weight"), p("embed.fc2.bias"))
    e = e + p("pos")[None, :t, :]
    # 4. [session token, mask token of the scheme, data tokens].
    tok = jnp.broadcast_to(p(f"{s}.token"), (bsz, 1, d))
    prompt = jnp.broadcast_to(p("mask_tokens")[SCHEMES.index(scheme)], (bsz, 1, d))
    z = jnp.concatenate([tok, prompt, e], axis=1)  # [B, T+2, D]
    z = dropout(z, rate, keys[-1])
    # 5. pre-LN blocks.
    causal = scheme == "forward"
    feats = None
    for i in range(cfg["n_layers"]):
        b = f"blocks.{i}"
        a = attention(layer_norm(z, p(f"{b}.ln1.weight"), p(f"{b}.ln1.bias"), eps),
                      p(f"{b}.attn.qkv.weight"), p(f"{b}.attn.qkv.bias"),
                      p(f"{b}.attn.out.weight"), p(f"{b}.attn.out.bias"),
                      cfg["n_heads"], causal, rate, keys[3 * i])
        z = z + dropout(a, rate, keys[3 * i + 1])
        m = linear(gelu(linear(layer_norm(z, p(f"{b}.ln2.weight"), p(f"{b}.ln2.bias"), eps),
                               p(f"{b}.mlp.fc1.weight"), p(f"{b}.mlp.fc1.bias"))),
                   p(f"{b}.mlp.fc2.weight"), p(f"{b}.mlp.fc2.bias"))
        z = z + dropout(m, rate, keys[3 * i + 2])
        if capture_block == i:
            feats = z[:, 2:, :]
    # 6. final LayerNorm, drop the prefix, stitcher out.
    y = layer_norm(z, p("ln_f.weight"), p("ln_f.bias"), eps)[:, 2:, :]
    r = linear(y, p(f"{s}.stitch_out.weight"), p(f"{s}.stitch_out.bias"))
    return r if capture_block is None else (r, feats)


def poisson_nll(r, x, target):
    """Mean over target entries of exp(r) - x r (SPEC section 2, step 7)."""
    return jnp.sum(target * (jnp.exp(r) - x * r)) / jnp.sum(target)


def loss(params, cfg, sid, scheme, x, mask, target, rate=0.0, key=None):
    return poisson_nll(forward(params, cfg, sid, scheme, x, mask, rate, key), x, target)


def loss_and_grad(params, cfg, sid, scheme, x, mask, target):
    """(loss, log_rates, grads) with dropout off; grads has every parameter (zeros for the
    parameters of other sessions)."""

    def f(ps):
        r = forward(ps, cfg, sid, scheme, x, mask)
        return poisson_nll(r, x, target), r

    (val, r), g = jax.value_and_grad(f, has_aux=True)(params)
    return val, r, g
