"""Writes the reference fixtures of SPEC.md section 8 into fixtures/ (or --out).

Each fixture is one safetensors file: the parameters of a small random model, one batch (counts,
input mask, target mask) drawn with the masking semantics of SPEC section 3, and the expected
log-rates, loss and gradient of every parameter, computed in float64 by ndt_ref.py and stored as
float32. Everything is deterministic by seed.

    .venv/bin/python tools/reference/make_fixtures.py            # regenerate fixtures/
    .venv/bin/python tools/reference/make_fixtures.py --check    # also: float32 JAX vs the fixture

The safetensors format is written by hand (8-byte little-endian header length, JSON header, raw
little-endian data) so that no extra package is needed.
"""

import argparse
import json
import math
import os
import struct
import sys

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ndt_ref  # noqa: E402

FORMAT = "ndt-fixture/1"
RATIO = 0.3  # masking ratio rho of SPEC section 3

# name, seed, batch session, scheme, batch size, config, regions per session of the batch.
FIXTURES = [
    dict(name="co_smooth_2sess", seed=101, session="a", scheme="co-smooth", b=3, regions=1,
         cfg=dict(d_model=16, d_tok=12, n_layers=2, n_heads=2, d_ff=32, n_bins=11,
                  sessions={"a": 37, "b": 20})),
    dict(name="forward_3sess", seed=202, session="b", scheme="forward", b=2, regions=1,
         cfg=dict(d_model=16, d_tok=12, n_layers=2, n_heads=2, d_ff=32, n_bins=23,
                  sessions={"a": 37, "b": 53, "c": 9})),
    dict(name="inter_region_uuid", seed=303, session="5d01d14e-aced-4465-8f8e-9a1c674f62ec",
         scheme="inter-region", b=3, regions=3,
         cfg=dict(d_model=24, d_tok=10, d_embed_hidden=14, n_layers=2, n_heads=3, d_ff=40,
                  n_bins=11, sessions={"5d01d14e-aced-4465-8f8e-9a1c674f62ec": 53, "x": 29})),
    dict(name="intra_region_3layers", seed=404, session="s2", scheme="intra-region", b=2,
         regions=4,
         cfg=dict(d_model=16, d_tok=9, n_layers=3, n_heads=4, d_ff=24, n_bins=13, ln_eps=1e-6,
                  sessions={"s1": 41, "s2": 37})),
    dict(name="forward_headdim64", seed=505, session="big", scheme="forward", b=2, regions=1,
         cfg=dict(d_model=128, d_tok=16, n_layers=1, n_heads=2, d_ff=32, n_bins=17,
                  sessions={"big": 53, "small": 7})),
    dict(name="co_smooth_headdim64", seed=606, session="m", scheme="co-smooth", b=2, regions=1,
         cfg=dict(d_model=64, d_tok=20, n_layers=1, n_heads=1, d_ff=48, n_bins=15,
                  sessions={"m": 45})),
    dict(name="inter_region_2regions", seed=707, session="r2", scheme="inter-region", b=4,
         regions=2,
         cfg=dict(d_model=8, d_tok=6, n_layers=2, n_heads=2, d_ff=16, n_bins=7,
                  sessions={"r2": 13, "r3": 11})),
    dict(name="forward_one_bin", seed=808, session="t", scheme="forward", b=1, regions=1,
         cfg=dict(d_model=8, d_tok=4, n_layers=1, n_heads=1, d_ff=8, n_bins=1,
                  sessions={"t": 5})),
]


def random_params(cfg, rng):
    """Random parameters at realistic, not tiny, scales: LayerNorm gains around 1 with non-zero
    biases, Linear weights a little wider than PyTorch's init (qkv wider still, so attention is
    peaked rather than uniform), N(0, 1) tokens and positions, stitcher-out bias near the log of a
    few Hz per 20 ms bin."""
    out = {}
    shapes = ndt_ref.param_shapes(cfg)
    for name, shape in shapes.items():
        if ".ln" in name or name.startswith("ln_f"):
            if name.endswith("weight"):
                v = 1.0 + 0.3 * rng.standard_normal(shape)
            else:
                v = 0.2 * rng.standard_normal(shape)
        elif name.endswith(".token") or name in ("pos", "mask_tokens"):
            v = rng.standard_normal(shape)
        else:
            fan_in = shapes[name.rsplit(".", 1)[0] + ".weight"][1]
            gain = 2.0 if "attn.qkv" in name else 1.5
            v = rng.uniform(-1.0, 1.0, shape) * gain / math.sqrt(fan_in)
            if name.endswith("stitch_out.bias"):
                v = -1.0 + 0.5 * rng.standard_normal(shape)
        out[name] = v.astype(np.float32)
    return out


