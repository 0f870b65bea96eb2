#!/usr/bin/env python3
"""The PyTorch NDT (torch_model.py, SPEC §2): the users' alternative that `ndt` is timed against.

Same model, masking and loss as ndt (pre-LN blocks, exact-erf GELU, softsign embedding, session
stitchers, the two prefix tokens, causal attention over the whole sequence for the forward scheme,
Poisson NLL averaged over the target entries), with the SPEC §2 parameter names so that ndt
checkpoints and reference fixtures load as they are.

Four uses, one command:

  torch_ndt.py [--device cuda] [--batch 16] [--modes ...] [--json OUT]
      time the training step (forward, backward, grad-norm clip 1.0, AdamW) per mode;
  torch_ndt.py --fixture FILE [FILE ...]
      recompute a SPEC §8 fixture's log-rates, loss and gradients in f32 and f64 and print the
      relative error of each tensor (non-zero exit above the SPEC tolerances);
  torch_ndt.py --weights CKPT --batch-file BATCH [--check-loss EXPECTED]
      print the loss (dropout off) of a checkpoint on a batch, optionally checked against ndt's;
  torch_ndt.py --matmul-rate [--json OUT]
      the device's bf16 matmul rate (a large torch.matmul), the ceiling the FLOP floor uses;
  torch_ndt.py --saved-memory [--device cpu] [--batch 16]
      the bytes autograd saves for backward in fp32 and bf16 autocast (no GPU needed).

Modes are `<kind>-<precision>`: kind `eager`, `compile` (torch.compile) or `max-autotune`
(torch.compile(mode="max-autotune")), precision `fp32` or `bf16` (autocast to bfloat16).
"""

import argparse
import json
import math
import statistics
import sys
import time

import torch

from torch_model import (
    NDT,
    SCHEMES,
    UserError,
    batch_from_tensors,
    build_model,
    config_from_meta,
    load_params,
    read_safetensors,
)

DEFAULT_CUDA_MODES = "eager-fp32,eager-bf16,compile-bf16,max-autotune-bf16"
KINDS = ("eager", "compile", "max-autotune")
PRECISIONS = ("fp32", "bf16")

# Fixture tolerances of SPEC §8 (relative, f32).
TOL_OUT = 1e-5
TOL_GRAD = 1e-4
# Loss check against ndt (relative, f32).
TOL_CHECK_LOSS = 1e-4


# ----------------------------------------------------------------------------------------------
# Synthetic batches for timing (SPEC §3 masking: forward or co-smooth, rho = 0.3)


def synthetic_batch(b, t, n, scheme, gen, device):
    rates = torch.rand(n, generator=gen) * 0.2 + 0.02  # counts per 20 ms bin (1..11 Hz)
    x = torch.poisson(rates.expand(b, t, n).contiguous(), generator=gen)
    if scheme == "forward":
        sel = torch.rand(b, t, 1, generator=gen) < 0.3
        sel[torch.arange(b), torch.randint(0, t, (b,), generator=gen)] = True
        mask = sel.expand(b, t, n)
    elif scheme == "co-smooth":
        sel = torch.rand(b, 1, n, generator=gen) < 0.3
        sel[torch.arange(b), 0, torch.randint(0, n, (b,), generator=gen)] = True
        mask = sel.expand(b, t, n)
    else:
        raise UserError(f"timing supports the schemes forward and co-smooth, not {scheme}")
    m = mask.float().contiguous()
    return x.to(device), m.to(device), m.clone().to(device)


# ----------------------------------------------------------------------------------------------
# Timing


def parse_modes(text):
    modes = [m.strip() for m in text.split(",") if m.strip()]
    for m in modes:
        kind, _, prec = m.rpartition("-")
        if kind not in KINDS or prec not in PRECISIONS:
            raise UserError(
                f"unknown mode '{m}': expected <kind>-<precision>, kind in {KINDS}, "
                f"precision in {PRECISIONS}"
            )
    return modes