def draw_counts(rng, b, t, n):
    """Poisson counts with log-normal per-neuron rates (mean about 0.5 per bin, some up to 5)."""
    rate = np.minimum(np.exp(rng.normal(math.log(0.3), 1.0, n)), 5.0)
    return rng.poisson(rate[None, None, :], (b, t, n)).astype(np.float32)


def draw_masks(rng, scheme, b, t, n, region_of):
    """Input mask and target mask [b, t, n] (1 = zeroed / in the loss) with SPEC section 3
    semantics; every trial gets at least one target."""
    mask = np.zeros((b, t, n), np.float32)
    target = np.zeros((b, t, n), np.float32)
    n_regions = int(region_of.max()) + 1
    for i in range(b):
        if scheme == "co-smooth":
            sel = rng.random(n) < RATIO
            if not sel.any():
                sel[rng.integers(n)] = True
            mask[i, :, sel] = 1.0
            target[i] = mask[i]
        elif scheme == "forward":
            sel = rng.random(t) < RATIO
            if not sel.any():
                sel[rng.integers(t)] = True
            mask[i, sel, :] = 1.0
            target[i] = mask[i]
        elif scheme == "inter-region":
            r = rng.integers(n_regions)
            mask[i, :, region_of == r] = 1.0
            target[i] = mask[i]
        elif scheme == "intra-region":
            r = rng.integers(n_regions)
            members = np.flatnonzero(region_of == r)
            sel = rng.random(members.size) < RATIO
            if not sel.any():
                sel[rng.integers(members.size)] = True
            mask[i, :, region_of != r] = 1.0
            mask[i, :, members[sel]] = 1.0
            target[i, :, members[sel]] = 1.0
        else:
            raise ValueError(f"unknown scheme {scheme}")
    return mask, target


def draw_regions(rng, n, n_regions):
    """Region label per neuron; every region has at least one neuron."""
    region_of = np.concatenate([np.arange(n_regions), rng.integers(0, n_regions, n - n_regions)])
    return rng.permutation(region_of)


def build(spec):
    """Parameters, batch and expected values of one fixture."""
    rng = np.random.default_rng(spec["seed"])
    cfg = ndt_ref.make_config(**spec["cfg"])
    params = random_params(cfg, rng)
    n = cfg["sessions"][spec["session"]]
    b, t = spec["b"], cfg["n_bins"]
    x = draw_counts(rng, b, t, n)
    region_of = draw_regions(rng, n, spec["regions"])
    mask, target = draw_masks(rng, spec["scheme"], b, t, n, region_of)

    p64 = {k: jnp.asarray(v, jnp.float64) for k, v in params.items()}
    loss, r, grads = ndt_ref.loss_and_grad(p64, cfg, spec["session"], spec["scheme"],
                                           jnp.asarray(x, jnp.float64),
                                           jnp.asarray(mask, jnp.float64),
                                           jnp.asarray(target, jnp.float64))
    tensors = dict(params)
    tensors["x"] = x
    tensors["mask"] = mask
    tensors["target"] = target
    tensors["log_rates"] = np.asarray(r, np.float32)
    tensors["loss"] = np.asarray([loss], np.float32)
    for k, g in grads.items():
        tensors[f"grad.{k}"] = np.asarray(g, np.float32)
    meta = {
        "format": FORMAT,
        "config": json.dumps(cfg, separators=(",", ":")),
        "session": spec["session"],
        "scheme": spec["scheme"],
        "generator": "tools/reference/make_fixtures.py",
        "seed": str(spec["seed"]),
    }
    return cfg, tensors, meta


def write_safetensors(path, tensors, meta):
    """safetensors file: u64 header length, JSON header (padded with spaces to 8 bytes), data."""
    header = {"__metadata__": meta}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name], dtype="<f4")
        header[name] = {"dtype": "F32", "shape": list(a.shape),
                        "data_offsets": [offset, offset + a.nbytes]}
        blobs.append(a.tobytes())
        offset += a.nbytes
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for blob in blobs:
            f.write(blob)
    os.replace(tmp, path)