def make_optimizer(model, device):
    params = [p for p in model.parameters() if p.requires_grad]
    kw = dict(lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
    try:
        return torch.optim.AdamW(params, fused=True, **kw), True
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.AdamW(params, **kw), False


class Timer:
    """CUDA events on the current stream on a GPU, perf_counter (after a sync) elsewhere."""

    def __init__(self, device):
        self.cuda = device.type == "cuda"
        self.pairs = []

    def start(self):
        if self.cuda:
            ev = torch.cuda.Event(enable_timing=True)
            ev.record()
            return ev
        return time.perf_counter()

    def stop(self, start):
        if self.cuda:
            ev = torch.cuda.Event(enable_timing=True)
            ev.record()
            self.pairs.append((start, ev))
        else:
            self.pairs.append((start, time.perf_counter()))

    def millis(self):
        if self.cuda:
            torch.cuda.synchronize()
            return [a.elapsed_time(b) for a, b in self.pairs]
        return [(b - a) * 1e3 for a, b in self.pairs]


def time_mode(mode, args, cfg, device, batches):
    """Times `args.steps` training steps of a fresh model in one mode; returns a result dict."""
    kind, _, prec = mode.rpartition("-")
    model = build_model(cfg, args.dropout, args.explicit_mask, args.seed, device)
    model.train()
    opt, fused = make_optimizer(model, device)
    params = [p for p in model.parameters() if p.requires_grad]
    sid = next(iter(cfg["sessions"]))
    scheme = SCHEMES.index(args.scheme)
    fwd = model
    if kind == "compile":
        fwd = torch.compile(model)
    elif kind == "max-autotune":
        fwd = torch.compile(model, mode="max-autotune")
    graphs = kind == "max-autotune" and device.type == "cuda"
    amp = prec == "bf16"

    def step(i):
        if graphs:
            torch.compiler.cudagraph_mark_step_begin()
        x, m, t = batches[i % len(batches)]
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
            loss, _ = fwd(x, m, t, sid, scheme)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        return loss

    t0 = time.perf_counter()
    for i in range(args.warmup):
        step(i)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    warm_s = time.perf_counter() - t0

    timer = Timer(device)
    w0 = time.perf_counter()
    last = None
    for i in range(args.steps):
        s = timer.start()
        loss = step(args.warmup + i)
        timer.stop(s)
        if i == args.steps - 1:
            last = loss.detach().float().clone()
    ms = timer.millis()
    wall_ms = (time.perf_counter() - w0) * 1e3 / args.steps
    final_loss = float(last)
    peak = torch.cuda.max_memory_allocated() if device.type == "cuda" else None
    ms.sort()
    med = statistics.median(ms)
    tokens = args.batch * cfg["n_bins"]
    res = {
        "mode": mode,
        "ms_per_step": med,
        "ms_p10": ms[len(ms) // 10],
        "ms_p90": ms[(len(ms) * 9) // 10],
        "ms_per_step_wall": wall_ms,
        "tokens_per_s": tokens / (med / 1e3),
        "peak_mem_bytes": peak,
        "warmup_s": warm_s,
        "fused_adamw": fused,
        "final_loss": final_loss,
    }
    if not math.isfinite(final_loss):
        res["error"] = "non-finite loss"
    if kind != "eager":
        torch._dynamo.reset()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return res


def device_name(device):
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return "cpu"


def bench_config(args):
    sessions = {args.session: args.n_neurons}
    return {
        "d_model": args.d_model,
        "d_tok": args.d_tok,
        "d_embed_hidden": args.d_embed_hidden or 2 * args.d_tok,
        "n_layers": args.n_layers,
        "n_heads": args.n_heads,
        "d_ff": args.d_ff,
        "n_bins": args.n_bins,
        "ln_eps": 1e-5,
        "sessions": sessions,
    }


def run_bench(args, device):
    cfg = bench_config(args)
    if cfg["d_model"] % cfg["n_heads"]:
        raise UserError("--d-model must be a multiple of --n-heads")
    default = DEFAULT_CUDA_MODES if device.type == "cuda" else "eager-fp32"
    modes = parse_modes(args.modes or default)
    if args.steps < 1 or args.warmup < 0:
        raise UserError("--steps must be >= 1 and --warmup >= 0")
    gen = torch.Generator().manual_seed(args.seed)
    batches = [
        synthetic_batch(args.batch, cfg["n_bins"], args.n_neurons, args.scheme, gen, device)
        for _ in range(4)
    ]
    out = {
        "tool": "torch_ndt",
        "torch": torch.__version__,
        "device": device_name(device),
        "device_type": device.type,
        "config": cfg,
        "batch": args.batch,
        "tokens_per_step": args.batch * cfg["n_bins"],
        "scheme": args.scheme,
        "dropout": args.dropout,
        "warmup": args.warmup,
        "steps": args.steps,
        "tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32),
        "command": " ".join(sys.argv),
        "modes": [],
    }
    failed = False
    for mode in modes:
        print(f"torch_ndt: {mode}: B={args.batch} ...", file=sys.stderr, flush=True)
        try:
            res = time_mode(mode, args, cfg, device, batches)
        except Exception as e:  # a mode that does not run here is reported, the others go on
            if isinstance(e, UserError):
                raise
            failed = True
            res = {"mode": mode, "error": f"{type(e).__name__}: {e}".splitlines()[0][:300]}
            torch._dynamo.reset()
        if "error" in res:
            failed = True
            print(f"torch_ndt: {mode}: FAILED: {res['error']}", file=sys.stderr)
        else:
            mem = res["peak_mem_bytes"]
            mem_s = f"{mem / 2**20:.0f} MiB" if mem is not None else "n/a"
            print(
                f"torch_ndt: {mode}: {res['ms_per_step']:.3f} ms/step, "
                f"{res['tokens_per_s']:.0f} tokens/s, peak {mem_s}, loss {res['final_loss']:.4f}",
                file=sys.stderr,
            )
        out["modes"].append(res)
    emit_json(args.json, out)
    return 1 if failed else 0


def emit_json(path, obj):
    text = json.dumps(obj, indent=2)
    if path:
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text + "\n")
        import os

        os.replace(tmp, path)
    else:
        print(text)


# ----------------------------------------------------------------------------------------------
# Saved activations


def run_saved_memory(args, device):
    """Bytes autograd keeps for the backward of one training forward, in fp32 and with bf16
    autocast: the activation part of PyTorch's peak memory, countable without a GPU. [S, S]
    attention probabilities are listed apart: on a CPU the math SDPA keeps them, while CUDA's
    flash and memory-efficient SDPA kernels keep row statistics instead."""
    cfg = bench_config(args)
    gen = torch.Generator().manual_seed(args.seed)
    x, m, t = synthetic_batch(args.batch, cfg["n_bins"], args.n_neurons, args.scheme, gen, device)
    s = cfg["n_bins"] + 2
    out = {"tool": "torch_ndt --saved-memory", "torch": torch.__version__,
           "device": device_name(device), "config": cfg, "batch": args.batch,
           "command": " ".join(sys.argv), "modes": []}
    for prec in ("fp32", "bf16"):
        model = build_model(cfg, args.dropout, args.explicit_mask, args.seed, device)
        model.train()
        params = {p.untyped_storage().data_ptr() for p in model.parameters()}
        saved = {}

        def pack(tensor):
            st = tensor.untyped_storage()
            if st.data_ptr() not in params:
                saved[st.data_ptr()] = (st.nbytes(), tuple(tensor.shape))
            return tensor

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16,
                                enabled=prec == "bf16"):
                model(x, m, t, next(iter(cfg["sessions"])), SCHEMES.index(args.scheme))
        probs = sum(b for b, shape in saved.values() if shape[-2:] == (s, s))
        total = sum(b for b, _ in saved.values())
        n_params = sum(p.numel() for p in model.parameters())
        res = {"precision": prec, "saved_bytes": total, "saved_attention_probs_bytes": probs,
               "params_grads_adam_bytes": 16 * n_params}
        out["modes"].append(res)
        mib = 2**20
        print(f"torch_ndt: {prec}: saved {total / mib:.0f} MiB, of which [S,S] probabilities "
              f"{probs / mib:.0f} MiB; parameters, gradients and AdamW moments "
              f"{16 * n_params / mib:.0f} MiB", file=sys.stderr)
    emit_json(args.json, out)
    return 0


# ----------------------------------------------------------------------------------------------
# Matmul rate


def run_matmul_rate(args, device):
    n = args.matmul_size or (8192 if device.type == "cuda" else 512)
    dtype = torch.bfloat16
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        torch.matmul(a, b)
    timer = Timer(device)
    reps = 20 if device.type == "cuda" else 3
    for _ in range(reps):
        s = timer.start()
        torch.matmul(a, b)
        timer.stop(s)
    med = statistics.median(timer.millis())
    rate = 2 * n**3 / (med / 1e3)
    out = {
        "tool": "torch_ndt",
        "device": device_name(device),
        "matmul_n": n,
        "dtype": "bf16",
        "ms": med,
        "flops_per_s": rate,
    }
    print(f"torch_ndt: bf16 matmul {n}^3: {med:.3f} ms, {rate / 1e12:.1f} TFLOP/s", file=sys.stderr)
    emit_json(args.json, out)
    return 0


# ----------------------------------------------------------------------------------------------
# Fixture check and loss check


def rel_err(got, want):
    """||got - want|| / ||want|| (||got - want|| when want is all zeros), in f64."""
    got = got.detach().to(torch.float64).cpu()
    want = want.to(torch.float64)
    num = torch.linalg.vector_norm(got - want).item()
    den = torch.linalg.vector_norm(want).item()
    return num / den if den > 0 else num


def fixture_pass(path, dtype, cfg, tensors, batch, explicit_mask):
    model = NDT(cfg, dropout=0.0, explicit_mask=explicit_mask)
    load_params(model, path, tensors)
    model = model.to(dtype)
    model.eval()
    x, m, t, sid, scheme = batch
    loss, rates = model(x.to(dtype), m.to(dtype), t.to(dtype), sid, scheme, with_rates=True)
    loss.backward()
    grads = {
        n: (p.grad if p.grad is not None else torch.zeros_like(p))
        for n, p in model.named_parameters()
    }
    return loss, rates, grads


def run_fixtures(args):
    """Checks each fixture in turn; exit status 1 when any fails."""
    status = 0
    for i, path in enumerate(args.fixture):
        if i:
            print()
        status = max(status, run_fixture(path, args.explicit_mask))
    return status


def run_fixture(path, explicit_mask):
    tensors, meta = read_safetensors(path)
    if meta.get("format") != "ndt-fixture/1":
        raise UserError(f"{path}: metadata 'format' is {meta.get('format')!r}, not ndt-fixture/1")
    cfg = config_from_meta(path, meta)
    batch = batch_from_tensors(path, tensors, meta, cfg)
    for k in ("log_rates", "loss"):
        if k not in tensors:
            raise UserError(f"{path}: no expected tensor '{k}'")
    passes = {}
    for label, dtype in (("f32", torch.float32), ("f64", torch.float64)):
        passes[label] = fixture_pass(path, dtype, cfg, tensors, batch, explicit_mask)
    names = [n for n, _ in NDT(cfg).named_parameters()]
    missing = [n for n in names if f"grad.{n}" not in tensors]
    if missing:
        raise UserError(f"{path}: no expected gradient for {', '.join(missing[:5])}")
    rows = [("loss", torch.from_numpy(tensors["loss"]).reshape(()), lambda p: p[0], TOL_OUT)]
    rows.append(("log_rates", torch.from_numpy(tensors["log_rates"]), lambda p: p[1], TOL_OUT))
    for n in names:
        rows.append(
            (f"grad.{n}", torch.from_numpy(tensors[f"grad.{n}"]), lambda p, n=n: p[2][n], TOL_GRAD)
        )
    scheme = SCHEMES[batch[4]]
    b, t, nn_ = batch[0].shape
    print(f"fixture {path}: session {batch[3]}, scheme {scheme}, B={b} T={t} N={nn_}")
    print(f"{'tensor':<44} {'rel err f32':>12} {'rel err f64':>12} {'tol':>8}")
    worst = {"f32": {"out": 0.0, "grad": 0.0}, "f64": {"out": 0.0, "grad": 0.0}}
    bad = []
    for name, want, pick, tol in rows:
        errs = {}
        for label, p in passes.items():
            got = pick(p)
            if tuple(got.shape) != tuple(want.shape):
                raise UserError(
                    f"{path}: '{name}' has shape {list(want.shape)}, computed {list(got.shape)}"
                )
            errs[label] = rel_err(got, want)
            key = "grad" if name.startswith("grad.") else "out"
            worst[label][key] = max(worst[label][key], errs[label])
            if not errs[label] <= tol:
                bad.append(f"{name} ({label}: {errs[label]:.3e} > {tol:.0e})")
        print(f"{name:<44} {errs['f32']:>12.3e} {errs['f64']:>12.3e} {tol:>8.0e}")
    for label in ("f32", "f64"):
        print(
            f"max {label}: loss/log_rates {worst[label]['out']:.3e}, "
            f"gradients {worst[label]['grad']:.3e}"
        )
    print(f"loss: fixture {float(tensors['loss'].reshape(-1)[0]):.9g}, "
          f"torch f64 {passes['f64'][0].item():.9g}")
    if bad:
        print(f"FAIL: {len(bad)} tensor(s) over tolerance: {'; '.join(bad[:8])}")
        return 1
    print("ok")
    return 0


def run_loss(args, device):
    tensors, meta = read_safetensors(args.weights)
    cfg = config_from_meta(args.weights, meta)
    btensors, bmeta = read_safetensors(args.batch_file)
    if "config" in bmeta:
        bcfg = config_from_meta(args.batch_file, bmeta)
        if not set(bcfg["sessions"]) <= set(cfg["sessions"]):
            raise UserError(f"{args.batch_file}: its sessions are not in {args.weights}")
    x, m, t, sid, scheme = batch_from_tensors(args.batch_file, btensors, bmeta, cfg)
    model = NDT(cfg, dropout=0.0, explicit_mask=args.explicit_mask)
    load_params(model, args.weights, tensors)
    model = model.to(device).eval()
    with torch.no_grad():
        loss32, _ = model(x.to(device), m.to(device), t.to(device), sid, scheme)
        m64 = model.to(torch.float64)
        loss64, _ = m64(
            x.to(device, torch.float64), m.to(device, torch.float64),
            t.to(device, torch.float64), sid, scheme,
        )
    got = loss32.item()
    print(f"loss f32 {got:.9g} (f64 {loss64.item():.9g}), session {sid}, scheme {SCHEMES[scheme]}")
    if args.check_loss is not None:
        want = args.check_loss
        err = abs(got - want) / max(abs(want), 1e-30)
        print(f"expected {want:.9g}: relative error {err:.3e} (tolerance {TOL_CHECK_LOSS:.0e})")
        if not err <= TOL_CHECK_LOSS:
            print("FAIL: the PyTorch model and ndt do not compute the same loss")
            return 1
        print("ok")
    return 0


# ----------------------------------------------------------------------------------------------


def parse_args(argv):
    p = argparse.ArgumentParser(
        description="PyTorch NDT (SPEC §2): training-step timing, fixture and loss checks.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu")
    p.add_argument("--d-model", type=int, default=512)
    p.add_argument("--n-layers", type=int, default=5)
    p.add_argument("--n-heads", type=int, default=8)
    p.add_argument("--d-ff", type=int, default=1024)
    p.add_argument("--d-tok", type=int, default=668)
    p.add_argument("--d-embed-hidden", type=int, default=0, help="0 = 2 * d_tok")
    p.add_argument("--n-bins", type=int, default=150)
    p.add_argument("--n-neurons", type=int, default=1000)
    p.add_argument("--session", default="bench", help="session id of the timed model")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--dropout", type=float, default=0.2)
    p.add_argument("--scheme", default="forward", choices=["forward", "co-smooth"])
    p.add_argument("--modes", default=None, help=f"comma list; cuda default {DEFAULT_CUDA_MODES}, "
                   "cpu default eager-fp32")
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0 = its default)")
    p.add_argument("--explicit-mask", action="store_true",
                   help="causal attention through an explicit mask tensor instead of is_causal")
    p.add_argument("--json", default=None, help="write results here (default: stdout)")
    p.add_argument("--fixture", nargs="+", default=None, metavar="FILE",
                   help="check SPEC §8 fixtures")
    p.add_argument("--weights", default=None, help="safetensors checkpoint (SPEC §2 names)")
    p.add_argument("--batch-file", default=None, help="safetensors batch: x, mask, target")
    p.add_argument("--check-loss", type=float, default=None, help="expected loss (f32, rel 1e-4)")
    p.add_argument("--matmul-rate", action="store_true", help="measure the bf16 matmul rate")
    p.add_argument("--matmul-size", type=int, default=0, help="0 = 8192 on cuda, 512 on cpu")
    p.add_argument("--saved-memory", action="store_true",
                   help="count the bytes autograd saves for backward (fp32 and bf16 autocast)")
    return p.parse_args(argv)


def resolve_device(name):
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise UserError(f"--device {name}: {e}") from e
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(
            f"--device {name}: PyTorch sees no CUDA device (torch {torch.__version__}, "
            f"built for CUDA {torch.version.cuda}); use --device cpu"
        )
    return device


def main(argv=None):
    args = parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    try:
        if args.fixture:
            return run_fixtures(args)
        if args.weights or args.batch_file or args.check_loss is not None:
            if not (args.weights and args.batch_file):
                raise UserError("--weights and --batch-file go together (--check-loss needs both)")
            return run_loss(args, resolve_device(args.device))
        device = resolve_device(args.device)
        if args.matmul_rate:
            return run_matmul_rate(args, device)
        if args.saved_memory:
            return run_saved_memory(args, device)
        return run_bench(args, device)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