def read_safetensors(path):
    """(tensors, metadata) of a safetensors file of F32 tensors."""
    with open(path, "rb") as f:
        data = f.read()
    (hlen,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + hlen])
    meta = header.pop("__metadata__", {})
    base = 8 + hlen
    out = {}
    for name, info in header.items():
        assert info["dtype"] == "F32", (path, name)
        s, e = info["data_offsets"]
        out[name] = np.frombuffer(data[base + s:base + e], "<f4").reshape(info["shape"])
    return out, meta


def rel_err(got, want):
    """||got - want|| / ||want|| (||got|| when want is zero), as check-fixture reports it."""
    got = np.asarray(got, np.float64)
    want = np.asarray(want, np.float64)
    den = np.linalg.norm(want)
    num = np.linalg.norm(got - want)
    return num / den if den > 0 else np.linalg.norm(got)


def check_f32(path):
    """Recomputes a fixture with JAX in float32 and returns the worst relative errors
    (loss, log_rates, gradients): what a correct f32 implementation can be expected to reach."""
    tensors, meta = read_safetensors(path)
    cfg = json.loads(meta["config"])
    names = ndt_ref.param_shapes(cfg)
    p32 = {k: jnp.asarray(tensors[k], jnp.float32) for k in names}
    loss, r, grads = ndt_ref.loss_and_grad(
        p32, cfg, meta["session"], meta["scheme"],
        *(jnp.asarray(tensors[k], jnp.float32) for k in ("x", "mask", "target")))
    e_loss = rel_err([loss], tensors["loss"])
    e_r = rel_err(r, tensors["log_rates"])
    e_g = max((rel_err(grads[k], tensors[f"grad.{k}"]), k) for k in names)
    return e_loss, e_r, e_g


def finite_difference_check(spec, n_probe=6, h=1e-6):
    """Central differences of the float64 loss against jax.grad on a few random elements."""
    rng = np.random.default_rng(spec["seed"] + 1)
    cfg, tensors, _ = build(spec)
    names = list(ndt_ref.param_shapes(cfg))
    p64 = {k: np.asarray(tensors[k], np.float64) for k in names}
    batch = [jnp.asarray(tensors[k], jnp.float64) for k in ("x", "mask", "target")]

    def f(ps):
        return float(ndt_ref.loss(ps, cfg, spec["session"], spec["scheme"], *batch))

    worst = 0.0
    for _ in range(n_probe):
        k = names[rng.integers(len(names))]
        if k.startswith("sessions.") and not k.startswith(f"sessions.{spec['session']}."):
            continue
        idx = tuple(rng.integers(0, s) for s in p64[k].shape)
        plus = {**p64, k: p64[k].copy()}
        minus = {**p64, k: p64[k].copy()}
        plus[k][idx] += h
        minus[k][idx] -= h
        fd = (f(plus) - f(minus)) / (2 * h)
        # The stored gradient is rounded to f32; compare at that precision.
        g = float(tensors[f"grad.{k}"][idx])
        worst = max(worst, abs(fd - g) / max(abs(g), 1e-3))
    return worst


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ap.add_argument("--out", default=os.path.join(root, "fixtures"))
    ap.add_argument("--check", action="store_true",
                    help="recompute in float32 JAX and probe gradients by finite differences")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    total = 0
    for spec in FIXTURES:
        cfg, tensors, meta = build(spec)
        path = os.path.join(args.out, spec["name"] + ".safetensors")
        write_safetensors(path, tensors, meta)
        size = os.path.getsize(path)
        total += size
        line = (f"{spec['name']:<24} {spec['scheme']:<13} B={spec['b']} T={cfg['n_bins']} "
                f"N={cfg['sessions'][spec['session']]} loss={float(tensors['loss'][0]):.6f} "
                f"{size / 1024:.0f} KiB")
        if args.check:
            e_loss, e_r, (e_g, k) = check_f32(path)
            fd = finite_difference_check(spec)
            line += (f"  f32: loss {e_loss:.1e} log_rates {e_r:.1e} grad {e_g:.1e} ({k})"
                     f"  fd {fd:.1e}")
        print(line)
    print(f"total {total / 1024:.0f} KiB in {args.out}")


if __name__ == "__main__":
    main()
